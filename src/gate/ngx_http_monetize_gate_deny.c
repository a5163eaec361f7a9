
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_gate.h"
#include "ngx_http_monetize_json.h"


/*
 * What the gate answers when it refuses a call: the status that its access
 * handler returns for nginx to finalize, the headers that go with it, and
 * the contract's JSON that the gate module's filter puts in place of
 * nginx's page when no error_page took the call elsewhere.
 */


typedef struct {
    ngx_int_t                        key_error;     /* -1: none */
    ngx_uint_t                       status;
    const char                      *code;
    const char                      *message;
} ngx_http_monetize_denial_t;


static json_t *ngx_http_monetize_gate_past_due_body(ngx_http_request_t *r,
    ngx_http_monetize_denial_t *denial);


/* a mistake with the key is worded as the API words it */

static ngx_http_monetize_denial_t  ngx_http_monetize_denials[] = {
    { -1, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_MISSING, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_MALFORMED, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_AMBIGUOUS, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_NOT_OURS, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_UNKNOWN, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_REVOKED, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_EXPIRED, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_SUSPENDED, 0, NULL, NULL },
    { -1, NGX_HTTP_BAD_REQUEST, "invalid_request",
      "the cost of this call is not a whole number of credits" },
    { -1, NGX_HTTP_MONETIZE_PAYMENT_REQUIRED, "insufficient_credits", NULL },
    { -1, NGX_HTTP_SERVICE_UNAVAILABLE, "backend_unavailable",
      "postgres is unavailable; try again" },
    { -1, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "the server failed; the operator will find the cause in its log" },
    { -1, NGX_HTTP_TOO_MANY_REQUESTS, "rate_limited", NULL },
    { -1, NGX_HTTP_TOO_MANY_REQUESTS, "quota_exceeded", NULL },
    { -1, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "the plan of this account is misconfigured; the operator will find "
      "the cause in its log" },
    { -1, NGX_HTTP_SERVICE_UNAVAILABLE, "backend_unavailable",
      "the rate limiter is unavailable; try again" },
    { NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_TOKEN_EXPIRED, 0, NULL, NULL },
    { NGX_HTTP_MONETIZE_KEY_NOT_VERIFIED, 0, NULL, NULL },
    { -1, NGX_HTTP_MONETIZE_PAYMENT_REQUIRED, "payment_past_due",
      "the last payment of this account's subscription failed; update the "
      "payment method (POST /v1/billing/portal) or buy credits" },
    { -1, NGX_HTTP_FORBIDDEN, "forbidden",
      "this credential's scopes do not include the one this location "
      "needs" }
};


/*
 * A denial is a status that nginx finalizes, as limit_req's are, so that
 * error_page applies. The headers that belong to the denial are set here
 * (an error_page answer keeps them, as it keeps auth_basic's); its JSON
 * body comes from the header filter, when no error_page took the call
 * elsewhere.
 */

ngx_int_t
ngx_http_monetize_gate_deny(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_str_t                    retry = ngx_string("1");
    ngx_uint_t                   status;
    ngx_http_monetize_denial_t  *denial;

    denial = &ngx_http_monetize_denials[ctx->rc];
    status = ngx_http_monetize_gate_status(ctx);

    ctx->denied = 1;
    ctx->uri_changes = r->uri_changes;

    if (ctx->deny_headers) {
        /* an error_page led back into a gated location */
        return status;
    }

    ctx->deny_headers = 1;

    if (denial->key_error >= 0) {
        rc = ngx_http_monetize_key_error_headers(r, denial->key_error);

    } else if (ctx->rc == NGX_HTTP_MONETIZE_DENY_RATE_LIMITED) {
        rc = ngx_http_monetize_rate_limited_headers(r, &ctx->limit);

    } else if (ctx->rc == NGX_HTTP_MONETIZE_DENY_QUOTA) {
        rc = ngx_http_monetize_quota_exceeded_headers(r, ctx->period_end);

    } else if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_http_monetize_set_header(r, "Retry-After", &retry);

    } else {
        rc = NGX_OK;
    }

    return (rc == NGX_OK) ? (ngx_int_t) status
                          : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_uint_t
ngx_http_monetize_gate_status(ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_http_monetize_denial_t  *denial;

    denial = &ngx_http_monetize_denials[ctx->rc];

    if (denial->key_error >= 0) {
        return ngx_http_monetize_key_errors[denial->key_error].status;
    }

    return denial->status;
}


const char *
ngx_http_monetize_gate_code(ngx_int_t rc)
{
    ngx_http_monetize_denial_t  *denial;

    denial = &ngx_http_monetize_denials[rc];

    if (denial->key_error >= 0) {
        return ngx_http_monetize_key_errors[denial->key_error].code;
    }

    return denial->code;
}


/* The JSON of a denial, in the contract's words. */

json_t *
ngx_http_monetize_gate_answer(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    time_t                       resets;
    ngx_http_monetize_denial_t  *denial;

    denial = &ngx_http_monetize_denials[ctx->rc];

    if (denial->key_error >= 0) {
        return ngx_http_monetize_key_error_body(denial->key_error, ctx->why);
    }

    switch (ctx->rc) {

    case NGX_HTTP_MONETIZE_DENY_CREDITS:
        /* refused past the plan's calls: say when they come back */
        resets = (ctx->quota_known && ctx->quota_left == 0)
                 ? ctx->period_end : 0;

        return ngx_http_monetize_insufficient_body(r, ctx->cost, ctx->balance,
                                                   resets);

    case NGX_HTTP_MONETIZE_DENY_RATE_LIMITED:
        return ngx_http_monetize_rate_limited_body(&ctx->limit);

    case NGX_HTTP_MONETIZE_DENY_QUOTA:
        return ngx_http_monetize_quota_exceeded_body(ctx->period_end);

    case NGX_HTTP_MONETIZE_DENY_PAST_DUE:
        return ngx_http_monetize_gate_past_due_body(r, denial);

    default:
        return ngx_http_monetize_error_body(denial->code, "%s",
                                            denial->message);
    }
}


/*
 * How many more calls could pass, at this call's cost, as far as the
 * plan's calls and the balance tell; "limit" when they do not bound it.
 * RateLimit-Remaining says no more than this: a client must not be told
 * that calls are left when none would pass.
 */

ngx_uint_t
ngx_http_monetize_gate_calls_left(ngx_http_monetize_gate_ctx_t *ctx,
    ngx_uint_t limit)
{
    int64_t  n;

    if (ctx->rc == NGX_HTTP_MONETIZE_DENY_CREDITS
        || ctx->rc == NGX_HTTP_MONETIZE_DENY_QUOTA)
    {
        return 0;
    }

    if (!ctx->balance_known) {
        return limit;
    }

    if (ctx->quota_known && ctx->quota_left < 0) {
        return limit;           /* an unlimited plan includes every call */
    }

    if (ctx->overage) {
        return limit;           /* past the quota, its plan bills each call */
    }

    if (ctx->quota_known) {
        n = ctx->quota_left;

        if (ctx->cost > 0) {
            n += ctx->balance / ctx->cost;
        }

    } else if (ctx->cost > 0) {
        n = ctx->balance / ctx->cost;

    } else {
        return limit;
    }

    return (n < (int64_t) limit) ? (ngx_uint_t) ngx_max(n, 0) : limit;
}


/* a subscription whose payment failed: where to pay, as a 402 of credits */

static json_t *
ngx_http_monetize_gate_past_due_body(ngx_http_request_t *r,
    ngx_http_monetize_denial_t *denial)
{
    json_t                         *body;
    ngx_str_t                       url;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (ngx_http_complex_value(r, mcf->top_up_url, &url) != NGX_OK) {
        return NULL;
    }

    body = ngx_http_monetize_error_body(denial->code, "%s", denial->message);

    if (body == NULL
        || json_object_set_new(json_object_get(body, "error"), "top_up_url",
                               json_stringn((char *) url.data, url.len)))
    {
        json_decref(body);
        return NULL;
    }

    return body;
}
