
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
#define NGX_HTTP_MONETIZE_BCRYPT_LEN    60


/* hash is NULL when hashing failed */
typedef void (*ngx_http_monetize_password_done_pt)(ngx_http_request_t *r,
    ngx_str_t *hash);

/* 1: the password matches, 0: it does not, NGX_ERROR: bcrypt failed */
typedef void (*ngx_http_monetize_password_verified_pt)(ngx_http_request_t *r,
    ngx_int_t match);


ngx_int_t ngx_http_monetize_password_hash(ngx_http_request_t *r,
    ngx_str_t *password, ngx_http_monetize_password_done_pt done);
ngx_int_t ngx_http_monetize_password_dummy(ngx_http_request_t *r,
    ngx_str_t *hash);
ngx_int_t ngx_http_monetize_password_verify(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *hash,
    ngx_http_monetize_password_verified_pt verified);


#endif /* _NGX_HTTP_MONETIZE_PASSWORD_H_INCLUDED_ */
