
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"


/*
 * The operators' endpoints, for accounts with is_admin: POST
 * /admin/credits, PATCH /admin/users/{id}, GET /admin/users and GET
 * /admin/audit. Each change is one SQL function (sql/010) that writes its
 * audit_log row, with the caller and its address, in its own transaction.
 */


#define NGX_HTTP_MONETIZE_ADMIN_AMOUNT_MAX  1000000000000LL
#define NGX_HTTP_MONETIZE_ADMIN_REASON_MAX  500
#define NGX_HTTP_MONETIZE_ADMIN_PLAN_MAX    100
#define NGX_HTTP_MONETIZE_ADMIN_EMAIL_MAX   254
#define NGX_HTTP_MONETIZE_ADMIN_KEY_MAX     255
#define NGX_HTTP_MONETIZE_PAGE_MAX          100


static ngx_int_t ngx_http_monetize_admin_forbidden(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_admin_credits_result(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_admin_user_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_admin_page_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_admin_bool(json_t *body, json_t *fields,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_monetize_admin_uuid(json_t *fields,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_monetize_admin_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_monetize_admin_limit(ngx_http_request_t *r,
    json_t *fields, ngx_str_t *value);


static const char  ngx_http_monetize_admin_credits_sql[] =
    "SELECT outcome, entry"
    "  FROM monetize_admin_credit($1, $2, $3, $4, $5, $6)";

static const char  ngx_http_monetize_admin_user_sql[] =
    "SELECT outcome, account"
    "  FROM monetize_admin_update_user($1, $2, $3, $4, $5, $6)";

static const char  ngx_http_monetize_admin_users_sql[] =
    "SELECT monetize_admin_users_json($1, $2, $3)";

static const char  ngx_http_monetize_admin_audit_sql[] =
    "SELECT monetize_admin_audit_json($1, $2, $3)";


/* POST /admin/credits {"user_id","amount","reason","idempotency_key"?} */

ngx_int_t
ngx_http_monetize_admin_credits_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char     *p;
    json_t     *fields;
    int64_t     amount;
    ngx_int_t   rc[4];
    ngx_str_t   params[6];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_admin_forbidden(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&params[1]);
    ngx_str_null(&params[3]);
    ngx_str_null(&params[5]);
    amount = 0;

    rc[0] = ngx_http_monetize_field_ascii(ctx->body, fields, "user_id", 36,
                                          &params[1]);
    if (rc[0] == NGX_OK && params[1].data == NULL) {
        rc[0] = ngx_http_monetize_field_invalid(fields, "user_id",
                                                "is required");

    } else if (rc[0] == NGX_OK) {
        rc[0] = ngx_http_monetize_admin_uuid(fields, "user_id", &params[1]);
    }

    rc[1] = ngx_http_monetize_field_int(ctx->body, fields, "amount",
                                        -NGX_HTTP_MONETIZE_ADMIN_AMOUNT_MAX,
                                        NGX_HTTP_MONETIZE_ADMIN_AMOUNT_MAX,
                                        &amount);
    if (rc[1] == NGX_OK && amount == 0) {
        rc[1] = ngx_http_monetize_field_invalid(fields, "amount",
                                                "is required, and not 0");
    }

    rc[2] = ngx_http_monetize_field_text(ctx->body, fields, "reason",
                                         NGX_HTTP_MONETIZE_ADMIN_REASON_MAX,
                                         &params[3]);
    if (rc[2] == NGX_OK && params[3].data == NULL) {
        rc[2] = ngx_http_monetize_field_invalid(fields, "reason",
                                                "is required");
    }

    /* a retried grant grants once (sql/011) */
    rc[3] = ngx_http_monetize_field_ascii(ctx->body, fields,
                                          "idempotency_key",
                                          NGX_HTTP_MONETIZE_ADMIN_KEY_MAX,
                                          &params[5]);

    if (rc[0] == NGX_ERROR || rc[1] == NGX_ERROR || rc[2] == NGX_ERROR
        || rc[3] == NGX_ERROR)
    {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc[0] == NGX_DECLINED || rc[1] == NGX_DECLINED
        || rc[2] == NGX_DECLINED || rc[3] == NGX_DECLINED)
    {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    params[2].data = p;
    params[2].len = ngx_sprintf(p, "%L", amount) - p;
    params[4] = r->connection->addr_text;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_admin_credits_sql,
                                       params, 6,
                                       ngx_http_monetize_admin_credits_result);
}


static ngx_int_t
ngx_http_monetize_admin_credits_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t        *entry;
    ngx_str_t      outcome, text;
    ngx_str_t      yes = ngx_string("true");
    json_error_t   error;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (outcome.len == sizeof("not_found") - 1
        && ngx_strncmp(outcome.data, "not_found", outcome.len) == 0)
    {
        return ngx_http_monetize_send_invalid(r,
                   json_pack("{s:s}", "user_id", "no such account"));
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 1, &text) != NGX_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    entry = json_loadb((char *) text.data, text.len, 0, &error);
    if (entry == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (outcome.len == sizeof("applied") - 1
        && ngx_strncmp(outcome.data, "applied", outcome.len) == 0)
    {
        return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED, entry);
    }

    /* the same idempotency key again: the first entry, as Stripe answers */

    if (outcome.len == sizeof("replayed") - 1
        && ngx_strncmp(outcome.data, "replayed", outcome.len) == 0)
    {
        if (ngx_http_monetize_set_header(r, "Idempotent-Replayed", &yes)
            != NGX_OK)
        {
            json_decref(entry);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_json(r, NGX_HTTP_OK, entry);
    }

    if (outcome.len == sizeof("conflict") - 1
        && ngx_strncmp(outcome.data, "conflict", outcome.len) == 0)
    {
        json_decref(entry);
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "idempotency_conflict",
                                            "this idempotency key was used "
                                            "for another account or amount");
    }

    /*
     * "insufficient": the balance cannot give the amount back. A conflict
     * with the account's state (409), not a malformed body; nothing was
     * written, and the balance says how much may be taken.
     */

    return ngx_http_monetize_send_json(r, NGX_HTTP_CONFLICT,
               json_pack("{s:{s:s,s:s,s:O}}", "error",
                         "code", "negative_balance",
                         "message", "the balance cannot go below zero",
                         "balance", json_object_get(entry, "balance")));
}


/* PATCH /admin/users/{id} {"suspended"?, "is_admin"?, "plan"?} */

ngx_int_t
ngx_http_monetize_admin_user_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t     *fields;
    ngx_int_t   rc[3];
    ngx_str_t   params[6];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_admin_forbidden(r);
    }

    if (!ngx_http_monetize_is_uuid(&ctx->id)) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found", "no such account");
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(params, sizeof(params));

    rc[0] = ngx_http_monetize_admin_bool(ctx->body, fields, "suspended",
                                         &params[2]);
    rc[1] = ngx_http_monetize_admin_bool(ctx->body, fields, "is_admin",
                                         &params[3]);
    rc[2] = ngx_http_monetize_field_ascii(ctx->body, fields, "plan",
                                          NGX_HTTP_MONETIZE_ADMIN_PLAN_MAX,
                                          &params[4]);

    if (rc[0] == NGX_ERROR || rc[1] == NGX_ERROR || rc[2] == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc[0] == NGX_DECLINED || rc[1] == NGX_DECLINED
        || rc[2] == NGX_DECLINED)
    {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    if (params[2].data == NULL && params[3].data == NULL
        && params[4].data == NULL)
    {
        return ngx_http_monetize_send_error(r,
                                            NGX_HTTP_MONETIZE_UNPROCESSABLE,
                                            "validation_failed",
                                            "give at least one of "
                                            "\"suspended\", \"is_admin\", "
                                            "\"plan\"");
    }

    params[0] = ctx->caller.user_id;
    params[1] = ctx->id;
    params[5] = r->connection->addr_text;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_admin_user_sql,
                                       params, 6,
                                       ngx_http_monetize_admin_user_result);
}


static ngx_int_t
ngx_http_monetize_admin_user_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t        *account;
    ngx_str_t      outcome, text;
    json_error_t   error;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (outcome.len == sizeof("not_found") - 1
        && ngx_strncmp(outcome.data, "not_found", outcome.len) == 0)
    {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found", "no such account");
    }

    if (outcome.len == sizeof("unknown_plan") - 1
        && ngx_strncmp(outcome.data, "unknown_plan", outcome.len) == 0)
    {
        return ngx_http_monetize_send_invalid(r,
                   json_pack("{s:s}", "plan", "no such plan"));
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 1, &text) != NGX_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    account = json_loadb((char *) text.data, text.len, 0, &error);

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK, account);
}


/* GET /admin/users?email=&limit=&after= */

ngx_int_t
ngx_http_monetize_admin_users_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char     *p, *last;
    json_t     *fields;
    ngx_int_t   rc[3];
    ngx_str_t   params[3];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_admin_forbidden(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc[0] = ngx_http_monetize_admin_arg(r, "email", &params[0]);

    if (rc[0] == NGX_OK && params[0].data) {
        last = params[0].data + params[0].len;

        /* printable ASCII, as every stored address is */

        for (p = params[0].data; p < last; p++) {
            if (*p < 0x20 || *p > 0x7e) {
                break;
            }
        }

        if (params[0].len > NGX_HTTP_MONETIZE_ADMIN_EMAIL_MAX || p < last) {
            rc[0] = ngx_http_monetize_field_invalid(fields, "email",
                                                    "must be printable "
                                                    "ASCII, at most 254 "
                                                    "bytes");
        }

    } else if (rc[0] == NGX_DECLINED) {
        rc[0] = ngx_http_monetize_field_invalid(fields, "email",
                                                "is not URL-encoded well");
    }

    rc[1] = ngx_http_monetize_admin_limit(r, fields, &params[1]);

    rc[2] = ngx_http_monetize_admin_arg(r, "after", &params[2]);
    if (rc[2] == NGX_OK) {
        rc[2] = ngx_http_monetize_admin_uuid(fields, "after", &params[2]);

    } else if (rc[2] == NGX_DECLINED) {
        rc[2] = ngx_http_monetize_field_invalid(fields, "after",
                                                "must be a user's id");
    }

    if (rc[0] == NGX_ERROR || rc[1] == NGX_ERROR || rc[2] == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc[0] == NGX_DECLINED || rc[1] == NGX_DECLINED
        || rc[2] == NGX_DECLINED)
    {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_admin_users_sql,
                                       params, 3,
                                       ngx_http_monetize_admin_page_result);
}


/* GET /admin/audit?user_id=&limit=&after= */

ngx_int_t
ngx_http_monetize_admin_audit_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t     *fields;
    ngx_int_t   rc[3], after;
    ngx_str_t   params[3];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_admin_forbidden(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc[0] = ngx_http_monetize_admin_arg(r, "user_id", &params[0]);
    if (rc[0] == NGX_OK) {
        rc[0] = ngx_http_monetize_admin_uuid(fields, "user_id", &params[0]);

    } else if (rc[0] == NGX_DECLINED) {
        rc[0] = ngx_http_monetize_field_invalid(fields, "user_id",
                                                "must be a user's id");
    }

    rc[1] = ngx_http_monetize_admin_limit(r, fields, &params[1]);

    rc[2] = ngx_http_monetize_admin_arg(r, "after", &params[2]);
    if (rc[2] == NGX_OK && params[2].data) {
        after = ngx_atoi(params[2].data, params[2].len);

        if (after <= 0) {
            rc[2] = ngx_http_monetize_field_invalid(fields, "after",
                                                    "must be an entry's id");
        }

    } else if (rc[2] == NGX_DECLINED) {
        rc[2] = ngx_http_monetize_field_invalid(fields, "after",
                                                "must be an entry's id");
    }

    if (rc[0] == NGX_ERROR || rc[1] == NGX_ERROR || rc[2] == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc[0] == NGX_DECLINED || rc[1] == NGX_DECLINED
        || rc[2] == NGX_DECLINED)
    {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_admin_audit_sql,
                                       params, 3,
                                       ngx_http_monetize_admin_page_result);
}


static ngx_int_t
ngx_http_monetize_admin_page_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    return ngx_http_monetize_api_send_pg_json(r, q, NGX_HTTP_OK);
}


static ngx_int_t
ngx_http_monetize_admin_forbidden(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                        "this endpoint is for operators "
                                        "(accounts with is_admin)");
}


/* a JSON boolean as PostgreSQL reads it; data NULL when absent or null */

static ngx_int_t
ngx_http_monetize_admin_bool(json_t *body, json_t *fields, const char *name,
    ngx_str_t *value)
{
    json_t  *v;

    ngx_str_null(value);

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_boolean(v)) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be true or false");
    }

    if (json_is_true(v)) {
        ngx_str_set(value, "t");

    } else {
        ngx_str_set(value, "f");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_admin_uuid(json_t *fields, const char *name,
    ngx_str_t *value)
{
    if (value->data == NULL || ngx_http_monetize_is_uuid(value)) {
        return NGX_OK;
    }

    return ngx_http_monetize_field_invalid(fields, name,
                                           "must be a user's id (a UUID)");
}


/*
 * A query argument, URL-decoded; data NULL when absent or empty.
 * NGX_DECLINED: it does not decode (a "%" without two hex digits).
 */

static ngx_int_t
ngx_http_monetize_admin_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *dst, *src, *p;
    ngx_str_t   raw;

    ngx_str_null(value);

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK
        || raw.len == 0)
    {
        return NGX_OK;
    }

    for (p = raw.data; p < raw.data + raw.len; p++) {
        if (*p == '%'
            && (raw.data + raw.len - p < 3 || !isxdigit(p[1])
                || !isxdigit(p[2])))
        {
            return NGX_DECLINED;
        }
    }

    dst = ngx_pnalloc(r->pool, raw.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, NGX_UNESCAPE_URI);

    /* "+" stays a plus, as in "name+tag@example.com": send %20 for space */

    value->len = dst - value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_admin_limit(ngx_http_request_t *r, json_t *fields,
    ngx_str_t *value)
{
    ngx_int_t  n;

    if (ngx_http_arg(r, (u_char *) "limit", sizeof("limit") - 1, value)
        != NGX_OK
        || value->len == 0)
    {
        ngx_str_set(value, "20");       /* the default page */
        return NGX_OK;
    }

    n = ngx_atoi(value->data, value->len);

    if (n < 1 || n > NGX_HTTP_MONETIZE_PAGE_MAX) {
        return ngx_http_monetize_field_invalid(fields, "limit",
                                               "must be a number from 1 to "
                                               "%d",
                                               NGX_HTTP_MONETIZE_PAGE_MAX);
    }

    return NGX_OK;
}
