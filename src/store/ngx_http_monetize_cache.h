
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_CACHE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_MONETIZE_HASH_SIZE   32      /* raw HMAC-SHA256 */
#define NGX_HTTP_MONETIZE_UUID_LEN    36
#define NGX_HTTP_MONETIZE_PLAN_LEN    32
#define NGX_HTTP_MONETIZE_SCOPES_LEN  255     /* a key's, space-separated */


/* What the gate knows of an API key, as cached for all workers. */

typedef struct {
    u_char                  user_id[NGX_HTTP_MONETIZE_UUID_LEN];
    u_char                  key_id[NGX_HTTP_MONETIZE_UUID_LEN];
    u_char                  plan[NGX_HTTP_MONETIZE_PLAN_LEN];
    u_char                  plan_len;
    unsigned                found:1;        /* else: no such key */
    unsigned                revoked:1;
    unsigned                suspended:1;
    unsigned                unverified:1;   /* the account's address */
    unsigned                past_due:1;     /* its subscription's payment */
    unsigned                expires:1;      /* else: never */
    ngx_msec_t              expires_at;     /* on ngx_current_msec's clock */
    int64_t                 balance;        /* last known */
    int32_t                 rate;           /* the plan's, a second */
    int32_t                 burst;
    u_char                  scopes_len;
    u_char                  scopes[NGX_HTTP_MONETIZE_SCOPES_LEN];
} ngx_http_monetize_key_info_t;


/*
 * PostgreSQL's clock says how long a key has left, to the millisecond
 * (sql/006_keys.sql); this node counts it down on its own.
 */
#define ngx_http_monetize_key_expired(info)                                  \
    ((info)->expires && (ngx_msec_int_t) ((info)->expires_at                 \
                                          - ngx_current_msec) <= 0)


typedef struct ngx_http_monetize_cache_s  ngx_http_monetize_cache_t;


char *ngx_http_monetize_cache_conf(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_http_monetize_cache_t **cache);

ngx_int_t ngx_http_monetize_cache_get(ngx_http_monetize_cache_t *cache,
    u_char *hash, ngx_http_monetize_key_info_t *info, uint64_t *generation);
void ngx_http_monetize_cache_put(ngx_http_monetize_cache_t *cache,
    u_char *hash, ngx_http_monetize_key_info_t *info, uint64_t generation);
void ngx_http_monetize_cache_set_balance(ngx_http_monetize_cache_t *cache,
    u_char *hash, int64_t balance);
void ngx_http_monetize_cache_delete(ngx_http_monetize_cache_t *cache,
    u_char *hash);
void ngx_http_monetize_cache_delete_user(ngx_http_monetize_cache_t *cache,
    u_char *user_id);
void ngx_http_monetize_cache_flush(ngx_http_monetize_cache_t *cache);


#endif /* _NGX_HTTP_MONETIZE_CACHE_H_INCLUDED_ */
