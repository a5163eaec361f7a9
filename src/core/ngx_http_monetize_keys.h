
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_KEYS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_KEYS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_MONETIZE_KEY_RANDOM_LEN    32
#define NGX_HTTP_MONETIZE_KEY_MAX_LEN       128
#define NGX_HTTP_MONETIZE_KEY_HASH_LEN      64      /* hex HMAC-SHA256 */
#define NGX_HTTP_MONETIZE_KEY_SHOWN_LEN     4       /* random chars shown */
#define NGX_HTTP_MONETIZE_CREDENTIAL_MAX    8192


typedef enum {
    NGX_HTTP_MONETIZE_CREDENTIAL_OK = 0,
    NGX_HTTP_MONETIZE_CREDENTIAL_MISSING,
    NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED,
    NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS
} ngx_http_monetize_credential_e;


typedef struct {
    ngx_str_t   key;         /* shown once, never stored */
    ngx_str_t   hash;        /* what is stored */
    ngx_str_t   prefix;      /* shown in listings */
} ngx_http_monetize_new_key_t;


ngx_int_t ngx_http_monetize_key_generate(ngx_pool_t *pool,
    ngx_str_t *secret, ngx_str_t *prefix, ngx_http_monetize_new_key_t *nk);
ngx_int_t ngx_http_monetize_key_hash(ngx_str_t *secret, ngx_str_t *key,
    u_char *hex);
ngx_int_t ngx_http_monetize_key_hash_raw(ngx_str_t *secret, ngx_str_t *key,
    u_char *mac);
ngx_int_t ngx_http_monetize_key_is_well_formed(ngx_str_t *prefix,
    ngx_str_t *key);

ngx_http_monetize_credential_e ngx_http_monetize_credential(
    ngx_http_request_t *r, ngx_str_t *credential, const char **why);


#endif /* _NGX_HTTP_MONETIZE_KEYS_H_INCLUDED_ */
