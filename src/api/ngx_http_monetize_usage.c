
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"


/*
 * GET /usage?from=YYYY-MM-DD&to=YYYY-MM-DD&granularity=day: the caller's
 * calls and credits per day (UTC), summed over its keys and locations, from
 * the usage table that the gate fills (and monetize_use_credit(), for the
 * charges of /use_credit).
 */


#define NGX_HTTP_MONETIZE_USAGE_DEFAULT_DAYS  30
#define NGX_HTTP_MONETIZE_USAGE_MAX_DAYS      366


static ngx_int_t ngx_http_monetize_usage_date(ngx_http_request_t *r,
    json_t *fields, const char *name, ngx_str_t *value, int64_t *day);
static ngx_int_t ngx_http_monetize_usage_granularity(ngx_http_request_t *r,
    json_t *fields);
static ngx_int_t ngx_http_monetize_usage_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static int64_t ngx_http_monetize_day_number(ngx_int_t year, ngx_int_t month,
    ngx_int_t mday);


/* $2 is the last day; $3 says how many days before it the range starts */
static const char  ngx_http_monetize_usage_sql[] =
    "SELECT to_char(day, 'YYYY-MM-DD'), sum(calls)::bigint,"
    "       sum(credits)::bigint"
    "  FROM usage"
    " WHERE user_id = $1"
    "   AND day BETWEEN $2::date - $3::integer AND $2::date"
    " GROUP BY day"
    " HAVING sum(calls) <> 0 OR sum(credits) <> 0"
    " ORDER BY day";


ngx_int_t
ngx_http_monetize_usage_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char     *p;
    json_t     *fields;
    int64_t     from, to;
    ngx_tm_t    tm;
    ngx_int_t   from_rc, to_rc, granularity_rc;
    ngx_str_t   from_text, params[3];

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    to_rc = ngx_http_monetize_usage_date(r, fields, "to", &params[1], &to);
    from_rc = ngx_http_monetize_usage_date(r, fields, "from", &from_text,
                                           &from);
    granularity_rc = ngx_http_monetize_usage_granularity(r, fields);

    if (to_rc == NGX_DONE) {
        p = ngx_pnalloc(r->pool, sizeof("YYYY-MM-DD") - 1);
        if (p == NULL) {
            json_decref(fields);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_gmtime(ngx_time(), &tm);

        params[1].data = p;
        params[1].len = ngx_sprintf(p, "%04d-%02d-%02d", tm.ngx_tm_year,
                                    tm.ngx_tm_mon, tm.ngx_tm_mday)
                        - p;

        to = ngx_http_monetize_day_number(tm.ngx_tm_year, tm.ngx_tm_mon,
                                          tm.ngx_tm_mday);
        to_rc = NGX_OK;
    }

    if (to_rc == NGX_OK && from_rc == NGX_DONE) {
        from = to - (NGX_HTTP_MONETIZE_USAGE_DEFAULT_DAYS - 1);
        from_rc = NGX_OK;

    } else if (to_rc == NGX_OK && from_rc == NGX_OK) {

        if (from > to) {
            from_rc = ngx_http_monetize_field_invalid(fields, "from",
                          "must not be after \"to\" (by default, today "
                          "in UTC)");

        } else if (to - from >= NGX_HTTP_MONETIZE_USAGE_MAX_DAYS) {
            from_rc = ngx_http_monetize_field_invalid(fields, "from",
                          "the range may span at most %d days",
                          NGX_HTTP_MONETIZE_USAGE_MAX_DAYS);
        }
    }

    if (from_rc == NGX_ERROR || to_rc == NGX_ERROR
        || granularity_rc == NGX_ERROR)
    {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (from_rc == NGX_DECLINED || to_rc == NGX_DECLINED
        || granularity_rc == NGX_DECLINED)
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
    params[2].len = ngx_sprintf(p, "%L", to - from) - p;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_usage_sql,
                                       params, 3,
                                       ngx_http_monetize_usage_result);
}


/*
 * A date argument YYYY-MM-DD: its text and day number. NGX_OK, NGX_DONE
 * when absent, NGX_DECLINED when not a date (why is in fields), NGX_ERROR.
 * The value is taken as it came: a date needs no escaping.
 */

static ngx_int_t
ngx_http_monetize_usage_date(ngx_http_request_t *r, json_t *fields,
    const char *name, ngx_str_t *value, int64_t *day)
{
    u_char     *p;
    ngx_int_t   year, month, mday, days;
    ngx_uint_t  i;

    static ngx_int_t  days_in_month[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), value) != NGX_OK)
    {
        return NGX_DONE;
    }

    p = value->data;

    if (value->len != sizeof("YYYY-MM-DD") - 1 || p[4] != '-' || p[7] != '-')
    {
        goto invalid;
    }

    for (i = 0; i < value->len; i++) {
        if (i != 4 && i != 7 && (p[i] < '0' || p[i] > '9')) {
            goto invalid;
        }
    }

    year = ngx_atoi(p, 4);
    month = ngx_atoi(p + 5, 2);
    mday = ngx_atoi(p + 8, 2);

    if (year < 1 || month < 1 || month > 12 || mday < 1) {
        goto invalid;
    }

    days = days_in_month[month - 1];

    if (month == 2
        && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
    {
        days = 29;
    }

    if (mday > days) {
        goto invalid;
    }

    *day = ngx_http_monetize_day_number(year, month, mday);

    return NGX_OK;

invalid:

    return ngx_http_monetize_field_invalid(fields, name,
                                           "must be a date as YYYY-MM-DD");
}


static ngx_int_t
ngx_http_monetize_usage_granularity(ngx_http_request_t *r, json_t *fields)
{
    ngx_str_t  value;

    if (ngx_http_arg(r, (u_char *) "granularity", sizeof("granularity") - 1,
                     &value)
        != NGX_OK)
    {
        return NGX_OK;
    }

    if (value.len == sizeof("day") - 1
        && ngx_strncmp(value.data, "day", sizeof("day") - 1) == 0)
    {
        return NGX_OK;
    }

    return ngx_http_monetize_field_invalid(fields, "granularity",
                                           "must be \"day\"");
}


static ngx_int_t
ngx_http_monetize_usage_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int         row, n;
    json_t     *usage, *entry;
    int64_t     calls, credits;
    ngx_str_t   date;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    usage = json_array();
    if (usage == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = PQntuples(q->result);

    for (row = 0; row < n; row++) {

        if (ngx_http_monetize_pg_get_str(q, row, 0, &date) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, row, 1, &calls) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, row, 2, &credits) != NGX_OK)
        {
            json_decref(usage);
            return ngx_http_monetize_api_backend_failed(r, q);
        }

        entry = json_pack("{s:s%,s:I,s:I}",
                          "date", date.data, date.len,
                          "calls", (json_int_t) calls,
                          "credits", (json_int_t) credits);

        if (json_array_append_new(usage, entry) != 0) {
            json_decref(usage);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
                                       json_pack("{s:o}", "usage", usage));
}


/* Days since 1970-01-01 of a date of the proleptic Gregorian calendar. */

static int64_t
ngx_http_monetize_day_number(ngx_int_t year, ngx_int_t month, ngx_int_t mday)
{
    int64_t  era, yoe, doy, doe;

    /* years that start on March 1st put the leap day last */

    if (month <= 2) {
        year--;
    }

    era = (year >= 0 ? year : year - 399) / 400;
    yoe = year - era * 400;
    doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + mday - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}
