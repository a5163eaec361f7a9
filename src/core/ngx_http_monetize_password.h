
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_PASSWORD_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_PASSWORD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_MONETIZE_PASSWORD_MIN  8
#define NGX_HTTP_MONETIZE_PASSWORD_MAX  72      /* what bcrypt reads */
#define NGX_HTTP_MONETIZE_PASSWORD_HASH_LEN  60 /* "$2b$12$" salt, hash */


/* hash is NULL when hashing failed */
typedef void (*ngx_http_monetize_password_done_pt)(ngx_http_request_t *r,
    ngx_str_t *hash);


ngx_int_t ngx_http_monetize_password_hash(ngx_http_request_t *r,
    ngx_str_t *password, ngx_http_monetize_password_done_pt done);
ngx_int_t ngx_http_monetize_password_verify(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *hash,
    ngx_http_monetize_password_done_pt done);
ngx_uint_t ngx_http_monetize_password_matches(ngx_str_t *stored,
    ngx_str_t *computed);


#endif /* _NGX_HTTP_MONETIZE_PASSWORD_H_INCLUDED_ */
