
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_password.h"
#include "ngx_http_monetize_validate.h"


/*
 * The caller's own account: GET /me (also /profile) and PATCH /me answer
 * the document of monetize_me_json() (sql/010) in one round trip; POST
 * /me/password checks the current password and hashes the new one in the
 * thread pool, then changes the hash only if it is still the one checked.
 */


#define NGX_HTTP_MONETIZE_ME_NAME_MAX  200


typedef struct {
    ngx_str_t                     current;
    ngx_str_t                     new_password;
    ngx_str_t                     stored;     /* the hash checked */
    ngx_str_t                     new_hash;
} ngx_http_monetize_me_password_t;


static ngx_int_t ngx_http_monetize_me_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_me_password_stored(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_me_password_checked(ngx_http_request_t *r,
    ngx_int_t match);
static void ngx_http_monetize_me_password_hashed(ngx_http_request_t *r,
    ngx_str_t *hash);
static ngx_int_t ngx_http_monetize_me_password_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_me_wrong_password(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_me_password_field(json_t *body,
    json_t *fields, const char *name, ngx_str_t *value);


static const char  ngx_http_monetize_me_sql[] =
    "SELECT monetize_me_json($1)";

static const char  ngx_http_monetize_me_update_sql[] =
    "SELECT monetize_update_me($1, $2)";

static const char  ngx_http_monetize_me_hash_sql[] =
    "SELECT password_hash FROM users WHERE id = $1";

static const char  ngx_http_monetize_me_password_sql[] =
    "SELECT monetize_change_password($1, $2, $3, $4)";


/* GET /me, GET /profile */

ngx_int_t
ngx_http_monetize_me_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_api_query(r, ngx_http_monetize_me_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_me_result);
}


/* PATCH /me {"name"}: absent leaves the name, null clears it */

ngx_int_t
ngx_http_monetize_me_update_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t     *fields;
    ngx_int_t   rc;
    ngx_str_t   params[2];

    if (json_object_get(ctx->body, "name") == NULL) {
        return ngx_http_monetize_me_handler(r, ctx);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    ngx_str_null(&params[1]);       /* null: no name */

    rc = ngx_http_monetize_field_text(ctx->body, fields, "name",
                                      NGX_HTTP_MONETIZE_ME_NAME_MAX,
                                      &params[1]);

    if (rc == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_me_update_sql,
                                       params, 2,
                                       ngx_http_monetize_me_result);
}


static ngx_int_t
ngx_http_monetize_me_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    return ngx_http_monetize_api_send_pg_json(r, q, NGX_HTTP_OK);
}


/*
 * Sends the JSON document of the first column of the first row. An account
 * deleted since it authenticated has none: 404.
 */

ngx_int_t
ngx_http_monetize_api_send_pg_json(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, ngx_uint_t status)
{
    json_t        *body;
    ngx_str_t      text;
    json_error_t   error;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK || PQntuples(q->result) != 1) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (PQgetisnull(q->result, 0, 0)) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found", "no such account");
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 0, &text);

    body = json_loadb((char *) text.data, text.len, 0, &error);

    if (body == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: PostgreSQL sent JSON that jansson refuses: "
                      "%s", error.text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r, status, body);
}


/* POST /me/password {"current","new"}: 204 */

ngx_int_t
ngx_http_monetize_me_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                           *fields;
    ngx_int_t                         rc1, rc2;
    ngx_http_monetize_me_password_t  *mp;

    mp = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_me_password_t));
    if (mp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = mp;

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc1 = ngx_http_monetize_me_password_field(ctx->body, fields, "current",
                                              &mp->current);
    rc2 = ngx_http_monetize_me_password_field(ctx->body, fields, "new",
                                              &mp->new_password);

    if (rc1 == NGX_ERROR || rc2 == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc1 == NGX_DECLINED || rc2 == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_me_hash_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_me_password_stored);
}


static ngx_int_t
ngx_http_monetize_me_password_stored(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_int_t                         rc;
    ngx_str_t                         stored;
    ngx_http_monetize_me_password_t  *mp;

    mp = ctx->data;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (PQntuples(q->result) != 1
        || ngx_http_monetize_pg_get_str(q, 0, 0, &stored) != NGX_OK)
    {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found", "no such account");
    }

    mp->stored.len = stored.len;
    mp->stored.data = ngx_pstrdup(r->pool, &stored);
    if (mp->stored.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_monetize_password_verify(r, &mp->current, &mp->stored,
                                    ngx_http_monetize_me_password_checked);

    return (rc == NGX_OK) ? NGX_DONE : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * A stored value bcrypt cannot read (an account made by hand; logged) is
 * matched by no password.
 */

static void
ngx_http_monetize_me_password_checked(ngx_http_request_t *r, ngx_int_t match)
{
    ngx_http_monetize_api_ctx_t      *ctx;
    ngx_http_monetize_me_password_t  *mp;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    mp = ctx->data;

    if (match != 1) {
        ngx_http_monetize_api_finish(r,
                                     ngx_http_monetize_me_wrong_password(r));
        return;
    }

    if (ngx_http_monetize_password_hash(r, &mp->new_password,
                                        ngx_http_monetize_me_password_hashed)
        != NGX_OK)
    {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


static void
ngx_http_monetize_me_password_hashed(ngx_http_request_t *r, ngx_str_t *hash)
{
    ngx_int_t                         rc;
    ngx_str_t                         params[4];
    ngx_http_monetize_api_ctx_t      *ctx;
    ngx_http_monetize_me_password_t  *mp;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    mp = ctx->data;

    if (hash == NULL) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = ctx->caller.user_id;
    params[1] = mp->stored;
    params[2] = *hash;
    params[3] = r->connection->addr_text;

    rc = ngx_http_monetize_api_query(r, ngx_http_monetize_me_password_sql,
                                     params, 4,
                                     ngx_http_monetize_me_password_result);

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


static ngx_int_t
ngx_http_monetize_me_password_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  changed;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &changed) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (changed.len == 0 || changed.data[0] != 't') {
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "password_changed",
                                            "the password changed while "
                                            "this call ran; try again");
    }

    return ngx_http_monetize_send_no_content(r);
}


/*
 * A wrong current password is a mistake in the body (422), not a failed
 * authentication: the caller's credential is fine, and a 401 would make a
 * client drop it.
 */

static ngx_int_t
ngx_http_monetize_me_wrong_password(ngx_http_request_t *r)
{
    json_t  *fields;

    fields = json_pack("{s:s}", "current", "is not the account's password");
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_invalid(r, fields);
}


static ngx_int_t
ngx_http_monetize_me_password_field(json_t *body, json_t *fields,
    const char *name, ngx_str_t *value)
{
    json_t  *v;

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)) {
        return ngx_http_monetize_field_invalid(fields, name, "is required");
    }

    if (!json_is_string(v)) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be a string");
    }

    value->data = (u_char *) json_string_value(v);
    value->len = json_string_length(v);

    if (value->len < NGX_HTTP_MONETIZE_PASSWORD_MIN) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must have at least %d "
                                               "characters",
                                               NGX_HTTP_MONETIZE_PASSWORD_MIN);
    }

    if (value->len > NGX_HTTP_MONETIZE_PASSWORD_MAX) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must have at most %d bytes",
                                               NGX_HTTP_MONETIZE_PASSWORD_MAX);
    }

    return NGX_OK;
}
