
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_json.h"


/*
 * Every answer of the API and the gate is JSON, and every error has the
 * contract's shape: {"error": {"code": "...", "message": "...", ...}}.
 */


#define NGX_HTTP_MONETIZE_MESSAGE_LEN  256


static json_t *ngx_http_monetize_error_vbody(const char *code,
    const char *fmt, va_list args);
static json_t *ngx_http_monetize_json_time(time_t t);
static void ngx_http_monetize_json_cleanup(void *data);


/*
 * One wording of each mistake with a key, for the API and the gate alike.
 * A 401 says how to authenticate (RFC 6750): "Bearer" alone when no
 * credential came, with error="invalid_token" when one came and is no good.
 * The reasons of a malformed or ambiguous credential are those that
 * ngx_http_monetize_credential() gives.
 */

ngx_http_monetize_key_error_t  ngx_http_monetize_key_errors[] = {

    { NGX_HTTP_UNAUTHORIZED, "missing_credentials", NULL,
      ngx_string("Bearer") },

    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key", NULL,
      ngx_string("Bearer error=\"invalid_token\"") },

    { NGX_HTTP_BAD_REQUEST, "invalid_request", NULL,
      ngx_string("Bearer error=\"invalid_request\"") },

    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
      "this is not an API key of this service",
      ngx_string("Bearer error=\"invalid_token\"") },

    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key", "no such API key",
      ngx_string("Bearer error=\"invalid_token\"") },

    { NGX_HTTP_FORBIDDEN, "key_revoked", "this API key was revoked",
      ngx_null_string },

    { NGX_HTTP_FORBIDDEN, "key_expired", "this API key has expired",
      ngx_null_string },

    { NGX_HTTP_FORBIDDEN, "account_suspended", "this account is suspended",
      ngx_null_string },

    { NGX_HTTP_UNAUTHORIZED, "invalid_token",
      "the session token is not valid",
      ngx_string("Bearer error=\"invalid_token\"") },

    { NGX_HTTP_UNAUTHORIZED, "token_expired",
      "the session token has expired; refresh it",
      ngx_string("Bearer error=\"invalid_token\", "
                 "error_description=\"the token expired\"") },

    { NGX_HTTP_FORBIDDEN, "email_not_verified",
      "verify the email address of this account first",
      ngx_null_string }
};


/*
 * The body as a buffer that ends the response, with the headers that say it
 * is JSON; the body is released. NULL on failure.
 */

ngx_buf_t *
ngx_http_monetize_json_buf(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body)
{
    size_t      len;
    ngx_buf_t  *b;
    ngx_str_t   no_store = ngx_string("no-store");

    if (body == NULL) {
        return NULL;
    }

    len = json_dumpb(body, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        json_decref(body);
        return NULL;
    }

    b->last += json_dumpb(body, (char *) b->pos, len, JSON_COMPACT);
    *b->last++ = '\n';
    json_decref(body);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (status == NGX_HTTP_MONETIZE_UNPROCESSABLE) {
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Entity");
    }

    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* API answers carry keys and balances: never cached on the way */
    if (ngx_http_monetize_set_header(r, "Cache-Control", &no_store)
        != NGX_OK)
    {
        return NULL;
    }

    return b;
}


/* Sends the body and releases it; returns what the handler should return. */

ngx_int_t
ngx_http_monetize_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body)
{
    ngx_buf_t    *b;
    ngx_int_t     rc;
    ngx_chain_t   out;

    b = ngx_http_monetize_json_buf(r, status, body);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


json_t *
ngx_http_monetize_error_body(const char *code, const char *fmt, ...)
{
    json_t   *body;
    va_list   args;

    va_start(args, fmt);
    body = ngx_http_monetize_error_vbody(code, fmt, args);
    va_end(args);

    return body;
}


ngx_int_t
ngx_http_monetize_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    json_t   *body;
    va_list   args;

    va_start(args, fmt);
    body = ngx_http_monetize_error_vbody(code, fmt, args);
    va_end(args);

    return ngx_http_monetize_send_json(r, status, body);
}


static json_t *
ngx_http_monetize_error_vbody(const char *code, const char *fmt,
    va_list args)
{
    char  message[NGX_HTTP_MONETIZE_MESSAGE_LEN];

    vsnprintf(message, sizeof(message), fmt, args);

    return json_pack("{s:{s:s,s:s}}", "error", "code", code,
                     "message", message);
}


/* The words of a mistake with a key: the table's, else the reason given. */

json_t *
ngx_http_monetize_key_error_body(ngx_uint_t err, const char *why)
{
    ngx_http_monetize_key_error_t  *e;

    e = &ngx_http_monetize_key_errors[err];

    return ngx_http_monetize_error_body(e->code, "%s",
                                        e->message ? e->message : why);
}


ngx_int_t
ngx_http_monetize_key_error_headers(ngx_http_request_t *r, ngx_uint_t err)
{
    ngx_table_elt_t                *h;
    ngx_http_monetize_key_error_t  *e;

    e = &ngx_http_monetize_key_errors[err];

    if (e->authenticate.len == 0 || r->headers_out.www_authenticate) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value = e->authenticate;

    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_send_key_error(ngx_http_request_t *r, ngx_uint_t err,
    const char *why)
{
    if (ngx_http_monetize_key_error_headers(r, err) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r,
                                       ngx_http_monetize_key_errors[err].status,
                                       ngx_http_monetize_key_error_body(err,
                                                                        why));
}


/*
 * 402: what the call costs, what is left, and where to buy more; when the
 * plan's calls of the period are spent too, when they renew (else 0).
 */

json_t *
ngx_http_monetize_insufficient_body(ngx_http_request_t *r, int64_t cost,
    int64_t balance, time_t quota_resets_at)
{
    json_t                         *body, *error;
    ngx_str_t                       url;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (ngx_http_complex_value(r, mcf->top_up_url, &url) != NGX_OK) {
        return NULL;
    }

    if (quota_resets_at) {
        body = ngx_http_monetize_error_body("insufficient_credits",
                                            "the plan's calls of this period "
                                            "are spent, and this call costs "
                                            "%lld credits; the balance is "
                                            "%lld",
                                            (long long) cost,
                                            (long long) balance);
    } else {
        body = ngx_http_monetize_error_body("insufficient_credits",
                                            "this call costs %lld credits; "
                                            "the balance is %lld",
                                            (long long) cost,
                                            (long long) balance);
    }

    error = json_object_get(body, "error");

    if (body == NULL
        || json_object_set_new(error, "balance", json_integer(balance))
        || json_object_set_new(error, "top_up_url",
                               json_stringn((char *) url.data, url.len))
        || (quota_resets_at
            && json_object_set_new(error, "quota_resets_at",
                                   ngx_http_monetize_json_time(
                                                       quota_resets_at))))
    {
        json_decref(body);
        return NULL;
    }

    return body;
}


ngx_int_t
ngx_http_monetize_send_insufficient(ngx_http_request_t *r, int64_t cost,
    int64_t balance)
{
    json_t  *body;

    body = ngx_http_monetize_insufficient_body(r, cost, balance, 0);

    return ngx_http_monetize_send_json(r, NGX_HTTP_MONETIZE_PAYMENT_REQUIRED,
                                       body);
}


/* 429 rate_limited: when to come back (the RateLimit-* are the caller's) */

ngx_int_t
ngx_http_monetize_rate_limited_headers(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim)
{
    return ngx_http_monetize_set_number(r, "Retry-After",
                                        ngx_max((lim->retry_after + 999)
                                                / 1000, 1));
}


json_t *
ngx_http_monetize_rate_limited_body(ngx_http_monetize_limit_t *lim)
{
    return ngx_http_monetize_error_body("rate_limited",
                                        "too many calls; try again in %lu "
                                        "ms", (unsigned long) lim->retry_after);
}


ngx_int_t
ngx_http_monetize_send_rate_limited(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim)
{
    if (ngx_http_monetize_rate_limited_headers(r, lim) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                    ngx_http_monetize_rate_limited_body(lim));
}


/*
 * 429 quota_exceeded, for calls that cost nothing and are counted against
 * the plan's calls only: no credit lets them through, the period's end
 * does (Retry-After, and quota_resets_at in the body).
 */

ngx_int_t
ngx_http_monetize_quota_exceeded_headers(ngx_http_request_t *r,
    time_t period_end)
{
    return ngx_http_monetize_set_number(r, "Retry-After",
                                        ngx_max(period_end - ngx_time(), 1));
}


json_t *
ngx_http_monetize_quota_exceeded_body(time_t period_end)
{
    json_t  *body;

    body = ngx_http_monetize_error_body("quota_exceeded",
                                        "the plan's calls of this period are "
                                        "spent");

    if (body == NULL
        || json_object_set_new(json_object_get(body, "error"),
                               "quota_resets_at",
                               ngx_http_monetize_json_time(period_end)))
    {
        json_decref(body);
        return NULL;
    }

    return body;
}


/* RateLimit-Limit, -Remaining, -Reset (seconds, rounded up) */

ngx_int_t
ngx_http_monetize_rate_limit_headers(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim)
{
    if (ngx_http_monetize_set_number(r, "RateLimit-Limit", lim->limit)
        != NGX_OK
        || ngx_http_monetize_set_number(r, "RateLimit-Remaining",
                                        lim->remaining)
           != NGX_OK
        || ngx_http_monetize_set_number(r, "RateLimit-Reset",
                                        (lim->reset + 999) / 1000)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_set_number(ngx_http_request_t *r, const char *name,
    int64_t n)
{
    u_char     *p;
    ngx_str_t   value;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%L", n) - p;

    return ngx_http_monetize_set_header(r, name, &value);
}


ngx_int_t
ngx_http_monetize_set_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* Parses a request body; the document lives as long as the request. */

json_t *
ngx_http_monetize_json_parse(ngx_http_request_t *r, ngx_str_t *text,
    json_error_t *error)
{
    json_t              *json;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    json = json_loadb((const char *) text->data, text->len,
                      JSON_REJECT_DUPLICATES,
                      error);
    if (json == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_monetize_json_cleanup;
    cln->data = json;

    return json;
}


json_t *
ngx_http_monetize_json_str(ngx_str_t *s)
{
    return json_stringn((const char *) s->data, s->len);
}


/* ISO 8601, UTC, to the second: as every time of the contract */

static json_t *
ngx_http_monetize_json_time(time_t t)
{
    u_char    buf[sizeof("2026-11-21T23:15:04Z")];
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    (void) ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return json_stringn((char *) buf, sizeof(buf) - 1);
}


static void
ngx_http_monetize_json_cleanup(void *data)
{
    json_decref(data);
}
