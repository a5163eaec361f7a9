
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_jwtstore.h"


/*
 * What the gate knows of a session token's account, as the keystore knows
 * a key's: from the shared cache, under the keyed hash of "session:<user
 * id>", else from PostgreSQL (monetize_gate_session() in
 * sql/009_sessions.sql). The entry is the account's, so the keystore's
 * LISTEN on monetize_users (a suspension, an address verified) makes it
 * stale at once, as it does the account's keys. Its key id is the nil
 * UUID: the "session" key under which such calls are recorded.
 */


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_monetize_key_info_t    *info;
    u_char                          *hash;
    uint64_t                         generation;
    ngx_http_monetize_keystore_pt    handler;
} ngx_http_monetize_jwtstore_ctx_t;


static void ngx_http_monetize_jwtstore_result(
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_jwtstore_copy(u_char *dst, size_t size,
    ngx_str_t *value, u_char *len);


static const char  ngx_http_monetize_jwtstore_sql[] =
    "SELECT * FROM monetize_gate_session($1)";


/*
 * "hash" (NGX_HTTP_MONETIZE_HASH_SIZE bytes, the caller's) is set to the
 * entry's. NGX_OK: info is filled now. NGX_AGAIN: the handler will be
 * called. NGX_ERROR: no way to ask.
 */

ngx_int_t
ngx_http_monetize_jwtstore_find(ngx_http_request_t *r, ngx_str_t *user_id,
    u_char *hash, ngx_http_monetize_key_info_t *info,
    ngx_http_monetize_keystore_pt handler)
{
    u_char                            *p;
    uint64_t                           generation;
    ngx_str_t                          name;
    ngx_http_monetize_pg_query_t      *q;
    ngx_http_monetize_main_conf_t     *mcf;
    ngx_http_monetize_jwtstore_ctx_t  *jc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    name.len = sizeof("session:") - 1 + user_id->len;
    name.data = ngx_pnalloc(r->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "session:", sizeof("session:") - 1);
    ngx_memcpy(p, user_id->data, user_id->len);

    if (ngx_http_monetize_key_hash_raw(&mcf->key_secret, &name, hash)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    generation = 0;

    if (mcf->cache
        && ngx_http_monetize_cache_get(mcf->cache, hash, info, &generation)
           == NGX_OK)
    {
        return NGX_OK;
    }

    jc = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_jwtstore_ctx_t));
    p = ngx_pnalloc(r->pool, user_id->len + 1);
    q = ngx_http_monetize_pg_query_create(r->pool, 1);

    if (jc == NULL || p == NULL || q == NULL) {
        return NGX_ERROR;
    }

    jc->request = r;
    jc->info = info;
    jc->hash = hash;
    jc->generation = generation;
    jc->handler = handler;

    ngx_cpystrn(p, user_id->data, user_id->len + 1);

    q->sql = ngx_http_monetize_jwtstore_sql;
    q->params[0] = (const char *) p;
    q->handler = ngx_http_monetize_jwtstore_result;
    q->data = jc;

    if (ngx_http_monetize_pg_send(mcf->pg, q) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_monetize_jwtstore_result(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_jwtstore_ctx_t *jc = q->data;

    int64_t                          rate, burst;
    ngx_str_t                        value;
    ngx_http_request_t              *r;
    ngx_http_monetize_key_info_t    *info;
    ngx_http_monetize_main_conf_t   *mcf;

    r = jc->request;
    info = jc->info;
    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ngx_memzero(info, sizeof(ngx_http_monetize_key_info_t));

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(r->connection->log, q);
        }

        jc->handler(r, NGX_ERROR);
        return;
    }

    if (PQntuples(q->result) == 1) {
        info->found = 1;

        if (ngx_http_monetize_pg_get_str(q, 0, 0, &value) != NGX_OK
            || ngx_http_monetize_jwtstore_copy(info->key_id,
                                               NGX_HTTP_MONETIZE_UUID_LEN,
                                               &value, NULL) != NGX_OK
            || ngx_http_monetize_pg_get_str(q, 0, 1, &value) != NGX_OK
            || ngx_http_monetize_jwtstore_copy(info->user_id,
                                               NGX_HTTP_MONETIZE_UUID_LEN,
                                               &value, NULL) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, 0, 5, &info->balance)
               != NGX_OK
            || ngx_http_monetize_pg_get_str(q, 0, 6, &value) != NGX_OK
            || ngx_http_monetize_jwtstore_copy(info->plan,
                                               NGX_HTTP_MONETIZE_PLAN_LEN,
                                               &value, &info->plan_len)
               != NGX_OK
            || ngx_http_monetize_pg_get_int(q, 0, 7, &rate) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, 0, 8, &burst) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "monetize: a session's account or its plan does "
                          "not fit the gate (the plan must exist, with an "
                          "id of at most %d bytes)",
                          NGX_HTTP_MONETIZE_PLAN_LEN);
            jc->handler(r, NGX_ERROR);
            return;
        }

        info->rate = (int32_t) ngx_max(ngx_min(rate, INT32_MAX), INT32_MIN);
        info->burst = (int32_t) ngx_max(ngx_min(burst, INT32_MAX), INT32_MIN);

        (void) ngx_http_monetize_pg_get_str(q, 0, 4, &value);
        info->suspended = (value.len && value.data[0] == 't');

        (void) ngx_http_monetize_pg_get_str(q, 0, 9, &value);
        info->unverified = (value.len && value.data[0] == 'f');
    }

    if (mcf->cache) {
        ngx_http_monetize_cache_put(mcf->cache, jc->hash, info,
                                    jc->generation);
    }

    jc->handler(r, NGX_OK);
}


static ngx_int_t
ngx_http_monetize_jwtstore_copy(u_char *dst, size_t size, ngx_str_t *value,
    u_char *len)
{
    if (len == NULL ? value->len != size : value->len > size) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst, value->data, value->len);

    if (len) {
        *len = (u_char) value->len;
    }

    return NGX_OK;
}
