
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_validate.h"


/*
 * The caller's API keys: GET /keys, POST /keys, DELETE /keys/{id} and
 * POST /keys/{id}/rotate. Every statement names the caller's account, so
 * another account's key is as absent as one that never was: 404.
 */


#define NGX_HTTP_MONETIZE_KEY_NAME_MAX     100
#define NGX_HTTP_MONETIZE_KEYS_ACTIVE_MAX  100
#define NGX_HTTP_MONETIZE_KEY_LIFE_MAX     315360000   /* 10 years, s */
#define NGX_HTTP_MONETIZE_KEY_GRACE_MAX    2592000     /* 30 days, s */
#define NGX_HTTP_MONETIZE_UUID_LEN         36


static ngx_int_t ngx_http_monetize_keys_list_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_keys_scopes(ngx_http_request_t *r,
    json_t *body, json_t *fields, ngx_str_t *scopes);
static ngx_int_t ngx_http_monetize_keys_create_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_keys_revoke_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_keys_rotate_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_keys_send_new(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, ngx_http_monetize_new_key_t *nk);
static ngx_int_t ngx_http_monetize_keys_send_too_many(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_keys_not_found(ngx_http_request_t *r);
static json_t *ngx_http_monetize_keys_column(ngx_http_monetize_pg_query_t *q,
    int row, int col);
static ngx_int_t ngx_http_monetize_keys_int(ngx_pool_t *pool, int64_t n,
    ngx_str_t *s);


static const char  ngx_http_monetize_keys_list_sql[] =
    "SELECT id, name, prefix, monetize_iso8601(created_at),"
    "       monetize_iso8601(last_used_at), monetize_iso8601(expires_at),"
    "       monetize_iso8601(revoked_at)"
    "  FROM api_keys"
    " WHERE user_id = $1"
    " ORDER BY created_at DESC, id DESC";

/*
 * Each change of a key writes its audit_log row (sql/010) in the statement
 * that makes it: the caller, the key, the caller's address ($7, $3).
 */

static const char  ngx_http_monetize_keys_create_sql[] =
    "WITH k AS (SELECT * FROM monetize_create_key($1, $2, $3, $4, $5, $6,"
    "                             string_to_array($8, ' '))),"
    "     a AS (INSERT INTO audit_log (actor_user_id, action, target,"
    "                                  target_user_id, details, address)"
    "           SELECT $1, 'key.create', 'key:' || k.id, $1,"
    "                  jsonb_build_object('name', k.name,"
    "                                     'expires_at', k.expires_at), $7"
    "             FROM k WHERE k.created)"
    "SELECT created, id, name, expires_at FROM k";

/* revoking twice keeps the first revoked_at, and is audited once */
static const char  ngx_http_monetize_keys_revoke_sql[] =
    "WITH k AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
    "            WHERE id = $1 AND user_id = $2"
    "           RETURNING id, user_id, revoked_at = now() AS changed),"
    "     a AS (INSERT INTO audit_log (actor_user_id, action, target,"
    "                                  target_user_id, address)"
    "           SELECT $2, 'key.revoke', 'key:' || k.id, k.user_id, $3"
    "             FROM k WHERE k.changed)"
    "SELECT id FROM k";

static const char  ngx_http_monetize_keys_rotate_sql[] =
    "WITH k AS (SELECT * FROM monetize_rotate_key($1, $2, $3, $4, $5, $6,"
    "                                             true)),"
    "     a AS (INSERT INTO audit_log (actor_user_id, action, target,"
    "                                  target_user_id, details, address)"
    "           SELECT $1, 'key.rotate', 'key:' || $2, $1,"
    "                  jsonb_build_object('new_key_id', k.id,"
    "                                     'grace_seconds', $5), $7"
    "             FROM k WHERE k.outcome = 'rotated')"
    "SELECT outcome, id, name, expires_at FROM k";


/* GET /keys: all of the caller's keys, revoked ones too, newest first */

ngx_int_t
ngx_http_monetize_keys_list_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_api_query(r, ngx_http_monetize_keys_list_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_keys_list_result);
}


static ngx_int_t
ngx_http_monetize_keys_list_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int      row, n;
    json_t  *keys, *key;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    keys = json_array();
    if (keys == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = PQntuples(q->result);

    for (row = 0; row < n; row++) {
        key = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                        "id", ngx_http_monetize_keys_column(q, row, 0),
                        "name", ngx_http_monetize_keys_column(q, row, 1),
                        "prefix", ngx_http_monetize_keys_column(q, row, 2),
                        "created_at",
                        ngx_http_monetize_keys_column(q, row, 3),
                        "last_used_at",
                        ngx_http_monetize_keys_column(q, row, 4),
                        "expires_at",
                        ngx_http_monetize_keys_column(q, row, 5),
                        "revoked_at",
                        ngx_http_monetize_keys_column(q, row, 6));

        if (json_array_append_new(keys, key) != 0) {
            json_decref(keys);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
                                       json_pack("{s:o}", "keys", keys));
}


/*
 * "scopes": an array of at most 20 names (letters, digits, ":._/-", up to
 * 64 bytes each, 255 in all with a space between two: what the gate's
 * cache keeps), as one space-separated string; NGX_DECLINED (why in
 * "fields") if it is not.
 */

static ngx_int_t
ngx_http_monetize_keys_scopes(ngx_http_request_t *r, json_t *body,
    json_t *fields, ngx_str_t *scopes)
{
    u_char       *p;
    size_t        i, j, len;
    json_t       *v, *e;
    const char   *s;

    v = json_object_get(body, "scopes");

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_array(v) || json_array_size(v) > 20) {
        return ngx_http_monetize_field_invalid(fields, "scopes",
                   "must be an array of at most 20 scope names");
    }

    len = 0;

    json_array_foreach(v, i, e) {
        s = json_string_value(e);

        if (s == NULL || json_string_length(e) == 0
            || json_string_length(e) > 64)
        {
            goto invalid;
        }

        for (j = 0; s[j]; j++) {
            if (!((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')
                  || (s[j] >= '0' && s[j] <= '9')
                  || ngx_strchr(":._/-", s[j])))
            {
                goto invalid;
            }
        }

        len += json_string_length(e) + 1;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (len - 1 > NGX_HTTP_MONETIZE_SCOPES_LEN) {
        return ngx_http_monetize_field_invalid(fields, "scopes",
                   "must take at most %d bytes, with a space between two",
                   NGX_HTTP_MONETIZE_SCOPES_LEN);
    }

    scopes->data = ngx_pnalloc(r->pool, len);
    if (scopes->data == NULL) {
        return NGX_ERROR;
    }

    p = scopes->data;

    json_array_foreach(v, i, e) {
        if (p != scopes->data) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, json_string_value(e), json_string_length(e));
    }

    scopes->len = p - scopes->data;

    return NGX_OK;

invalid:

    return ngx_http_monetize_field_invalid(fields, "scopes",
               "each scope must be 1 to 64 letters, digits or \":._/-\"");
}


/* POST /keys {"name"?, "expires_in"?, "scopes"?} */

ngx_int_t
ngx_http_monetize_keys_create_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                         *fields;
    int64_t                         expires_in;
    ngx_int_t                       name_rc, life_rc, scopes_rc;
    ngx_str_t                       name, scopes, params[8];
    ngx_http_monetize_new_key_t    *nk;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&name);
    ngx_str_null(&scopes);
    expires_in = 0;

    name_rc = ngx_http_monetize_field_text(ctx->body, fields, "name",
                                           NGX_HTTP_MONETIZE_KEY_NAME_MAX,
                                           &name);
    life_rc = ngx_http_monetize_field_int(ctx->body, fields, "expires_in", 1,
                                          NGX_HTTP_MONETIZE_KEY_LIFE_MAX,
                                          &expires_in);

    scopes_rc = ngx_http_monetize_keys_scopes(r, ctx->body, fields, &scopes);

    if (name_rc == NGX_ERROR || life_rc == NGX_ERROR
        || scopes_rc == NGX_ERROR)
    {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (name_rc == NGX_DECLINED || life_rc == NGX_DECLINED
        || scopes_rc == NGX_DECLINED)
    {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    nk = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_new_key_t));
    if (nk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = nk;

    if (ngx_http_monetize_key_generate(r->pool, &mcf->key_secret,
                                       &mcf->key_prefix, nk)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    params[1] = nk->hash;
    params[2] = nk->prefix;
    params[3] = name;               /* NULL: "default" */
    ngx_str_null(&params[4]);       /* NULL: never expires */

    /* expires_in is at least 1 when given */

    if ((expires_in
         && ngx_http_monetize_keys_int(r->pool, expires_in, &params[4])
            != NGX_OK)
        || ngx_http_monetize_keys_int(r->pool,
                                      NGX_HTTP_MONETIZE_KEYS_ACTIVE_MAX,
                                      &params[5])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[6] = r->connection->addr_text;
    params[7] = scopes;             /* NULL: none */

    return ngx_http_monetize_api_query(r, ngx_http_monetize_keys_create_sql,
                                       params, 8,
                                       ngx_http_monetize_keys_create_result);
}


static ngx_int_t
ngx_http_monetize_keys_create_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  created;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &created) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (created.data[0] != 't') {
        return ngx_http_monetize_keys_send_too_many(r);
    }

    return ngx_http_monetize_keys_send_new(r, q, ctx->data);
}


/* DELETE /keys/{id}: 204, also when the key was revoked already */

ngx_int_t
ngx_http_monetize_keys_revoke_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_str_t  params[3];

    if (!ngx_http_monetize_is_uuid(&ctx->id)) {
        return ngx_http_monetize_keys_not_found(r);
    }

    params[0] = ctx->id;
    params[1] = ctx->caller.user_id;
    params[2] = r->connection->addr_text;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_keys_revoke_sql,
                                       params, 3,
                                       ngx_http_monetize_keys_revoke_result);
}


static ngx_int_t
ngx_http_monetize_keys_revoke_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (PQntuples(q->result) == 0) {
        return ngx_http_monetize_keys_not_found(r);
    }

    return ngx_http_monetize_send_no_content(r);
}


/* POST /keys/{id}/rotate {"grace_seconds"?} */

ngx_int_t
ngx_http_monetize_keys_rotate_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                         *fields;
    int64_t                         grace;
    ngx_int_t                       rc;
    ngx_str_t                       params[7];
    ngx_http_monetize_new_key_t    *nk;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (!ngx_http_monetize_is_uuid(&ctx->id)) {
        return ngx_http_monetize_keys_not_found(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    grace = 0;

    rc = ngx_http_monetize_field_int(ctx->body, fields, "grace_seconds", 0,
                                     NGX_HTTP_MONETIZE_KEY_GRACE_MAX, &grace);

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nk = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_new_key_t));
    if (nk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = nk;

    if (ngx_http_monetize_key_generate(r->pool, &mcf->key_secret,
                                       &mcf->key_prefix, nk)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    params[1] = ctx->id;
    params[2] = nk->hash;
    params[3] = nk->prefix;

    if (ngx_http_monetize_keys_int(r->pool, grace, &params[4]) != NGX_OK
        || ngx_http_monetize_keys_int(r->pool,
                                      NGX_HTTP_MONETIZE_KEYS_ACTIVE_MAX,
                                      &params[5])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[6] = r->connection->addr_text;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_keys_rotate_sql,
                                       params, 7,
                                       ngx_http_monetize_keys_rotate_result);
}


static ngx_int_t
ngx_http_monetize_keys_rotate_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  outcome;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (ngx_strcmp(outcome.data, "rotated") == 0) {
        return ngx_http_monetize_keys_send_new(r, q, ctx->data);
    }

    if (ngx_strcmp(outcome.data, "not_found") == 0) {
        return ngx_http_monetize_keys_not_found(r);
    }

    /*
     * The caller can see this key in GET /keys: "not found" would be
     * untrue. 409, with a code of its own, so that it is not taken for the
     * 403 key_revoked or key_expired of the caller's own credential.
     */

    if (ngx_strcmp(outcome.data, "revoked") == 0) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "key_inactive",
                                            "this key was revoked; create "
                                            "a new one with POST /keys");
    }

    if (ngx_strcmp(outcome.data, "expired") == 0) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "key_inactive",
                                            "this key has expired; create "
                                            "a new one with POST /keys");
    }

    if (ngx_strcmp(outcome.data, "too_many") == 0) {
        return ngx_http_monetize_keys_send_too_many(r);
    }

    return ngx_http_monetize_api_backend_failed(r, q);
}


/* 201 with the new key, shown this once; the row comes from the query */

static ngx_int_t
ngx_http_monetize_keys_send_new(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, ngx_http_monetize_new_key_t *nk)
{
    return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED,
               json_pack("{s:o,s:s%,s:s%,s:o,s:o}",
                         "id", ngx_http_monetize_keys_column(q, 0, 1),
                         "key", nk->key.data, nk->key.len,
                         "prefix", nk->prefix.data, nk->prefix.len,
                         "name", ngx_http_monetize_keys_column(q, 0, 2),
                         "expires_at",
                         ngx_http_monetize_keys_column(q, 0, 3)));
}


static ngx_int_t
ngx_http_monetize_keys_send_too_many(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_MONETIZE_UNPROCESSABLE,
                                        "too_many_keys",
                                        "an account may have at most %d "
                                        "active keys (keys in a rotation's "
                                        "grace period count); revoke one "
                                        "first",
                                        NGX_HTTP_MONETIZE_KEYS_ACTIVE_MAX);
}


static ngx_int_t
ngx_http_monetize_keys_not_found(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "no such key");
}


/* shared with the other endpoints that answer 204 */

ngx_int_t
ngx_http_monetize_send_no_content(ngx_http_request_t *r)
{
    ngx_str_t  no_store = ngx_string("no-store");

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->header_only = 1;

    if (ngx_http_monetize_set_header(r, "Cache-Control", &no_store)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_send_header(r);
}


/* A column as a JSON string, null for NULL; NULL only when out of memory */

static json_t *
ngx_http_monetize_keys_column(ngx_http_monetize_pg_query_t *q, int row,
    int col)
{
    ngx_str_t  value;

    if (ngx_http_monetize_pg_get_str(q, row, col, &value) != NGX_OK) {
        return json_null();
    }

    return ngx_http_monetize_json_str(&value);
}


/*
 * The ids we hand out, 8-4-4-4-12 hex digits. Anything else names no key,
 * and must not reach PostgreSQL, which would refuse it as a uuid.
 */

ngx_uint_t
ngx_http_monetize_is_uuid(ngx_str_t *s)
{
    u_char      c;
    ngx_uint_t  i;

    if (s->len != NGX_HTTP_MONETIZE_UUID_LEN) {
        return 0;
    }

    for (i = 0; i < NGX_HTTP_MONETIZE_UUID_LEN; i++) {
        c = s->data[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return 0;
            }

            continue;
        }

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
              || (c >= 'A' && c <= 'F')))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_monetize_keys_int(ngx_pool_t *pool, int64_t n, ngx_str_t *s)
{
    s->data = ngx_pnalloc(pool, NGX_INT64_LEN);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    s->len = ngx_sprintf(s->data, "%L", n) - s->data;

    return NGX_OK;
}
