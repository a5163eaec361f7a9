
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JWKS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JWKS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>


/* one monetize_jwks: an identity provider, by its issuer */

typedef struct {
    ngx_str_t                        url;       /* NUL-terminated; or */
    ngx_str_t                        file;      /* NUL-terminated */
    ngx_str_t                        issuer;
    ngx_str_t                        audience;
    time_t                           leeway;
    ngx_msec_t                       refresh;
    ngx_msec_t                       timeout;
} ngx_http_monetize_jwks_conf_t;


/* a provider's token, once verified */

typedef struct {
    ngx_str_t                        issuer;
    ngx_str_t                        subject;
    ngx_str_t                        email;     /* verified, else empty */
    json_t                          *claims;    /* until the pool goes */
} ngx_http_monetize_jwks_token_t;


/* rc: NGX_OK, NGX_HTTP_MONETIZE_JWT_INVALID or _EXPIRED, or NGX_ERROR */
typedef void (*ngx_http_monetize_jwks_pt)(ngx_http_request_t *r,
    ngx_int_t rc);


char *ngx_http_monetize_jwks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_monetize_jwks_init_process(ngx_cycle_t *cycle,
    ngx_array_t *jwks);
void ngx_http_monetize_jwks_exit_process(void);
ngx_int_t ngx_http_monetize_jwks_verify(ngx_http_request_t *r,
    ngx_str_t *token, ngx_http_monetize_jwks_token_t *tok,
    ngx_http_monetize_jwks_pt handler);
ngx_uint_t ngx_http_monetize_jwks_has_scope(
    ngx_http_monetize_jwks_token_t *tok, ngx_str_t *scope);
ngx_int_t ngx_http_monetize_jwks_claim(ngx_http_request_t *r,
    ngx_http_monetize_jwks_token_t *tok, ngx_str_t *name, ngx_str_t *value);


#endif /* _NGX_HTTP_MONETIZE_JWKS_H_INCLUDED_ */
