
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"


/*
 * Around a query: array parameters in, values and the meaning of an error
 * out.
 */


ngx_int_t
ngx_http_monetize_pg_get_str(ngx_http_monetize_pg_query_t *q, int row,
    int col, ngx_str_t *value)
{
    if (q->result == NULL
        || row >= PQntuples(q->result) || col >= PQnfields(q->result)
        || PQgetisnull(q->result, row, col))
    {
        ngx_str_null(value);
        return NGX_DECLINED;
    }

    value->data = (u_char *) PQgetvalue(q->result, row, col);
    value->len = PQgetlength(q->result, row, col);

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_pg_get_int(ngx_http_monetize_pg_query_t *q, int row,
    int col, int64_t *value)
{
    u_char     *p, *last;
    int64_t     n;
    ngx_str_t   s;
    ngx_uint_t  negative;

    if (ngx_http_monetize_pg_get_str(q, row, col, &s) != NGX_OK
        || s.len == 0)
    {
        return NGX_DECLINED;
    }

    p = s.data;
    last = p + s.len;
    negative = (*p == '-');

    if (negative) {
        p++;
    }

    if (p == last) {
        return NGX_ERROR;
    }

    for (n = 0; p < last; p++) {
        if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10) {
            return NGX_ERROR;
        }

        n = n * 10 + (*p - '0');
    }

    *value = negative ? -n : n;

    return NGX_OK;
}


const char *
ngx_http_monetize_pg_sqlstate(ngx_http_monetize_pg_query_t *q)
{
    const char  *state;

    if (q->result == NULL) {
        return "";
    }

    state = PQresultErrorField(q->result, PG_DIAG_SQLSTATE);

    return state ? state : "";
}


/*
 * An error that says nothing about the statement itself: the server was
 * shutting down, out of resources, timed it out, or chose it as a deadlock
 * or serialization victim. It was rolled back; trying later may succeed.
 */

ngx_uint_t
ngx_http_monetize_pg_transient(ngx_http_monetize_pg_query_t *q)
{
    const char  *state;

    if (q->status != NGX_HTTP_MONETIZE_PG_ERROR) {
        return q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE;
    }

    state = ngx_http_monetize_pg_sqlstate(q);

    return ngx_strncmp(state, "08", 2) == 0      /* connection exception */
           || ngx_strncmp(state, "53", 2) == 0   /* insufficient resources */
           || ngx_strncmp(state, "57", 2) == 0   /* operator intervention,
                                                    statement timeout */
           || ngx_strcmp(state, "40001") == 0    /* serialization failure */
           || ngx_strcmp(state, "40P01") == 0;   /* deadlock detected */
}


const char *
ngx_http_monetize_pg_constraint(ngx_http_monetize_pg_query_t *q)
{
    const char  *name;

    if (q->result == NULL) {
        return "";
    }

    name = PQresultErrorField(q->result, PG_DIAG_CONSTRAINT_NAME);

    return name ? name : "";
}


void
ngx_http_monetize_pg_log_refused(ngx_log_t *log,
    ngx_http_monetize_pg_query_t *q)
{
    size_t  len;
    u_char  msg[512];

    len = ngx_http_monetize_pg_one_line(q->result
                                        ? PQresultErrorMessage(q->result)
                                        : "no answer", msg, sizeof(msg));

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "monetize: postgres \"%V\" refused \"%s\": %*s",
                  ngx_http_monetize_pg_name(q->pool), q->sql, len, msg);
}


/* libpq's messages span lines; the error log wants one. */

size_t
ngx_http_monetize_pg_one_line(const char *text, u_char *buf, size_t size)
{
    u_char  *p, *last;

    last = ngx_cpystrn(buf, (u_char *) text, size);

    for (p = buf; p < last; p++) {
        if (*p == '\n' || *p == '\t') {
            *p = ' ';
        }
    }

    while (last > buf && last[-1] == ' ') {
        last--;
    }

    return last - buf;
}


/*
 * A PostgreSQL array literal for a parameter; quoted elements escape '"'
 * and '\', so any text can be an element.
 */

u_char *
ngx_http_monetize_pg_array(ngx_pool_t *pool, ngx_str_t *values,
    ngx_uint_t n, ngx_uint_t quote)
{
    u_char      *p, *c, *s, *last;
    size_t       len;
    ngx_uint_t   i;

    len = sizeof("{}");

    for (i = 0; i < n; i++) {
        len += values[i].len * (quote ? 2 : 1) + sizeof("\"\",");
    }

    s = ngx_pnalloc(pool, len);
    if (s == NULL) {
        return NULL;
    }

    p = s;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        if (!quote) {
            p = ngx_cpymem(p, values[i].data, values[i].len);
            continue;
        }

        *p++ = '"';

        last = values[i].data + values[i].len;

        for (c = values[i].data; c < last; c++) {
            if (*c == '"' || *c == '\\') {
                *p++ = '\\';
            }

            *p++ = *c;
        }

        *p++ = '"';
    }

    *p++ = '}';
    *p = '\0';

    return s;
}
