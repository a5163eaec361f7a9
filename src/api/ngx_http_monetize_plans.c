
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"


/*
 * GET /plans: the active plans and credit packs. PostgreSQL writes the JSON
 * in one query; each worker keeps the answer while it hears of changes
 * (its LISTEN connection is subscribed), and a change of the plans table
 * drops it (ngx_http_monetize_keystore.c counts them in plans_version). An
 * answer is kept only if no change was heard while it was asked for: one
 * read before a change committed must not outlive the change.
 */


typedef struct {
    ngx_str_t                      json;
    ngx_uint_t                     version;
} ngx_http_monetize_plans_cache_t;


static ngx_int_t ngx_http_monetize_plans_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_plans_send(ngx_http_request_t *r,
    ngx_str_t *json);


/* in sql/016_billing.sql; $1: whether Stripe is configured ("buyable") */
static const char  ngx_http_monetize_plans_sql[] =
    "SELECT monetize_plans_json($1)";


/* per worker: the answer, and the plans_version it was made at */
static ngx_http_monetize_plans_cache_t  ngx_http_monetize_plans_cache;


ngx_int_t
ngx_http_monetize_plans_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_str_t                         stripe;
    ngx_uint_t                       *version;
    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_plans_cache_t  *pc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    pc = &ngx_http_monetize_plans_cache;

    if (mcf->stripe) {
        ngx_str_set(&stripe, "true");

    } else {
        ngx_str_set(&stripe, "false");
    }

    if (pc->json.data && pc->version == mcf->plans_version
        && ngx_http_monetize_pg_listening(mcf->pg))
    {
        return ngx_http_monetize_plans_send(r, &pc->json);
    }

    version = ngx_palloc(r->pool, sizeof(ngx_uint_t));
    if (version == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *version = mcf->plans_version;
    ctx->data = version;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_plans_sql,
                                       &stripe, 1,
                                       ngx_http_monetize_plans_result);
}


static ngx_int_t
ngx_http_monetize_plans_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                         json;
    ngx_uint_t                       *version;
    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_plans_cache_t  *pc;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &json) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    pc = &ngx_http_monetize_plans_cache;
    version = ctx->data;

    /* a (re)subscription counts as a change: heard of, or missed, since */

    if (ngx_http_monetize_pg_listening(mcf->pg)
        && *version == mcf->plans_version)
    {
        ngx_free(pc->json.data);

        pc->json.data = ngx_alloc(json.len, r->connection->log);
        pc->json.len = json.len;
        pc->version = *version;

        if (pc->json.data) {
            ngx_memcpy(pc->json.data, json.data, json.len);
        }
    }

    return ngx_http_monetize_plans_send(r, &json);
}


static ngx_int_t
ngx_http_monetize_plans_send(ngx_http_request_t *r, ngx_str_t *json)
{
    json_t        *body;
    json_error_t   error;

    body = json_loadb((char *) json->data, json->len, 0, &error);

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK, body);
}
