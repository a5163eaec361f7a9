
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"


/*
 * The operators' reports, for accounts with is_admin, each one SQL
 * function of sql/017 that answers the JSON: GET /admin/webhook_events,
 * GET /admin/revenue and GET /admin/top_accounts.
 */


#define NGX_HTTP_MONETIZE_REPORT_PAGE_MAX   100
#define NGX_HTTP_MONETIZE_REPORT_DAYS_MAX   366
#define NGX_HTTP_MONETIZE_EVENT_ID_MAX      255


static ngx_int_t ngx_http_monetize_report_number(ngx_http_request_t *r,
    json_t *fields, const char *name, const char *dflt, ngx_int_t max,
    ngx_str_t *value);
static ngx_int_t ngx_http_monetize_report_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_report_events_result(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_report_forbidden(ngx_http_request_t *r);


static const char  ngx_http_monetize_report_events_sql[] =
    "SELECT monetize_admin_webhook_events_json($1, $2, $3)";

static const char  ngx_http_monetize_report_revenue_sql[] =
    "SELECT monetize_admin_revenue_json()";

static const char  ngx_http_monetize_report_top_sql[] =
    "SELECT monetize_admin_top_accounts_json($1, $2)";


/* GET /admin/webhook_events?status=applied|pending&limit=&before=<id> */

ngx_int_t
ngx_http_monetize_admin_webhook_events_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char     *p, *last;
    json_t     *fields;
    ngx_int_t   rc;
    ngx_str_t   params[3];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_report_forbidden(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = NGX_OK;
    ngx_str_null(&params[0]);
    ngx_str_null(&params[2]);

    if (ngx_http_arg(r, (u_char *) "status", sizeof("status") - 1,
                     &params[0])
        == NGX_OK
        && params[0].len)
    {
        if (!((params[0].len == sizeof("applied") - 1
               && ngx_strncmp(params[0].data, "applied", params[0].len) == 0)
              || (params[0].len == sizeof("pending") - 1
                  && ngx_strncmp(params[0].data, "pending", params[0].len)
                     == 0)))
        {
            rc = ngx_http_monetize_field_invalid(fields, "status",
                                                 "must be applied or "
                                                 "pending");
        }

    } else {
        ngx_str_null(&params[0]);
    }

    if (rc != NGX_ERROR
        && ngx_http_monetize_report_number(r, fields, "limit", "20",
                                           NGX_HTTP_MONETIZE_REPORT_PAGE_MAX,
                                           &params[1])
           == NGX_ERROR)
    {
        rc = NGX_ERROR;
    }

    /* an event id as Stripe makes them: "evt_" and base62, never escaped */

    if (ngx_http_arg(r, (u_char *) "before", sizeof("before") - 1,
                     &params[2])
        == NGX_OK
        && params[2].len)
    {
        last = params[2].data + params[2].len;

        for (p = params[2].data; p < last; p++) {
            if (!(isalnum(*p) || *p == '_' || *p == '-' || *p == '.')) {
                break;
            }
        }

        if (rc != NGX_ERROR
            && (p < last
                || params[2].len > NGX_HTTP_MONETIZE_EVENT_ID_MAX))
        {
            rc = ngx_http_monetize_field_invalid(fields, "before",
                                                 "must be an event's id");
        }

    } else {
        ngx_str_null(&params[2]);
    }

    if (rc == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_object_size(fields)) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_report_events_sql,
                                       params, 3,
                                       ngx_http_monetize_report_events_result);
}


static ngx_int_t
ngx_http_monetize_report_events_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    if (q->status == NGX_HTTP_MONETIZE_PG_OK && PQntuples(q->result) == 1
        && PQgetisnull(q->result, 0, 0))
    {
        /* the page would start after an event there is no record of */
        return ngx_http_monetize_send_invalid(r,
                   json_pack("{s:s}", "before", "no such event"));
    }

    return ngx_http_monetize_api_send_pg_json(r, q, NGX_HTTP_OK);
}


/* GET /admin/revenue */

ngx_int_t
ngx_http_monetize_admin_revenue_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_report_forbidden(r);
    }

    return ngx_http_monetize_api_query(r,
                                       ngx_http_monetize_report_revenue_sql,
                                       NULL, 0,
                                       ngx_http_monetize_report_result);
}


/* GET /admin/top_accounts?days=N&limit=M */

ngx_int_t
ngx_http_monetize_admin_top_accounts_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t     *fields;
    ngx_str_t   params[2];

    if (!ctx->caller.is_admin) {
        return ngx_http_monetize_report_forbidden(r);
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_report_number(r, fields, "days", "30",
                                        NGX_HTTP_MONETIZE_REPORT_DAYS_MAX,
                                        &params[0])
        == NGX_ERROR
        || ngx_http_monetize_report_number(r, fields, "limit", "10",
                                         NGX_HTTP_MONETIZE_REPORT_PAGE_MAX,
                                         &params[1])
           == NGX_ERROR)
    {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_object_size(fields)) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_report_top_sql,
                                       params, 2,
                                       ngx_http_monetize_report_result);
}


static ngx_int_t
ngx_http_monetize_report_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    return ngx_http_monetize_api_send_pg_json(r, q, NGX_HTTP_OK);
}


/* a query argument from 1 to max, "dflt" when absent or empty */

static ngx_int_t
ngx_http_monetize_report_number(ngx_http_request_t *r, json_t *fields,
    const char *name, const char *dflt, ngx_int_t max, ngx_str_t *value)
{
    ngx_int_t  n;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), value) != NGX_OK
        || value->len == 0)
    {
        value->data = (u_char *) dflt;
        value->len = ngx_strlen(dflt);
        return NGX_OK;
    }

    n = ngx_atoi(value->data, value->len);

    if (n < 1 || n > max) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be a number from 1 to "
                                               "%ld", (long) max);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_report_forbidden(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                        "this endpoint is for operators "
                                        "(accounts with is_admin)");
}
