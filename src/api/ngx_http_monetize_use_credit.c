
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"


/*
 * POST /use_credit {"amount"?, "idempotency_key"?}: the caller spends its
 * own credits. The charge is a ledger entry whose reference is unique, so
 * the same idempotency key never charges twice; one statement
 * (monetize_use_credit() in SQL) charges, or tells a replay, a conflict or
 * a balance that cannot pay.
 *
 * A call without a key gets one, "req_" and its $request_id: when the
 * answer of the statement is lost, the charge may have committed or not,
 * and the 503 gives that key, so that the retry replays a charge that was
 * made and makes one that was not, never a second.
 */


#define NGX_HTTP_MONETIZE_AMOUNT_MAX           1000000000
#define NGX_HTTP_MONETIZE_IDEMPOTENCY_MAX      255


typedef struct {
    int64_t                        amount;
    ngx_str_t                      idempotency_key;
} ngx_http_monetize_use_credit_t;


static ngx_int_t ngx_http_monetize_use_credit_key(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_http_monetize_use_credit_unknown(ngx_http_request_t *r,
    ngx_http_monetize_use_credit_t *uc);
static ngx_int_t ngx_http_monetize_use_credit_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);


static const char  ngx_http_monetize_use_credit_sql[] =
    "SELECT outcome, balance FROM monetize_use_credit($1, $2, $3, $4)";


ngx_int_t
ngx_http_monetize_use_credit_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char                          *p;
    json_t                          *fields;
    ngx_int_t                        amount_rc, key_rc;
    ngx_str_t                        params[4];
    ngx_http_monetize_use_credit_t  *uc;

    uc = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_use_credit_t));
    if (uc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = uc;

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    uc->amount = 1;
    ngx_str_null(&uc->idempotency_key);

    amount_rc = ngx_http_monetize_field_int(ctx->body, fields, "amount", 1,
                                            NGX_HTTP_MONETIZE_AMOUNT_MAX,
                                            &uc->amount);
    key_rc = ngx_http_monetize_field_ascii(ctx->body, fields,
                                           "idempotency_key",
                                           NGX_HTTP_MONETIZE_IDEMPOTENCY_MAX,
                                           &uc->idempotency_key);

    if (amount_rc == NGX_ERROR || key_rc == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (amount_rc == NGX_DECLINED || key_rc == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    params[1] = ctx->caller.key_id;
    params[2].data = p;
    params[2].len = ngx_sprintf(p, "%L", uc->amount) - p;

    if (uc->idempotency_key.data == NULL
        && ngx_http_monetize_use_credit_key(r, &uc->idempotency_key)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* per account, so that two accounts may use the same key */

    params[3].len = sizeof("use_credit::key:") - 1
                    + ctx->caller.user_id.len + uc->idempotency_key.len;
    params[3].data = ngx_pnalloc(r->pool, params[3].len);
    if (params[3].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(params[3].data, "use_credit:%V:key:%V",
                &ctx->caller.user_id, &uc->idempotency_key);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_use_credit_sql,
                                       params, 4,
                                       ngx_http_monetize_use_credit_result);
}


/*
 * The key of a call that gave none: its $request_id, 32 random hex digits,
 * which the access log can show too.
 */

static ngx_int_t
ngx_http_monetize_use_credit_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char                     *p;
    ngx_str_t                   name = ngx_string("request_id");
    ngx_http_variable_value_t  *vv;

    vv = ngx_http_get_variable(r, &name, ngx_hash_key(name.data, name.len));

    if (vv == NULL || vv->not_found || vv->len == 0) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, sizeof("req_") - 1 + vv->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    p = ngx_cpymem(p, "req_", sizeof("req_") - 1);
    p = ngx_cpymem(p, vv->data, vv->len);
    key->len = p - key->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_use_credit_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int64_t                          balance;
    ngx_str_t                        outcome;
    ngx_str_t                        replayed = ngx_string("true");
    ngx_http_monetize_use_credit_t  *uc;

    uc = ctx->data;

    if (q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE && q->sent) {
        return ngx_http_monetize_use_credit_unknown(r, uc);
    }

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK
        || ngx_http_monetize_pg_get_int(q, 0, 1, &balance) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (ngx_strcmp(outcome.data, "insufficient") == 0) {
        return ngx_http_monetize_send_insufficient(r, uc->amount, balance);
    }

    if (ngx_strcmp(outcome.data, "conflict") == 0) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "idempotency_conflict",
                                            "this idempotency key was used "
                                            "for another amount");
    }

    if (ngx_strcmp(outcome.data, "replayed") == 0) {

        /* as Stripe does: this answer charged nothing */

        if (ngx_http_monetize_set_header(r, "Idempotent-Replayed", &replayed)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ngx_strcmp(outcome.data, "applied") != 0) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
               json_pack("{s:I}", "balance", (json_int_t) balance));
}


/*
 * The statement was sent and its answer lost: it may have committed. A
 * refusal by the server, or a statement never sent, is a definite "not
 * charged", and the usual 503 "try again" holds for those.
 */

static ngx_int_t
ngx_http_monetize_use_credit_unknown(ngx_http_request_t *r,
    ngx_http_monetize_use_credit_t *uc)
{
    json_t     *body;
    ngx_str_t   retry = ngx_string("1");

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "monetize: the answer to a charge of %L credits "
                  "(idempotency key \"%V\") was lost; its outcome is unknown",
                  uc->amount, &uc->idempotency_key);

    body = ngx_http_monetize_error_body("outcome_unknown",
               "PostgreSQL's answer was lost: the charge may have been "
               "made. Retry with this idempotency_key and the same amount: "
               "it charges only if this call did not");

    if (body == NULL
        || json_object_set_new(json_object_get(body, "error"),
                               "idempotency_key",
                               json_stringn((char *) uc->idempotency_key.data,
                                            uc->idempotency_key.len))
        || ngx_http_monetize_set_header(r, "Retry-After", &retry) != NGX_OK)
    {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, body);
}
