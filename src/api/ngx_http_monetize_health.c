
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"


/*
 * GET /health: asks PostgreSQL and Redis at once, and answers once both
 * have answered; for a load balancer, "degraded" (200) when only Redis is
 * down and the gate can serve without it.
 */

typedef struct {
    ngx_uint_t                         pending;
    unsigned                           postgres_down:1;
    unsigned                           redis:1;  /* monetize_redis is set */
    unsigned                           redis_down:1;
} ngx_http_monetize_health_t;


static ngx_int_t ngx_http_monetize_health_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_health_redis(void *data, ngx_int_t rc);
static ngx_int_t ngx_http_monetize_health_answer(ngx_http_request_t *r,
    ngx_http_monetize_health_t *h);


ngx_int_t
ngx_http_monetize_health_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_http_monetize_health_t     *h;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    h = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_health_t));
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = h;

    /* Redis first: on failure nothing is in flight yet */

    if (mcf->redis) {
        h->redis = 1;

        rc = ngx_http_monetize_redis_ping(mcf->redis, r->pool,
                                          ngx_http_monetize_health_redis, r);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_AGAIN) {
            h->pending++;

        } else {
            h->redis_down = 1;
        }
    }

    rc = ngx_http_monetize_api_query(r, "SELECT 1", NULL, 0,
                                     ngx_http_monetize_health_result);

    if (rc == NGX_DONE) {
        h->pending++;
    }

    return rc;
}


static ngx_int_t
ngx_http_monetize_health_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_health_t  *h;

    h = ctx->data;

    h->postgres_down = (q->status != NGX_HTTP_MONETIZE_PG_OK);

    if (--h->pending) {
        return NGX_DONE;
    }

    return ngx_http_monetize_health_answer(r, h);
}


static void
ngx_http_monetize_health_redis(void *data, ngx_int_t rc)
{
    ngx_http_request_t *r = data;

    ngx_http_monetize_api_ctx_t  *ctx;
    ngx_http_monetize_health_t   *h;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    h = ctx->data;

    h->redis_down = (rc != NGX_OK);

    if (--h->pending) {
        return;
    }

    ngx_http_monetize_api_finish(r, ngx_http_monetize_health_answer(r, h));
}


static ngx_int_t
ngx_http_monetize_health_answer(ngx_http_request_t *r,
    ngx_http_monetize_health_t *h)
{
    json_t                         *body;
    const char                     *what;
    ngx_str_t                       retry = ngx_string("1");
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    /*
     * Without Redis the gate limits with the node's own limiter, and the
     * node serves: "degraded", not down, unless a location refuses calls
     * without Redis (monetize_fail_mode closed).
     */

    if (!h->postgres_down && (!h->redis_down || !mcf->redis_required)) {
        body = json_pack("{s:s,s:s}", "status",
                         h->redis_down ? "degraded" : "ok", "postgres", "ok");

        if (body != NULL && h->redis
            && json_object_set_new(body, "redis",
                   json_string(h->redis_down ? "down" : "ok")))
        {
            json_decref(body);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_json(r, NGX_HTTP_OK, body);
    }

    what = !h->redis_down ? "postgres does not answer"
           : !h->postgres_down ? "redis does not answer"
           : "postgres and redis do not answer";

    body = ngx_http_monetize_error_body("backend_unavailable", "%s", what);
    if (body == NULL
        || json_object_set_new(body, "status", json_string("unavailable"))
        || json_object_set_new(body, "postgres",
                   json_string(h->postgres_down ? "down" : "ok"))
        || (h->redis
            && json_object_set_new(body, "redis",
                   json_string(h->redis_down ? "down" : "ok")))
        || ngx_http_monetize_set_header(r, "Retry-After", &retry) != NGX_OK)
    {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, body);
}
