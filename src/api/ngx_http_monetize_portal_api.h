
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_PORTAL_API_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_PORTAL_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* what the browser's portal needs of the API beyond the routes */

#define NGX_HTTP_MONETIZE_SESSION_COOKIE_OFF       0
#define NGX_HTTP_MONETIZE_SESSION_COOKIE_ON        1
#define NGX_HTTP_MONETIZE_SESSION_COOKIE_INSECURE  2


char *ngx_http_monetize_session_cookie_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_monetize_portal_url_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_monetize_session_cookie_set(ngx_http_request_t *r,
    ngx_str_t *token);
ngx_int_t ngx_http_monetize_session_cookie_clear(ngx_http_request_t *r);
ngx_int_t ngx_http_monetize_session_cookie_get(ngx_http_request_t *r,
    ngx_str_t *token);
ngx_int_t ngx_http_monetize_session_cookie_refused(ngx_http_request_t *r);

void ngx_http_monetize_portal_link(ngx_http_request_t *r, ngx_str_t *base,
    const char **suffix);


#endif /* _NGX_HTTP_MONETIZE_PORTAL_API_H_INCLUDED_ */
