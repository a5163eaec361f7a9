
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JWT_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_MONETIZE_JWT_SECRET_MIN   32

#define NGX_HTTP_MONETIZE_JWT_INVALID      1
#define NGX_HTTP_MONETIZE_JWT_EXPIRED      2


char *ngx_http_monetize_jwt_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_jwt_ttl(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_monetize_jwt_init_conf(void *conf);

ngx_uint_t ngx_http_monetize_jwt_is_token(ngx_str_t *credential);
ngx_int_t ngx_http_monetize_jwt_issue(ngx_http_request_t *r,
    ngx_str_t *user_id, ngx_str_t *token);
ngx_int_t ngx_http_monetize_jwt_verify(ngx_http_request_t *r,
    ngx_str_t *token, ngx_str_t *user_id);


#endif /* _NGX_HTTP_MONETIZE_JWT_H_INCLUDED_ */
