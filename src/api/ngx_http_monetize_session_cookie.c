
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_portal_api.h"


/*
 * The refresh token in a cookie, for the browser's portal:
 * "monetize_session_cookie on [insecure]" in the API's location. A login
 * and a refresh also set the token as a cookie that the page's scripts
 * cannot read (HttpOnly), that goes only to <location>/auth (Path) and
 * only from pages of the API's own site (SameSite=Strict); the access
 * token stays in the page's memory.
 *
 * A call that spends the cookie (a refresh, a logout) must also carry
 * "X-Monetize-CSRF": a header that a page of another site cannot add
 * without a CORS preflight, which the API grants only to the origins of
 * monetize_cors_origins. An Origin, when the browser sends one, must be
 * the API's own (monetize_public_url's, or this request's scheme and
 * Host) or one of those the operator trusts with credentials already
 * (monetize_cors_origins): SameSite=Strict is the first wall, these are
 * the second.
 */


#define NGX_HTTP_MONETIZE_COOKIE_NAME  "monetize_refresh"


static ngx_int_t ngx_http_monetize_session_cookie_header(
    ngx_http_request_t *r, ngx_str_t *value, time_t max_age);
static ngx_table_elt_t *ngx_http_monetize_session_cookie_find(
    ngx_http_request_t *r, const char *name, size_t len);
static ngx_uint_t ngx_http_monetize_session_cookie_origin_ok(
    ngx_http_request_t *r, ngx_str_t *origin);


static ngx_str_t  ngx_http_monetize_cookie_name =
    ngx_string(NGX_HTTP_MONETIZE_COOKIE_NAME);


/* monetize_session_cookie off | on [insecure] */

char *
ngx_http_monetize_session_cookie_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_loc_conf_t *lcf = conf;

    ngx_str_t  *value, *bad;

    if (lcf->session_cookie != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    bad = NULL;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        lcf->session_cookie = NGX_HTTP_MONETIZE_SESSION_COOKIE_OFF;

    } else if (ngx_strcmp(value[1].data, "on") == 0) {

        if (cf->args->nelts == 2) {
            lcf->session_cookie = NGX_HTTP_MONETIZE_SESSION_COOKIE_ON;

        } else if (ngx_strcmp(value[2].data, "insecure") == 0) {
            lcf->session_cookie = NGX_HTTP_MONETIZE_SESSION_COOKIE_INSECURE;

        } else {
            bad = &value[2];
        }

    } else {
        bad = (ngx_strcmp(value[1].data, "off") == 0) ? &value[2] : &value[1];
    }

    if (bad) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_session_cookie: invalid value \"%V\", "
                           "give \"on\", \"on insecure\" (plain http, for "
                           "tests on loopback) or \"off\"", bad);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* The refresh token just made, as a cookie too where the directive is on. */

ngx_int_t
ngx_http_monetize_session_cookie_set(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    return ngx_http_monetize_session_cookie_header(r, token,
                                                   mcf->jwt_refresh_ttl);
}


/* After a logout or a refused token: the browser drops what it holds. */

ngx_int_t
ngx_http_monetize_session_cookie_clear(ngx_http_request_t *r)
{
    ngx_str_t  empty = ngx_null_string;

    return ngx_http_monetize_session_cookie_header(r, &empty, 0);
}


static ngx_int_t
ngx_http_monetize_session_cookie_header(ngx_http_request_t *r,
    ngx_str_t *value, time_t max_age)
{
    u_char                        *p;
    size_t                         len;
    ngx_str_t                      path, cookie;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_monetize_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    if (lcf->session_cookie == NGX_HTTP_MONETIZE_SESSION_COOKIE_OFF) {
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    path = clcf->name;

    while (path.len && path.data[path.len - 1] == '/') {
        path.len--;
    }

    len = ngx_http_monetize_cookie_name.len + sizeof("=; Path=/auth; Max-Age=;"
                                              " HttpOnly; SameSite=Strict;"
                                              " Secure")
          + value->len + path.len + NGX_TIME_T_LEN;

    cookie.data = ngx_pnalloc(r->pool, len);
    if (cookie.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(cookie.data, "%V=%V; Path=%V/auth; Max-Age=%T; HttpOnly;"
                    " SameSite=Strict", &ngx_http_monetize_cookie_name,
                    value, &path, max_age);

    if (lcf->session_cookie != NGX_HTTP_MONETIZE_SESSION_COOKIE_INSECURE) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    cookie.len = p - cookie.data;

    return ngx_http_monetize_set_header(r, "Set-Cookie", &cookie);
}


/*
 * The refresh token of the cookie, for a call whose body has none.
 * NGX_OK: "token" is set, and the call is one of the API's own pages;
 * NGX_DECLINED: no cookie here (or the directive is off); NGX_ABORT: a
 * cookie, but the call may be another site's (answer with
 * ngx_http_monetize_session_cookie_refused()).
 */

ngx_int_t
ngx_http_monetize_session_cookie_get(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_table_elt_t               *h;
    ngx_http_monetize_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    if (lcf->session_cookie == NGX_HTTP_MONETIZE_SESSION_COOKIE_OFF) {
        return NGX_DECLINED;
    }

    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                          &ngx_http_monetize_cookie_name,
                                          token)
        == NGX_DECLINED
        || token->len == 0)
    {
        return NGX_DECLINED;
    }

    h = ngx_http_monetize_session_cookie_find(r, "X-Monetize-CSRF",
                                              sizeof("X-Monetize-CSRF") - 1);

    if (h == NULL || h->value.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "monetize: a session cookie without X-Monetize-CSRF "
                      "refused");
        return NGX_ABORT;
    }

    h = ngx_http_monetize_session_cookie_find(r, "Origin",
                                              sizeof("Origin") - 1);

    if (h && !ngx_http_monetize_session_cookie_origin_ok(r, &h->value)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "monetize: a session cookie from the origin \"%V\" "
                      "refused", &h->value);
        return NGX_ABORT;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_session_cookie_refused(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_FORBIDDEN, "csrf_failed",
                                        "a call with the session cookie "
                                        "needs the header X-Monetize-CSRF "
                                        "and, if it has an Origin, the "
                                        "API's own");
}


static ngx_table_elt_t *
ngx_http_monetize_session_cookie_find(ngx_http_request_t *r,
    const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

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


/*
 * The API's own origin: that of monetize_public_url (scheme, host and
 * port, checked at configuration), or, without it, the scheme and Host of
 * this request, which a browser sets to the site it talks to.
 */

static ngx_uint_t
ngx_http_monetize_session_cookie_origin_ok(ngx_http_request_t *r,
    ngx_str_t *origin)
{
    u_char                         *p, *last;
    ngx_str_t                       own, host, *trusted;
    ngx_uint_t                      i;
    ngx_http_monetize_loc_conf_t   *lcf;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    if (lcf->cors_origins) {
        trusted = lcf->cors_origins->elts;

        for (i = 0; i < lcf->cors_origins->nelts; i++) {
            if (trusted[i].len == origin->len
                && ngx_strncasecmp(trusted[i].data, origin->data,
                                   origin->len)
                   == 0)
            {
                return 1;
            }
        }
    }

    if (mcf->public_url.len) {
        own = mcf->public_url;
        last = own.data + own.len;

        p = ngx_strlchr(own.data, last, ':');

        /* "scheme://host[:port]": up to the first "/" after "://" */

        if (p && last - p > 3) {
            p = ngx_strlchr(p + 3, last, '/');
            if (p) {
                own.len = p - own.data;
            }
        }

        return origin->len == own.len
               && ngx_strncasecmp(origin->data, own.data, own.len) == 0;
    }

    if (r->headers_in.host == NULL) {
        return 0;
    }

    host = r->headers_in.host->value;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&own, "https://");

    } else
#endif
    {
        ngx_str_set(&own, "http://");
    }

    return origin->len == own.len + host.len
           && ngx_strncasecmp(origin->data, own.data, own.len) == 0
           && ngx_strncasecmp(origin->data + own.len, host.data, host.len)
              == 0;
}
