
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JWKS_KEYS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JWKS_KEYS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ngx_http_monetize_jwks.h"


/* the key sets of monetize_jwks, per worker: ngx_http_monetize_jwks_keys.c */

#define NGX_HTTP_MONETIZE_JWK_RSA          1
#define NGX_HTTP_MONETIZE_JWK_P256         2
#define NGX_HTTP_MONETIZE_JWK_P384         3
#define NGX_HTTP_MONETIZE_JWK_ED25519      4


typedef struct {
    ngx_str_t                        kid;
    ngx_str_t                        alg;       /* empty: any of its type */
    ngx_uint_t                       type;
    unsigned                         signs:1;   /* use and key_ops allow */
    EVP_PKEY                        *pkey;
} ngx_http_monetize_jwk_t;


typedef struct {
    ngx_http_monetize_jwks_conf_t   *conf;
    ngx_pool_t                      *keys_pool;
    ngx_array_t                     *keys;      /* of ngx_http_monetize_jwk_t */
    ngx_pool_t                      *fetch;     /* a transfer's, running */
    u_char                          *body;
    size_t                           len;
    size_t                           size;
    unsigned                         overflow:1;
    time_t                           forced;    /* for an unknown kid */
    ngx_event_t                      timer;
    ngx_queue_t                      waiting;   /* of checks */
    ngx_log_t                       *log;
} ngx_http_monetize_jwks_t;


ngx_uint_t ngx_http_monetize_jwks_configured(void);
ngx_http_monetize_jwks_t *ngx_http_monetize_jwks_of(const char *issuer);
void ngx_http_monetize_jwks_fetch(ngx_http_monetize_jwks_t *jw);
ngx_int_t ngx_http_monetize_jwks_pstr(ngx_pool_t *pool, const char *s,
    ngx_str_t *out);

/* in ngx_http_monetize_jwk.c */
ngx_int_t ngx_http_monetize_jwk_parse(ngx_log_t *log, ngx_pool_t *pool,
    json_t *k, ngx_http_monetize_jwk_t *key);

/* in ngx_http_monetize_jwks.c: a fetch ended, the tokens waiting go on */
void ngx_http_monetize_jwks_wake(ngx_http_monetize_jwks_t *jw);


#endif /* _NGX_HTTP_MONETIZE_JWKS_KEYS_H_INCLUDED_ */
