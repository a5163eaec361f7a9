
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_download.h"
#include "ngx_http_monetize_validate.h"


/*
 * GET /downloads: the products the caller's plan includes now.
 * POST /downloads/token {"product"}: a download token for one of them
 * (gate/download.c checks it; core/download_token.c makes it), and the URL
 * to fetch it at: monetize_download_url, the product, ?token=.
 */


typedef struct {
    ngx_str_t                        product;
} ngx_http_monetize_downloads_t;


static ngx_int_t ngx_http_monetize_downloads_list_result(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_download_token_result(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_download_send_token(ngx_http_request_t *r,
    ngx_str_t *user_id, ngx_str_t *product);


static const char  ngx_http_monetize_downloads_list_sql[] =
    "SELECT id, name FROM monetize_downloadable($1)";

static const char  ngx_http_monetize_download_product_sql[] =
    "SELECT id, included FROM monetize_download_product($1, $2)";


ngx_int_t
ngx_http_monetize_downloads_list_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_api_query(r, ngx_http_monetize_downloads_list_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_downloads_list_result);
}


static ngx_int_t
ngx_http_monetize_downloads_list_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int      row, n;
    json_t  *products, *product;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    products = json_array();
    if (products == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = PQntuples(q->result);

    for (row = 0; row < n; row++) {
        product = json_pack("{s:s,s:s}",
                            "id", PQgetvalue(q->result, row, 0),
                            "name", PQgetvalue(q->result, row, 1));

        if (json_array_append_new(products, product) != 0) {
            json_decref(products);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
                                       json_pack("{s:o}", "products",
                                                 products));
}


/* POST /downloads/token {"product"} */

ngx_int_t
ngx_http_monetize_download_token_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                         *fields;
    ngx_int_t                       rc;
    ngx_str_t                       params[2];
    ngx_http_monetize_downloads_t  *d;

    d = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_downloads_t));
    fields = json_object();

    if (d == NULL || fields == NULL) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = d;

    rc = ngx_http_monetize_field_ascii(ctx->body, fields, "product",
                                       NGX_HTTP_MONETIZE_PRODUCT_MAX,
                                       &d->product);

    if (rc == NGX_OK && d->product.data == NULL) {
        rc = ngx_http_monetize_field_invalid(fields, "product",
                                             "is required");
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->caller.user_id;
    params[1] = d->product;

    return ngx_http_monetize_api_query(r,
                                       ngx_http_monetize_download_product_sql,
                                       params, 2,
                                       ngx_http_monetize_download_token_result);
}


static ngx_int_t
ngx_http_monetize_download_token_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t                         *fields;
    ngx_str_t                       included;
    ngx_http_monetize_downloads_t  *d;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    d = ctx->data;

    if (PQntuples(q->result) != 1) {
        fields = json_pack("{s:s}", "product", "no such product");
        if (fields == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_invalid(r, fields);
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 1, &included) != NGX_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (included.data[0] != 't') {
        return ngx_http_monetize_send_error(r, NGX_HTTP_FORBIDDEN,
                                            "subscription_required",
                                            "the plan of this account does "
                                            "not include \"%.*s\"",
                                            (int) d->product.len,
                                            (char *) d->product.data);
    }

    return ngx_http_monetize_download_send_token(r, &ctx->caller.user_id,
                                                 &d->product);
}


static ngx_int_t
ngx_http_monetize_download_send_token(ngx_http_request_t *r,
    ngx_str_t *user_id, ngx_str_t *product)
{
    u_char                                  *p;
    time_t                                   expires;
    ngx_tm_t                                 tm;
    ngx_str_t                                token, base, url;
    u_char                                   at[sizeof("2026-11-27T16:00:00Z")];
    ngx_http_monetize_main_conf_t           *mcf;
    ngx_http_monetize_download_conf_t       *dmcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    dmcf = mcf->download;

    if (!dmcf->key_set) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    expires = ngx_time() + dmcf->ttl;

    if (ngx_http_monetize_download_token_make(r->pool, dmcf->key, user_id,
                                              product, expires, &token)
        != NGX_OK
        || ngx_http_complex_value(r, dmcf->url, &base) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    url.data = ngx_pnalloc(r->pool, base.len + product->len
                                    + sizeof("?token=") - 1 + token.len);
    if (url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a product id is letters, digits, ".", "_" and "-" (sql/022) */

    p = ngx_cpymem(url.data, base.data, base.len);
    p = ngx_cpymem(p, product->data, product->len);
    p = ngx_cpymem(p, "?token=", sizeof("?token=") - 1);
    p = ngx_cpymem(p, token.data, token.len);
    url.len = p - url.data;

    ngx_gmtime(expires, &tm);
    ngx_sprintf(at, "%4d-%02d-%02dT%02d:%02d:%02dZ%Z",
                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED,
               json_pack("{s:s%,s:s%,s:s,s:s%}",
                         "token", (char *) token.data, token.len,
                         "url", (char *) url.data, url.len,
                         "expires_at", (char *) at,
                         "product", (char *) product->data, product->len));
}
