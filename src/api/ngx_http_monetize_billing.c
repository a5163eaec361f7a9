/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"
#include "ngx_http_monetize_stripe.h"


/*
 * Paying through Stripe: POST /purchase_credits {"pack"} and POST
 * /billing/checkout {"plan"} open a Checkout Session (mode payment, mode
 * subscription), POST /billing/portal a billing portal session, each for
 * the caller's one Stripe customer; GET /billing/status says what the
 * account has now. Nothing is granted here: the webhook grants what the
 * session's metadata names once Stripe says it is paid.
 *
 * Every POST to Stripe carries an Idempotency-Key made of what it is for:
 * the client's own Idempotency-Key (scoped to the account and the
 * endpoint), else the request's $request_id. The Stripe client's retries
 * of one request, and a client's retries of one intent, thus make one
 * session; Stripe refuses the same key with other parameters, which is
 * the client's 409 idempotency_conflict.
 */


#define NGX_HTTP_MONETIZE_BILLING_PACK    0
#define NGX_HTTP_MONETIZE_BILLING_PLAN    1
#define NGX_HTTP_MONETIZE_BILLING_PORTAL  2

#define NGX_HTTP_MONETIZE_BILLING_ID_MAX   100
#define NGX_HTTP_MONETIZE_BILLING_KEY_MAX  200


typedef struct {
    ngx_uint_t                        kind;
    ngx_str_t                         item;       /* the pack or plan */
    ngx_str_t                         name;       /* of the pack */
    ngx_str_t                         credits;
    ngx_str_t                         price_cents;
    ngx_str_t                         currency;
    ngx_str_t                         price;      /* stripe_price_id */
    ngx_str_t                         idempotency_key;
    ngx_str_t                         customer;
} ngx_http_monetize_billing_t;


static ngx_int_t ngx_http_monetize_billing_begin(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_uint_t kind, const char *field);
static ngx_int_t ngx_http_monetize_billing_key(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_billing_t *b);
static ngx_int_t ngx_http_monetize_billing_pack_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_billing_plan_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_billing_customer(ngx_http_request_t *r);
static void ngx_http_monetize_billing_customer_done(void *data, ngx_int_t rc,
    ngx_str_t *customer_id);
static ngx_int_t ngx_http_monetize_billing_session(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b);
static ngx_int_t ngx_http_monetize_billing_params(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b, ngx_http_monetize_stripe_call_t *sc);
static ngx_int_t ngx_http_monetize_billing_own_portal(ngx_http_request_t *r,
    ngx_str_t *url);
static ngx_int_t ngx_http_monetize_billing_url(ngx_http_request_t *r,
    ngx_str_t *url, const char *fragment);
static void ngx_http_monetize_billing_stripe_done(
    ngx_http_monetize_stripe_call_t *sc);
static ngx_int_t ngx_http_monetize_billing_answer(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b, ngx_http_monetize_stripe_call_t *sc);
static ngx_int_t ngx_http_monetize_billing_copy(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, int col, ngx_str_t *value);
static ngx_int_t ngx_http_monetize_billing_status_result(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_http_monetize_pg_query_t *q);


/* in sql/016_billing.sql */
static const char  ngx_http_monetize_billing_pack_sql[] =
    "SELECT id, name, credits, price_cents, currency, stripe_price_id"
    "  FROM monetize_checkout_pack($1)";

static const char  ngx_http_monetize_billing_plan_sql[] =
    "SELECT id, stripe_price_id, subscribed"
    "  FROM monetize_checkout_plan($1, $2)";

static const char  ngx_http_monetize_billing_status_sql[] =
    "SELECT monetize_billing_status($1)";


static const char  *ngx_http_monetize_billing_key_kinds[] = {
    "pack-", "plan-", "portal-"
};


/* POST /purchase_credits {"pack"} */

ngx_int_t
ngx_http_monetize_purchase_credits_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_monetize_billing_begin(r, ctx,
                                         NGX_HTTP_MONETIZE_BILLING_PACK,
                                         "pack");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_billing_pack_sql,
               &((ngx_http_monetize_billing_t *) ctx->data)->item, 1,
               ngx_http_monetize_billing_pack_result);
}


/* POST /billing/checkout {"plan"} */

ngx_int_t
ngx_http_monetize_billing_checkout_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t   rc;
    ngx_str_t  *params;

    rc = ngx_http_monetize_billing_begin(r, ctx,
                                         NGX_HTTP_MONETIZE_BILLING_PLAN,
                                         "plan");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    params = ngx_palloc(r->pool, 2 * sizeof(ngx_str_t));
    if (params == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ((ngx_http_monetize_billing_t *) ctx->data)->item;
    params[1] = ctx->caller.user_id;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_billing_plan_sql,
                                       params, 2,
                                       ngx_http_monetize_billing_plan_result);
}


/* POST /billing/portal */

ngx_int_t
ngx_http_monetize_billing_portal_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_monetize_billing_begin(r, ctx,
                                         NGX_HTTP_MONETIZE_BILLING_PORTAL,
                                         NULL);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_monetize_billing_customer(r);
}


/* GET /billing/status: needs no Stripe, only what its webhooks wrote */

ngx_int_t
ngx_http_monetize_billing_status_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_api_query(r,
                                       ngx_http_monetize_billing_status_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_billing_status_result);
}


static ngx_int_t
ngx_http_monetize_billing_status_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    return ngx_http_monetize_api_send_pg_json(r, q, NGX_HTTP_OK);
}


/*
 * What every POST checks before it asks anything: Stripe is configured
 * (else the endpoint is not served here: 404, as for an endpoint to come,
 * since no retry will help), the body names the item, and the client's
 * Idempotency-Key, if any, is one Stripe takes. NGX_DECLINED: go on;
 * otherwise what ends the request (the refusal sent).
 */

static ngx_int_t
ngx_http_monetize_billing_begin(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_uint_t kind, const char *field)
{
    json_t                         *fields;
    ngx_int_t                       rc;
    ngx_http_monetize_billing_t    *b;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (mcf->stripe == NULL) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found",
                                            "this server takes no payments: "
                                            "Stripe is not configured");
    }

    b = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_billing_t));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->kind = kind;
    ctx->data = b;

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = NGX_OK;

    if (field) {
        rc = ngx_http_monetize_field_ascii(ctx->body, fields, field,
                                           NGX_HTTP_MONETIZE_BILLING_ID_MAX,
                                           &b->item);

        if (rc == NGX_OK && b->item.data == NULL) {
            rc = ngx_http_monetize_field_invalid(fields, field,
                                                 "is required");
        }
    }

    if (rc == NGX_OK) {
        rc = ngx_http_monetize_billing_key(r, ctx, b);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_monetize_field_invalid(fields, "Idempotency-Key",
                     "must be 1 to %d bytes of printable ASCII",
                     NGX_HTTP_MONETIZE_BILLING_KEY_MAX);
        }
    }

    if (rc == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return NGX_DECLINED;
}


/*
 * b->idempotency_key: "<kind>-<user id>-<the client's Idempotency-Key>",
 * or "<kind>-<user id>-req_<$request_id>". NGX_DECLINED: the client's key
 * is not one Stripe takes (at most 255 bytes in all).
 */

static ngx_int_t
ngx_http_monetize_billing_key(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_billing_t *b)
{
    u_char                     *p;
    ngx_str_t                   own, name = ngx_string("request_id");
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h;
    const char                 *kind;
    ngx_http_variable_value_t  *vv;

    ngx_str_null(&own);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               sizeof("Idempotency-Key") - 1) == 0)
        {
            own = h[i].value;
            break;
        }
    }

    if (own.data) {
        if (own.len == 0 || own.len > NGX_HTTP_MONETIZE_BILLING_KEY_MAX) {
            return NGX_DECLINED;
        }

        for (p = own.data; p < own.data + own.len; p++) {
            if (*p < 0x21 || *p > 0x7e) {
                return NGX_DECLINED;
            }
        }

    } else {
        vv = ngx_http_get_variable(r, &name,
                                   ngx_hash_key(name.data, name.len));

        if (vv == NULL || vv->not_found || vv->len == 0) {
            return NGX_ERROR;
        }

        own.len = sizeof("req_") - 1 + vv->len;
        own.data = ngx_pnalloc(r->pool, own.len);
        if (own.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(own.data, "req_", sizeof("req_") - 1);
        ngx_memcpy(p, vv->data, vv->len);
    }

    kind = ngx_http_monetize_billing_key_kinds[b->kind];

    b->idempotency_key.data = ngx_pnalloc(r->pool, ngx_strlen(kind)
                                          + ctx->caller.user_id.len + 1
                                          + own.len);
    if (b->idempotency_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->idempotency_key.data, kind, ngx_strlen(kind));
    p = ngx_cpymem(p, ctx->caller.user_id.data, ctx->caller.user_id.len);
    *p++ = '-';
    p = ngx_cpymem(p, own.data, own.len);
    b->idempotency_key.len = p - b->idempotency_key.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_billing_pack_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t                       *fields;
    ngx_http_monetize_billing_t  *b;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    b = ctx->data;

    if (PQntuples(q->result) != 1) {
        fields = json_pack("{s:s}", "pack", "no such credit pack");
        if (fields == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_invalid(r, fields);
    }

    if (ngx_http_monetize_billing_copy(r, q, 1, &b->name) != NGX_OK
        || ngx_http_monetize_billing_copy(r, q, 2, &b->credits) != NGX_OK
        || ngx_http_monetize_billing_copy(r, q, 3, &b->price_cents) != NGX_OK
        || ngx_http_monetize_billing_copy(r, q, 4, &b->currency) != NGX_OK
        || ngx_http_monetize_billing_copy(r, q, 5, &b->price) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_billing_customer(r);
}


static ngx_int_t
ngx_http_monetize_billing_plan_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t                       *fields;
    const char                   *why;
    ngx_http_monetize_billing_t  *b;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    b = ctx->data;

    if (PQntuples(q->result) != 1) {
        why = "no such plan";

    } else if (b->item.len == sizeof("free") - 1
               && ngx_strncmp(b->item.data, "free", b->item.len) == 0)
    {
        why = "the free plan needs no checkout: cancel the subscription "
              "in the billing portal to return to it";

    } else if (ngx_http_monetize_billing_copy(r, q, 1, &b->price) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (b->price.data == NULL) {
        why = "this plan cannot be bought: it has no Stripe price";

    } else if (!PQgetisnull(q->result, 0, 2)) {

        /*
         * A second subscription would be billed beside the first: a plan
         * is changed or cancelled in Stripe's billing portal.
         */

        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                   "subscription_exists",
                   "the account already subscribes to \"%s\": change or "
                   "cancel the plan in the billing portal "
                   "(POST /v1/billing/portal)",
                   PQgetvalue(q->result, 0, 2));

    } else {
        return ngx_http_monetize_billing_customer(r);
    }

    fields = json_pack("{s:s}", "plan", why);
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_invalid(r, fields);
}


/* A copy of a column that outlives the result; NULL stays NULL. */

static ngx_int_t
ngx_http_monetize_billing_copy(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, int col, ngx_str_t *value)
{
    ngx_str_t  s;

    if (ngx_http_monetize_pg_get_str(q, 0, col, &s) != NGX_OK) {
        ngx_str_null(value);
        return NGX_OK;
    }

    value->data = ngx_pnalloc(r->pool, s.len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, s.data, s.len);
    value->data[s.len] = '\0';
    value->len = s.len;

    return NGX_OK;
}


/* Every session is for the caller's one Stripe customer. */

static ngx_int_t
ngx_http_monetize_billing_customer(ngx_http_request_t *r)
{
    ngx_http_monetize_api_ctx_t    *ctx;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    if (ngx_http_monetize_stripe_customer(mcf->stripe, mcf->pg, r->pool,
            r->connection->log, &ctx->caller.user_id,
            ngx_http_monetize_billing_customer_done, r)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_billing_customer_done(void *data, ngx_int_t rc,
    ngx_str_t *customer_id)
{
    ngx_int_t                     res;
    ngx_http_request_t           *r;
    ngx_http_monetize_api_ctx_t  *ctx;
    ngx_http_monetize_billing_t  *b;

    r = data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    b = ctx->data;

    if (rc != NGX_OK) {
        ngx_http_monetize_api_finish(r,
            ngx_http_monetize_api_unavailable(r, "stripe"));
        return;
    }

    b->customer.data = ngx_pnalloc(r->pool, customer_id->len);
    if (b->customer.data == NULL) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(b->customer.data, customer_id->data, customer_id->len);
    b->customer.len = customer_id->len;

    res = ngx_http_monetize_billing_session(r, b);

    if (res != NGX_DONE) {
        ngx_http_monetize_api_finish(r, res);
    }
}


static ngx_int_t
ngx_http_monetize_billing_session(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b)
{
    const char                       *path;
    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_stripe_call_t  *sc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    path = (b->kind == NGX_HTTP_MONETIZE_BILLING_PORTAL)
           ? "/v1/billing_portal/sessions" : "/v1/checkout/sessions";

    sc = ngx_http_monetize_stripe_call(r->pool, r->connection->log,
                                       NGX_HTTP_POST, path,
                                       &b->idempotency_key);
    if (sc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_billing_params(r, b, sc) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sc->handler = ngx_http_monetize_billing_stripe_done;
    sc->data = r;

    if (ngx_http_monetize_stripe_start(mcf->stripe, sc) != NGX_OK) {
        return ngx_http_monetize_api_unavailable(r, "stripe");
    }

    return NGX_DONE;
}


/* The form of the session, as Stripe's API names its fields. */

static ngx_int_t
ngx_http_monetize_billing_params(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b, ngx_http_monetize_stripe_call_t *sc)
{
    ngx_str_t                     url, v;
    ngx_http_monetize_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    /* each field, or NGX_ERROR from here when it cannot be added */

#define PARAM(name, value)                                                    \
    if (ngx_http_monetize_stripe_param(sc, name, value) != NGX_OK) {          \
        return NGX_ERROR;                                                     \
    }

    PARAM("customer", &b->customer);

    if (b->kind == NGX_HTTP_MONETIZE_BILLING_PORTAL) {
        if (ngx_http_monetize_billing_url(r, &url, "billing") != NGX_OK) {
            return NGX_ERROR;
        }

        PARAM("return_url", &url);

        return NGX_OK;
    }

    PARAM("client_reference_id", &ctx->caller.user_id);
    PARAM("metadata[user_id]", &ctx->caller.user_id);

    if (b->kind == NGX_HTTP_MONETIZE_BILLING_PACK) {
        ngx_str_set(&v, "payment");
        PARAM("mode", &v);
        PARAM("metadata[pack]", &b->item);
        PARAM("metadata[credits]", &b->credits);

        if (b->price.data) {
            PARAM("line_items[0][price]", &b->price);

        } else {
            PARAM("line_items[0][price_data][currency]", &b->currency);
            PARAM("line_items[0][price_data][unit_amount]", &b->price_cents);
            PARAM("line_items[0][price_data][product_data][name]", &b->name);
        }

    } else {
        ngx_str_set(&v, "subscription");
        PARAM("mode", &v);
        PARAM("metadata[plan]", &b->item);
        PARAM("subscription_data[metadata][user_id]", &ctx->caller.user_id);
        PARAM("subscription_data[metadata][plan]", &b->item);
        PARAM("line_items[0][price]", &b->price);
    }

    ngx_str_set(&v, "1");
    PARAM("line_items[0][quantity]", &v);

    if (ngx_http_monetize_billing_url(r, &url,
            "billing?checkout=success&session_id={CHECKOUT_SESSION_ID}")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    PARAM("success_url", &url);

    if (ngx_http_monetize_billing_url(r, &url, "billing?checkout=cancel")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    PARAM("cancel_url", &url);

#undef PARAM

    return NGX_OK;
}


/*
 * Where Stripe sends the customer back: monetize_billing_return_url, by
 * default <monetize_public_url>/portal/ (the portal's page), or without
 * either this server's own /portal/ as the client called it, with the
 * fragment the portal reads (a fragment, so that the page is the same
 * static file whatever the outcome).
 */

static ngx_int_t
ngx_http_monetize_billing_url(ngx_http_request_t *r, ngx_str_t *url,
    const char *fragment)
{
    u_char                         *p;
    size_t                          len;
    ngx_str_t                      *base, own;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    base = &mcf->billing_return_url;

    if (base->len == 0) {
        if (ngx_http_monetize_billing_own_portal(r, &own) != NGX_OK) {
            return NGX_ERROR;
        }

        base = &own;
    }

    len = ngx_strlen(fragment);

    url->data = ngx_pnalloc(r->pool, base->len + 1 + len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, base->data, base->len);
    *p++ = '#';
    p = ngx_cpymem(p, fragment, len);
    url->len = p - url->data;

    return NGX_OK;
}


/* $scheme://$monetize_host/portal/: the portal of the server called */

static ngx_int_t
ngx_http_monetize_billing_own_portal(ngx_http_request_t *r, ngx_str_t *url)
{
    u_char                     *p;
    ngx_str_t                   name, scheme;
    ngx_http_variable_value_t  *host;

    ngx_str_set(&name, "monetize_host");

    host = ngx_http_get_variable(r, &name, ngx_hash_key(name.data, name.len));
    if (host == NULL || host->not_found) {
        return NGX_ERROR;
    }

    ngx_str_set(&scheme, "http://");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    }
#endif

    url->data = ngx_pnalloc(r->pool, scheme.len + host->len
                                     + sizeof("/portal/") - 1);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, scheme.data, scheme.len);
    p = ngx_cpymem(p, host->data, host->len);
    p = ngx_cpymem(p, "/portal/", sizeof("/portal/") - 1);
    url->len = p - url->data;

    return NGX_OK;
}

static void
ngx_http_monetize_billing_stripe_done(ngx_http_monetize_stripe_call_t *sc)
{
    ngx_http_request_t           *r;
    ngx_http_monetize_api_ctx_t  *ctx;

    r = sc->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    ngx_http_monetize_api_finish(r,
        ngx_http_monetize_billing_answer(r, ctx->data, sc));
}


/*
 * Stripe's answer as the client's: 201 with the URL to send the customer
 * to; Stripe unreachable (after the client's retries): 503; Stripe
 * refusing what we sent: 502 upstream_error (the operator's prices or keys
 * are wrong, and the log says how), except the same Idempotency-Key with
 * other parameters, which is the client's 409.
 */

static ngx_int_t
ngx_http_monetize_billing_answer(ngx_http_request_t *r,
    ngx_http_monetize_billing_t *b, ngx_http_monetize_stripe_call_t *sc)
{
    json_t      *url, *id, *type;
    const char  *what;

    what = (b->kind == NGX_HTTP_MONETIZE_BILLING_PORTAL)
           ? "portal session" : "checkout session";

    if (sc->result == NGX_HTTP_MONETIZE_STRIPE_UNAVAILABLE) {
        return ngx_http_monetize_api_unavailable(r, "stripe");
    }

    if (sc->result == NGX_HTTP_MONETIZE_STRIPE_REFUSED) {
        type = json_object_get(json_object_get(sc->json, "error"), "type");

        if (json_is_string(type)
            && ngx_strcmp(json_string_value(type), "idempotency_error") == 0)
        {
            return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                       "idempotency_conflict",
                       "this Idempotency-Key was used for another request");
        }

        return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                            "upstream_error",
                                            "Stripe refused the %s (HTTP "
                                            "%u); the operator will find "
                                            "why in the error log", what,
                                            (unsigned) sc->status);
    }

    url = json_object_get(sc->json, "url");
    id = json_object_get(sc->json, "id");

    if (!json_is_string(url) || !json_is_string(id)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: Stripe answered a %s without \"id\" and "
                      "\"url\"", what);

        return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                            "upstream_error",
                                            "Stripe's answer was not "
                                            "understood; the operator will "
                                            "find why in the error log");
    }

    if (b->kind == NGX_HTTP_MONETIZE_BILLING_PORTAL) {
        return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED,
                   json_pack("{s:O}", "portal_url", url));
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED,
               json_pack("{s:O,s:O}", "checkout_url", url, "session_id", id));
}


/*
 * monetize_billing_return_url URL: where Stripe sends the customer back
 * from a checkout or the billing portal.
 */

char *
ngx_http_monetize_billing_return_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    u_char     *p, *last;
    ngx_str_t  *value;

    if (mcf->billing_return_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    last = value[1].data + value[1].len;

    for (p = value[1].data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '#') {
            break;
        }
    }

    if (p != last
        || !((value[1].len > 7
              && ngx_strncmp(value[1].data, "http://", 7) == 0)
             || (value[1].len > 8
                 && ngx_strncmp(value[1].data, "https://", 8) == 0)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_billing_return_url: invalid URL \"%V\", "
                           "give http(s)://host[:port][/path] without "
                           "spaces or \"#\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->billing_return_url = value[1];

    return NGX_CONF_OK;
}


/*
 * At the end of the http block: with Stripe, the return URL is
 * monetize_billing_return_url, else <monetize_public_url>/portal/, else
 * (empty) the portal of the server the client called.
 */

char *
ngx_http_monetize_billing_init_conf(ngx_conf_t *cf,
    ngx_http_monetize_main_conf_t *mcf)
{
    u_char  *p;

    if (mcf->stripe == NULL || mcf->billing_return_url.data) {
        return NGX_CONF_OK;
    }

    if (mcf->public_url.data == NULL) {
        return NGX_CONF_OK;     /* the request's own, see billing_url */
    }

    p = ngx_pnalloc(cf->pool, mcf->public_url.len + sizeof("/portal/") - 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->billing_return_url.data = p;
    p = ngx_cpymem(p, mcf->public_url.data, mcf->public_url.len);
    p = ngx_cpymem(p, "/portal/", sizeof("/portal/") - 1);
    mcf->billing_return_url.len = p - mcf->billing_return_url.data;

    return NGX_CONF_OK;
}
