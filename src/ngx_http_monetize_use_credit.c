
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"


/*
 * POST /use_credit {"amount"?, "idempotency_key"?}: the caller spends its
 * own credits. The charge is a ledger entry whose reference is unique, so
 * the same idempotency key never charges twice; one statement
 * (monetize_use_credit() in SQL) charges, or tells a replay, a conflict or
 * a balance that cannot pay.
 */


#define NGX_HTTP_MONETIZE_AMOUNT_MAX           1000000000
#define NGX_HTTP_MONETIZE_IDEMPOTENCY_MAX      255
#define NGX_HTTP_MONETIZE_NONCE_LEN            16


typedef struct {
    int64_t                        amount;
} ngx_http_monetize_use_credit_t;


static ngx_int_t ngx_http_monetize_use_credit_reference(ngx_http_request_t *r,
    ngx_str_t *user_id, ngx_str_t *idempotency_key, ngx_str_t *reference);
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
    ngx_str_t                        idempotency_key, params[4];
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
    ngx_str_null(&idempotency_key);

    amount_rc = ngx_http_monetize_field_int(ctx->body, fields, "amount", 1,
                                            NGX_HTTP_MONETIZE_AMOUNT_MAX,
                                            &uc->amount);
    key_rc = ngx_http_monetize_field_ascii(ctx->body, fields,
                                           "idempotency_key",
                                           NGX_HTTP_MONETIZE_IDEMPOTENCY_MAX,
                                           &idempotency_key);

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

    if (ngx_http_monetize_use_credit_reference(r, &ctx->caller.user_id,
                                               &idempotency_key, &params[3])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_use_credit_sql,
                                       params, 4,
                                       ngx_http_monetize_use_credit_result);
}


/*
 * The ledger reference: per account, so that two accounts may use the same
 * idempotency key, and in two name spaces, so that no idempotency key can
 * equal the random reference of a call made without one.
 */

static ngx_int_t
ngx_http_monetize_use_credit_reference(ngx_http_request_t *r,
    ngx_str_t *user_id, ngx_str_t *idempotency_key, ngx_str_t *reference)
{
    u_char  *p;
    u_char   nonce[NGX_HTTP_MONETIZE_NONCE_LEN];

    reference->data = ngx_pnalloc(r->pool,
                                  sizeof("use_credit::request:") - 1
                                  + user_id->len
                                  + ngx_max(idempotency_key->len,
                                            2 * sizeof(nonce)));
    if (reference->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(reference->data, "use_credit:%V:", user_id);

    if (idempotency_key->data) {
        p = ngx_sprintf(p, "key:%V", idempotency_key);

    } else {
        if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "monetize: RAND_bytes() failed");
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "request:", sizeof("request:") - 1);
        p = ngx_hex_dump(p, nonce, sizeof(nonce));
    }

    reference->len = p - reference->data;

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
