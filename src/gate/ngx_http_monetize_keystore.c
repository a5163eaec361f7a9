
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_keystore.h"


/*
 * What the gate knows of an API key, or of a session token's account: from
 * the shared cache, else from PostgreSQL in one round trip (then cached,
 * unless something changed while it was asked). An account's entry is kept
 * under the keyed hash of "session:<user id>", with the nil UUID as its key
 * (the "session" key that such calls are recorded under, never revoked nor
 * expired: the token's own exp is), and is made stale by the same
 * notifications as the account's keys. Each worker LISTENs for changes to keys and accounts
 * and marks what the cache holds of them stale, so a revocation takes
 * effect at once on every worker of every node; when the subscription
 * (re)starts, the whole cache is stale, since changes may have been missed
 * while it was down.
 */


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_monetize_key_info_t    *info;
    u_char                           hash[NGX_HTTP_MONETIZE_HASH_SIZE];
    uint64_t                         generation;
    ngx_msec_t                       started;
    ngx_http_monetize_keystore_pt    handler;
} ngx_http_monetize_keystore_ctx_t;


static ngx_int_t ngx_http_monetize_keystore_lookup(ngx_http_request_t *r,
    u_char *hash, ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler, const char *sql,
    ngx_str_t *params, ngx_uint_t n);
static void ngx_http_monetize_keystore_result(
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_keystore_copy(u_char *dst, size_t size,
    ngx_str_t *value, u_char *len);
static void ngx_http_monetize_keystore_notify(void *data, const char *channel,
    const char *payload);


/*
 * in sql/009_sessions.sql: one row, or none for a hash of no key; and the
 * key's scopes (sql/020_identities.sql)
 */
static const char  ngx_http_monetize_keystore_sql[] =
    "SELECT g.*, array_to_string(k.scopes, ' ')"
    "  FROM monetize_gate_key($1) g JOIN api_keys k ON k.id = g.key_id";

/* the same columns, for an account */
static const char  ngx_http_monetize_keystore_session_sql[] =
    "SELECT * FROM monetize_gate_session($1)";

/* the same, for an identity provider's user (sql/020_identities.sql) */
static const char  ngx_http_monetize_keystore_identity_sql[] =
    "SELECT * FROM monetize_gate_session("
    "monetize_identity_user($1, $2, $3, $4, $5))";


/*
 * NGX_OK: info is filled now. NGX_AGAIN: the handler will be called, by
 * the deadline (ngx_current_msec's) at the latest. NGX_ERROR: no way to
 * ask.
 */

ngx_int_t
ngx_http_monetize_keystore_find(ngx_http_request_t *r, u_char *hash,
    ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler)
{
    ngx_str_t  hex;

    hex.len = 2 * NGX_HTTP_MONETIZE_HASH_SIZE;
    hex.data = ngx_pnalloc(r->pool, hex.len);
    if (hex.data == NULL) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex.data, hash, NGX_HTTP_MONETIZE_HASH_SIZE);

    return ngx_http_monetize_keystore_lookup(r, hash, info, deadline, handler,
                                             ngx_http_monetize_keystore_sql,
                                             &hex, 1);
}


/* As for a key; "hash" (the caller's) is set to the account's entry's. */

ngx_int_t
ngx_http_monetize_keystore_find_session(ngx_http_request_t *r,
    ngx_str_t *user_id, u_char *hash, ngx_http_monetize_key_info_t *info,
    ngx_msec_t deadline, ngx_http_monetize_keystore_pt handler)
{
    u_char                         *p;
    ngx_str_t                       name;
    ngx_http_monetize_main_conf_t  *mcf;

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

    return ngx_http_monetize_keystore_lookup(r, hash, info, deadline, handler,
                                     ngx_http_monetize_keystore_session_sql,
                                     user_id, 1);
}


/*
 * An identity provider's user: its account, made on first sight with
 * monetize_jwt_autoprovision, cached as a session's under the keyed hash
 * of "jwt:<issuer>\0<subject>" (the issuer is the configured one, which
 * has no NUL: whatever the subject holds, two pairs never share a name).
 */

ngx_int_t
ngx_http_monetize_keystore_find_identity(ngx_http_request_t *r,
    ngx_str_t *issuer, ngx_str_t *subject, ngx_str_t *email, u_char *hash,
    ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler)
{
    u_char                         *p;
    ngx_str_t                       name, params[5];
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    name.len = sizeof("jwt:") - 1 + issuer->len + 1 + subject->len;
    name.data = ngx_pnalloc(r->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "jwt:", sizeof("jwt:") - 1);
    p = ngx_cpymem(p, issuer->data, issuer->len);
    *p++ = '\0';
    ngx_memcpy(p, subject->data, subject->len);

    if (ngx_http_monetize_key_hash_raw(&mcf->key_secret, &name, hash)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    params[0] = *issuer;
    params[1] = *subject;

    if (mcf->jwt_autoprovision) {
        ngx_str_set(&params[2], "t");

    } else {
        ngx_str_set(&params[2], "f");
    }

    params[3] = *email;

    params[4].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (params[4].data == NULL) {
        return NGX_ERROR;
    }

    params[4].len = ngx_sprintf(params[4].data, "%i", mcf->signup_credits)
                    - params[4].data;

    return ngx_http_monetize_keystore_lookup(r, hash, info, deadline, handler,
                                     ngx_http_monetize_keystore_identity_sql,
                                     params, 5);
}


static ngx_int_t
ngx_http_monetize_keystore_lookup(ngx_http_request_t *r, u_char *hash,
    ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler, const char *sql, ngx_str_t *params,
    ngx_uint_t n)
{
    u_char                            *value;
    uint64_t                           generation;
    ngx_uint_t                         i;
    ngx_http_monetize_pg_query_t      *q;
    ngx_http_monetize_main_conf_t     *mcf;
    ngx_http_monetize_keystore_ctx_t  *kc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    generation = 0;

    if (mcf->cache
        && ngx_http_monetize_cache_get(mcf->cache, hash, info, &generation)
           == NGX_OK)
    {
        return NGX_OK;
    }

    kc = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_keystore_ctx_t));
    q = ngx_http_monetize_pg_query_create(r->pool, n);

    if (kc == NULL || q == NULL) {
        return NGX_ERROR;
    }

    /* an empty value is SQL's NULL (an identity without an address) */

    for (i = 0; i < n; i++) {
        if (params[i].len == 0) {
            q->params[i] = NULL;
            continue;
        }

        value = ngx_pnalloc(r->pool, params[i].len + 1);
        if (value == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(value, params[i].data, params[i].len + 1);
        q->params[i] = (const char *) value;
    }

    kc->request = r;
    kc->info = info;
    kc->generation = generation;
    kc->started = ngx_current_msec;
    kc->handler = handler;
    ngx_memcpy(kc->hash, hash, NGX_HTTP_MONETIZE_HASH_SIZE);

    q->sql = sql;
    q->handler = ngx_http_monetize_keystore_result;
    q->data = kc;

    /* a read: its caller may stop waiting, whatever the server still does */
    q->deadline = deadline;

    if (ngx_http_monetize_pg_send(mcf->pg, q) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_monetize_keystore_result(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_keystore_ctx_t *kc = q->data;

    int64_t                          left, rate, burst;
    ngx_int_t                        rc;
    ngx_str_t                        value;
    ngx_http_request_t              *r;
    ngx_http_monetize_key_info_t    *info;
    ngx_http_monetize_main_conf_t   *mcf;

    r = kc->request;
    info = kc->info;
    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ngx_memzero(info, sizeof(ngx_http_monetize_key_info_t));

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(r->connection->log, q);
        }

        kc->handler(r, NGX_ERROR);
        return;
    }

    if (PQntuples(q->result) == 1) {
        info->found = 1;
        rc = NGX_DECLINED;

        if (ngx_http_monetize_pg_get_str(q, 0, 0, &value) != NGX_OK
            || ngx_http_monetize_keystore_copy(info->key_id,
                                               NGX_HTTP_MONETIZE_UUID_LEN,
                                               &value, NULL) != NGX_OK
            || ngx_http_monetize_pg_get_str(q, 0, 1, &value) != NGX_OK
            || ngx_http_monetize_keystore_copy(info->user_id,
                                               NGX_HTTP_MONETIZE_UUID_LEN,
                                               &value, NULL) != NGX_OK
            || (rc = ngx_http_monetize_pg_get_int(q, 0, 3, &left))
               == NGX_ERROR
            || ngx_http_monetize_pg_get_int(q, 0, 5, &info->balance)
               != NGX_OK
            || ngx_http_monetize_pg_get_str(q, 0, 6, &value) != NGX_OK
            || ngx_http_monetize_keystore_copy(info->plan,
                                               NGX_HTTP_MONETIZE_PLAN_LEN,
                                               &value, &info->plan_len)
               != NGX_OK
            || ngx_http_monetize_pg_get_int(q, 0, 7, &rate) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, 0, 8, &burst) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "monetize: an API key, or a session's account, "
                          "or its plan, does not fit the gate (ids must be "
                          "UUIDs; the plan must exist, with an id of at "
                          "most %d bytes)",
                          NGX_HTTP_MONETIZE_PLAN_LEN);
            kc->handler(r, NGX_ERROR);
            return;
        }

        /*
         * "left": ms until the key expires, by PostgreSQL's clock when the
         * lookup ran, which was after it started here: counted from the
         * start, the key never passes late.
         */

        if (rc == NGX_OK) {
            info->expires = 1;
            info->expires_at = kc->started
                               + (ngx_msec_t) ngx_max(left, 0);
        }

        info->rate = (int32_t) ngx_max(ngx_min(rate, INT32_MAX), INT32_MIN);
        info->burst = (int32_t) ngx_max(ngx_min(burst, INT32_MAX), INT32_MIN);

        (void) ngx_http_monetize_pg_get_str(q, 0, 2, &value);
        info->revoked = (value.data[0] == 't');

        (void) ngx_http_monetize_pg_get_str(q, 0, 4, &value);
        info->suspended = (value.data[0] == 't');

        (void) ngx_http_monetize_pg_get_str(q, 0, 9, &value);
        info->unverified = (value.len && value.data[0] == 'f');

        if (ngx_http_monetize_pg_get_str(q, 0, 10, &value) == NGX_OK) {
            info->past_due = (value.len && value.data[0] == 't');
        }

        /* a key's scopes past the room for them: the key has none here */

        if (PQnfields(q->result) > 11
            && ngx_http_monetize_pg_get_str(q, 0, 11, &value) == NGX_OK
            && value.len <= NGX_HTTP_MONETIZE_SCOPES_LEN)
        {
            ngx_memcpy(info->scopes, value.data, value.len);
            info->scopes_len = (u_char) value.len;
        }
    }

    if (mcf->cache) {
        ngx_http_monetize_cache_put(mcf->cache, kc->hash, info,
                                    kc->generation);
    }

    kc->handler(r, NGX_OK);
}


static ngx_int_t
ngx_http_monetize_keystore_copy(u_char *dst, size_t size, ngx_str_t *value,
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


void
ngx_http_monetize_keystore_listen(ngx_http_monetize_main_conf_t *mcf)
{
    if (mcf->pg == NULL || mcf->cache == NULL) {
        return;
    }

    (void) ngx_http_monetize_pg_listen(mcf->pg,
                                       "LISTEN monetize_keys;"
                                       "LISTEN monetize_users;"
                                       "LISTEN monetize_plans",
                                       ngx_http_monetize_keystore_notify,
                                       mcf);
}


static void
ngx_http_monetize_keystore_notify(void *data, const char *channel,
    const char *payload)
{
    ngx_http_monetize_main_conf_t *mcf = data;

    u_char      hash[NGX_HTTP_MONETIZE_HASH_SIZE];
    size_t      len;
    ngx_int_t   n;
    ngx_uint_t  i;

    /* a (re)subscription, or a plan changed: every key's plan may have */

    if (channel == NULL || ngx_strcmp(channel, "monetize_plans") == 0) {
        ngx_http_monetize_cache_flush(mcf->cache);
        mcf->plans_version++;
        return;
    }

    len = ngx_strlen(payload);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize keystore: %s changed: %s", channel, payload);

    if (ngx_strcmp(channel, "monetize_users") == 0) {
        if (len == NGX_HTTP_MONETIZE_UUID_LEN) {
            ngx_http_monetize_cache_delete_user(mcf->cache,
                                                (u_char *) payload);
        }

        return;
    }

    if (len != 2 * NGX_HTTP_MONETIZE_HASH_SIZE) {
        return;
    }

    for (i = 0; i < NGX_HTTP_MONETIZE_HASH_SIZE; i++) {
        n = ngx_hextoi((u_char *) payload + 2 * i, 2);

        if (n == NGX_ERROR) {
            return;
        }

        hash[i] = (u_char) n;
    }

    ngx_http_monetize_cache_delete(mcf->cache, hash);
}
