
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"


/*
 * CORS for browser clients of the management API: "monetize_cors_origins
 * https://app.example.com ...;" names the origins whose pages may call it.
 * An origin matches exactly (scheme, host and port, case-insensitively),
 * never by pattern, and is echoed back, never "*": the answers may carry
 * credentials. A preflight from such an origin is answered here (204); an
 * actual call gets the headers and goes on; any other origin gets no CORS
 * headers at all, so the browser keeps the answer from the page. Vary:
 * Origin goes on every answer of a location with origins, so that a cache
 * never gives one origin's answer to another.
 */


#define NGX_HTTP_MONETIZE_CORS_MAX_AGE  "600"


static ngx_table_elt_t *ngx_http_monetize_cors_header(ngx_http_request_t *r,
    const char *name, size_t len);
static ngx_uint_t ngx_http_monetize_cors_is_origin(ngx_str_t *s);


static ngx_str_t  ngx_http_monetize_cors_methods =
    ngx_string("GET, POST, PATCH, PUT, DELETE");

/* what the API reads of a request beyond the CORS-safelisted headers */
static ngx_str_t  ngx_http_monetize_cors_allow_headers =
    ngx_string("Authorization, Content-Type, X-API-Key, X-Monetize-CSRF");

/* what a page may read of an answer beyond the CORS-safelisted headers */
static ngx_str_t  ngx_http_monetize_cors_expose_headers =
    ngx_string("Retry-After, WWW-Authenticate, RateLimit-Limit, "
               "RateLimit-Remaining, RateLimit-Reset");


/*
 * Returns NGX_DECLINED when the request goes on (with the headers its
 * origin gets), or the end of a preflight that was answered.
 */

ngx_int_t
ngx_http_monetize_cors(ngx_http_request_t *r)
{
    ngx_str_t                     *allowed, max_age, yes, vary;
    ngx_uint_t                     i;
    ngx_table_elt_t               *origin;
    ngx_http_monetize_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    if (lcf->cors_origins == NULL) {
        return NGX_DECLINED;
    }

    ngx_str_set(&vary, "Origin");

    if (ngx_http_monetize_set_header(r, "Vary", &vary) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    origin = ngx_http_monetize_cors_header(r, "Origin",
                                           sizeof("Origin") - 1);
    if (origin == NULL) {
        return NGX_DECLINED;
    }

    allowed = lcf->cors_origins->elts;

    for (i = 0; i < lcf->cors_origins->nelts; i++) {
        if (allowed[i].len == origin->value.len
            && ngx_strncasecmp(allowed[i].data, origin->value.data,
                               allowed[i].len)
               == 0)
        {
            break;
        }
    }

    if (i == lcf->cors_origins->nelts) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "monetize: CORS origin \"%V\" refused",
                       &origin->value);
        return NGX_DECLINED;
    }

    ngx_str_set(&yes, "true");

    if (ngx_http_monetize_set_header(r, "Access-Control-Allow-Origin",
                                     &origin->value)
        != NGX_OK
        || ngx_http_monetize_set_header(r,
                                        "Access-Control-Allow-Credentials",
                                        &yes)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method != NGX_HTTP_OPTIONS
        || ngx_http_monetize_cors_header(r, "Access-Control-Request-Method",
               sizeof("Access-Control-Request-Method") - 1)
           == NULL)
    {
        if (ngx_http_monetize_set_header(r, "Access-Control-Expose-Headers",
                                  &ngx_http_monetize_cors_expose_headers)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_DECLINED;
    }

    /* the preflight: what the page may send, for how long to trust it */

    ngx_str_set(&max_age, NGX_HTTP_MONETIZE_CORS_MAX_AGE);

    if (ngx_http_monetize_set_header(r, "Access-Control-Allow-Methods",
                                     &ngx_http_monetize_cors_methods)
        != NGX_OK
        || ngx_http_monetize_set_header(r, "Access-Control-Allow-Headers",
                                        &ngx_http_monetize_cors_allow_headers)
           != NGX_OK
        || ngx_http_monetize_set_header(r, "Access-Control-Max-Age",
                                        &max_age)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


static ngx_table_elt_t *
ngx_http_monetize_cors_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* monetize_cors_origins ORIGIN... | off */

char *
ngx_http_monetize_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_loc_conf_t *lcf = conf;

    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (lcf->cors_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        lcf->cors_origins = NULL;
        return NGX_CONF_OK;
    }

    lcf->cors_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                         sizeof(ngx_str_t));
    if (lcf->cors_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (!ngx_http_monetize_cors_is_origin(&value[i])) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_cors_origins: \"%V\" is not an "
                               "origin: give scheme://host[:port] (http or "
                               "https, no path, no \"*\"), or \"off\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        origin = ngx_array_push(lcf->cors_origins);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;
}


/* "http://" or "https://", a host (a name, IPv4, or [IPv6]), a port */

static ngx_uint_t
ngx_http_monetize_cors_is_origin(ngx_str_t *s)
{
    u_char      *p, *last, *host;
    ngx_uint_t   port, bracket;

    last = s->data + s->len;

    if (s->len > sizeof("https://") - 1
        && ngx_strncasecmp(s->data, (u_char *) "https://",
                           sizeof("https://") - 1) == 0)
    {
        p = s->data + sizeof("https://") - 1;

    } else if (s->len > sizeof("http://") - 1
               && ngx_strncasecmp(s->data, (u_char *) "http://",
                                  sizeof("http://") - 1) == 0)
    {
        p = s->data + sizeof("http://") - 1;

    } else {
        return 0;
    }

    host = p;
    bracket = (*p == '[');
    port = 0;

    for ( /* void */ ; p < last; p++) {

        if (bracket) {
            if (*p == ']') {
                bracket = 0;

            } else if (!isxdigit(*p) && *p != ':' && *p != '.'
                       && !(p == host && *p == '['))
            {
                return 0;
            }

            continue;
        }

        if (port) {
            if (*p < '0' || *p > '9') {
                return 0;
            }

            continue;
        }

        if (*p == ':') {
            if (p == host || p + 1 == last) {
                return 0;
            }

            port = 1;
            continue;
        }

        if (!isalnum(*p) && *p != '-' && *p != '.') {
            return 0;
        }
    }

    return p > host && !bracket;
}
