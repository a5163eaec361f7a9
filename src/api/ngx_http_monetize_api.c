
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"


/*
 * The management API: "location /v1/ { monetize_api; }". Routes the path
 * below the location, reads and parses a JSON body where the route takes
 * one, authenticates the caller where the route needs it, and carries the
 * request through asynchronous work (PostgreSQL, the thread pool) to its
 * answer.
 */


/* a route's body: none, JSON, or raw bytes its handler reads itself */
#define NGX_HTTP_MONETIZE_API_RAW_BODY  2


typedef struct {
    ngx_str_t                          path;     /* "{id}" is one segment */
    ngx_uint_t                         method;
    unsigned                           body:2;
    unsigned                           auth:1;
    unsigned                           limited:1;  /* per client address */
    ngx_http_monetize_api_handler_pt   handler;
} ngx_http_monetize_api_route_t;


static ngx_http_monetize_api_route_t *ngx_http_monetize_api_route(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx,
    ngx_uint_t *allowed);
static ngx_uint_t ngx_http_monetize_api_match(ngx_str_t *pattern,
    ngx_str_t *path, ngx_str_t *id);
static ngx_int_t ngx_http_monetize_api_not_allowed(ngx_http_request_t *r,
    ngx_uint_t methods);
static ngx_int_t ngx_http_monetize_api_limit(ngx_http_request_t *r);
static json_t *ngx_http_monetize_api_check_body(ngx_http_request_t *r);
static void ngx_http_monetize_api_body_read(ngx_http_request_t *r);
static json_t *ngx_http_monetize_api_parse_body(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_api_start(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
static void ngx_http_monetize_api_query_done(ngx_http_monetize_pg_query_t *q);


static ngx_http_monetize_api_route_t  ngx_http_monetize_api_routes[] = {

    { ngx_string("health"), NGX_HTTP_GET, 0, 0, 0,
      ngx_http_monetize_health_handler },

    { ngx_string("plans"), NGX_HTTP_GET, 0, 0, 0,
      ngx_http_monetize_plans_handler },

    { ngx_string("register"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_register_handler },

    { ngx_string("verify_credits"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_balance_handler },

    { ngx_string("credits"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_balance_handler },

    { ngx_string("use_credit"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_use_credit_handler },

    { ngx_string("keys"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_keys_list_handler },

    { ngx_string("keys"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_keys_create_handler },

    { ngx_string("keys/{id}"), NGX_HTTP_DELETE, 0, 1, 0,
      ngx_http_monetize_keys_revoke_handler },

    { ngx_string("keys/{id}/rotate"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_keys_rotate_handler },

    { ngx_string("purchase_credits"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_purchase_credits_handler },

    { ngx_string("billing/checkout"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_billing_checkout_handler },

    { ngx_string("billing/portal"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_billing_portal_handler },

    { ngx_string("billing/status"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_billing_status_handler },

    { ngx_string("aws/credentials"), NGX_HTTP_POST, 0, 1, 0,
      ngx_http_monetize_aws_credentials_handler },

    { ngx_string("usage"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_usage_handler },

    { ngx_string("downloads"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_downloads_list_handler },

    { ngx_string("downloads/token"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_download_token_handler },

    { ngx_string("me"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_me_handler },

    { ngx_string("profile"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_me_handler },

    { ngx_string("me"), NGX_HTTP_PATCH, 1, 1, 0,
      ngx_http_monetize_me_update_handler },

    { ngx_string("me/password"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_me_password_handler },

    { ngx_string("admin/credits"), NGX_HTTP_POST, 1, 1, 0,
      ngx_http_monetize_admin_credits_handler },

    { ngx_string("admin/users/{id}"), NGX_HTTP_PATCH, 1, 1, 0,
      ngx_http_monetize_admin_user_handler },

    { ngx_string("admin/users"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_admin_users_handler },

    { ngx_string("admin/audit"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_admin_audit_handler },

    { ngx_string("admin/webhook_events"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_admin_webhook_events_handler },

    { ngx_string("admin/revenue"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_admin_revenue_handler },

    { ngx_string("admin/top_accounts"), NGX_HTTP_GET, 0, 1, 0,
      ngx_http_monetize_admin_top_accounts_handler },

    { ngx_string("auth/register"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_register_handler },

    { ngx_string("auth/login"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_login_handler },

    { ngx_string("auth/refresh"), NGX_HTTP_POST, 1, 0, 0,
      ngx_http_monetize_refresh_handler },

    { ngx_string("auth/logout"), NGX_HTTP_POST, 1, 0, 0,
      ngx_http_monetize_logout_handler },

    { ngx_string("auth/logout-all"), NGX_HTTP_POST, 0, 1, 0,
      ngx_http_monetize_logout_all_handler },

    { ngx_string("auth/verify-email"), NGX_HTTP_POST, 1, 0, 0,
      ngx_http_monetize_verify_email_handler },

    { ngx_string("auth/verify-email"), NGX_HTTP_GET, 0, 0, 0,
      ngx_http_monetize_verify_email_get_handler },

    { ngx_string("auth/resend-verification"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_resend_verification_handler },

    { ngx_string("auth/forgot-password"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_forgot_password_handler },

    { ngx_string("auth/reset-password"), NGX_HTTP_POST, 1, 0, 1,
      ngx_http_monetize_reset_password_handler },
    { ngx_string("webhooks/stripe"), NGX_HTTP_POST,
      NGX_HTTP_MONETIZE_API_RAW_BODY, 0, 0,
      ngx_http_monetize_webhook_handler },

    { ngx_null_string, 0, 0, 0, 0, NULL }
};


static ngx_str_t  ngx_http_monetize_method_names[] = {
    ngx_string("GET"), ngx_string("POST"), ngx_string("PATCH"),
    ngx_string("PUT"), ngx_string("DELETE")
};

static ngx_uint_t  ngx_http_monetize_method_bits[] = {
    NGX_HTTP_GET, NGX_HTTP_POST, NGX_HTTP_PATCH, NGX_HTTP_PUT,
    NGX_HTTP_DELETE
};


ngx_int_t
ngx_http_monetize_api_handler(ngx_http_request_t *r)
{
    json_t                         *error;
    ngx_int_t                       rc;
    ngx_uint_t                      allowed;
    ngx_http_monetize_api_ctx_t    *ctx;
    ngx_http_monetize_api_route_t  *route;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_monetize_module);

    rc = ngx_http_monetize_cors(r);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    route = ngx_http_monetize_api_route(r, ctx, &allowed);

    if (route && route->limited) {
        rc = ngx_http_monetize_api_limit(r);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (route && route->body == NGX_HTTP_MONETIZE_API_RAW_BODY) {
        return ctx->next(r, ctx);
    }

    if (route == NULL || !route->body) {

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (route == NULL && allowed) {
            return ngx_http_monetize_api_not_allowed(r, allowed);
        }

        if (route == NULL) {
            return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                                "not_found",
                                                "no such endpoint");
        }

        rc = ngx_http_monetize_api_start(r, ctx);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    error = ngx_http_monetize_api_check_body(r);

    if (error) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            json_decref(error);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_json(r, NGX_HTTP_BAD_REQUEST, error);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_monetize_api_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* The route of the request, or NULL and the methods its path allows. */

static ngx_http_monetize_api_route_t *
ngx_http_monetize_api_route(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_uint_t *allowed)
{
    ngx_uint_t                      method;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_monetize_api_route_t  *rt;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ctx->path = r->uri;

    if (ctx->path.len >= clcf->name.len
        && ngx_strncmp(ctx->path.data, clcf->name.data, clcf->name.len) == 0)
    {
        ctx->path.data += clcf->name.len;
        ctx->path.len -= clcf->name.len;
    }

    while (ctx->path.len && ctx->path.data[0] == '/') {
        ctx->path.data++;
        ctx->path.len--;
    }

    if (ctx->path.len && ctx->path.data[ctx->path.len - 1] == '/') {
        ctx->path.len--;
    }

    method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;
    *allowed = 0;

    for (rt = ngx_http_monetize_api_routes; rt->handler; rt++) {

        if (!ngx_http_monetize_api_match(&rt->path, &ctx->path, &ctx->id)) {
            continue;
        }

        if (rt->method == method) {
            ctx->next = rt->handler;
            ctx->authenticate = rt->auth;
            return rt;
        }

        *allowed |= rt->method;
    }

    return NULL;
}


static ngx_uint_t
ngx_http_monetize_api_match(ngx_str_t *pattern, ngx_str_t *path,
    ngx_str_t *id)
{
    u_char  *p, *pe, *u, *ue, *seg;

    p = pattern->data;
    pe = p + pattern->len;
    u = path->data;
    ue = u + path->len;

    while (p < pe && u < ue) {

        if (pe - p >= 4 && ngx_strncmp(p, "{id}", 4) == 0) {
            seg = u;

            while (u < ue && *u != '/') {
                u++;
            }

            id->data = seg;
            id->len = u - seg;
            p += 4;
            continue;
        }

        if (*p++ != *u++) {
            return 0;
        }
    }

    return p == pe && u == ue;
}


/*
 * The public endpoints that create accounts or check passwords take at most
 * monetize_api_limit calls from one client address (node-local). Returns
 * NGX_DECLINED when the call may go on; otherwise the call has its answer
 * (the status that ends it).
 */

static ngx_int_t
ngx_http_monetize_api_limit(ngx_http_request_t *r)
{
    u_char                          *p;
    ngx_str_t                        key;
    ngx_http_monetize_limit_t        lim;
    ngx_http_monetize_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (mcf->api_limit == 0) {
        return NGX_DECLINED;
    }

    key.len = sizeof("ip:") - 1 + r->connection->addr_text.len;
    key.data = ngx_pnalloc(r->pool, key.len);
    if (key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(key.data, "ip:", sizeof("ip:") - 1);
    ngx_memcpy(p, r->connection->addr_text.data,
               r->connection->addr_text.len);

    if (ngx_http_monetize_limit_local(mcf->limits, &key, mcf->api_limit,
                                      mcf->api_limit_burst, &lim)
        != NGX_OK || lim.allowed)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (ngx_http_monetize_rate_limit_headers(r, &lim) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_rate_limited(r, &lim);
}


static ngx_int_t
ngx_http_monetize_api_not_allowed(ngx_http_request_t *r, ngx_uint_t methods)
{
    u_char      *p;
    ngx_str_t    allow;
    ngx_uint_t   i;

    allow.data = ngx_pnalloc(r->pool, sizeof("GET, POST, PATCH, PUT, DELETE"));
    if (allow.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = allow.data;

    for (i = 0; i < sizeof(ngx_http_monetize_method_bits)
                    / sizeof(ngx_uint_t); i++)
    {
        if (methods & ngx_http_monetize_method_bits[i]) {
            if (p != allow.data) {
                *p++ = ',';
                *p++ = ' ';
            }

            p = ngx_cpymem(p, ngx_http_monetize_method_names[i].data,
                           ngx_http_monetize_method_names[i].len);
        }
    }

    allow.len = p - allow.data;

    if (ngx_http_monetize_set_header(r, "Allow", &allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                        "method_not_allowed",
                                        "use %.*s on this endpoint",
                                        (int) allow.len, allow.data);
}


/* Returns the error to answer, or NULL when the body may be read. */

static json_t *
ngx_http_monetize_api_check_body(ngx_http_request_t *r)
{
    u_char                         *p, *last;
    ngx_str_t                       type;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (r->headers_in.content_length_n > (off_t) mcf->max_body_size) {
        return ngx_http_monetize_error_body("body_too_large",
                                            "the body may have at most "
                                            "%zu bytes", mcf->max_body_size);
    }

    /* no body at all, as "curl -X POST" sends: "{}" like an empty one */

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        return NULL;
    }

    if (r->headers_in.content_type) {
        type = r->headers_in.content_type->value;
        last = type.data + type.len;

        for (p = type.data; p < last && *p != ';' && *p != ' '; p++) {
            /* void */
        }

        if ((size_t) (p - type.data) == sizeof("application/json") - 1
            && ngx_strncasecmp(type.data, (u_char *) "application/json",
                               sizeof("application/json") - 1) == 0)
        {
            return NULL;
        }
    }

    return ngx_http_monetize_error_body("invalid_request",
                                        "send the body as "
                                        "Content-Type: application/json");
}


static void
ngx_http_monetize_api_body_read(ngx_http_request_t *r)
{
    json_t                       *error;
    ngx_int_t                     rc;
    ngx_http_monetize_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    error = ngx_http_monetize_api_parse_body(r, ctx);

    if (error) {
        ngx_http_finalize_request(r,
            ngx_http_monetize_send_json(r, NGX_HTTP_BAD_REQUEST, error));
        return;
    }

    if (ctx->body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_monetize_api_start(r, ctx);

    if (rc == NGX_DONE) {
        /* the reference taken by the body reader now belongs to that work */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * Sets ctx->body (NULL only when out of memory or the body's temporary
 * file cannot be read) or returns the error to answer.
 *
 * A body larger than the location's client_body_buffer_size (8k by
 * default) is in nginx's temporary file: it is read back from there (at
 * most monetize_api_max_body, just written, so from the page cache, as
 * nginx's own write of it was made), so that the limit is
 * monetize_api_max_body whatever the buffer.
 */

static json_t *
ngx_http_monetize_api_parse_body(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char                         *p;
    off_t                           len;
    size_t                          size;
    ssize_t                         n;
    ngx_buf_t                      *b;
    ngx_str_t                       text;
    ngx_chain_t                    *cl;
    json_error_t                    error;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    len = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > (off_t) mcf->max_body_size) {
        /* a chunked body: its size was known only once read */
        return ngx_http_monetize_error_body("body_too_large",
                                            "the body may have at most "
                                            "%zu bytes", mcf->max_body_size);
    }

    if (len == 0) {
        ngx_str_set(&text, "{}");

    } else {
        text.len = (size_t) len;
        text.data = ngx_pnalloc(r->pool, text.len);
        if (text.data == NULL) {
            return NULL;
        }

        p = text.data;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            /* a chunked body ends with an empty buffer that has no memory */

            if (ngx_buf_size(b) == 0) {
                continue;
            }

            if (!b->in_file) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
                continue;
            }

            size = (size_t) (b->file_last - b->file_pos);

            n = ngx_read_file(b->file, p, size, b->file_pos);

            if (n != (ssize_t) size) {
                if (n != NGX_ERROR) {
                    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                                  "monetize: read only %z of %uz bytes of "
                                  "the body from \"%V\"", n, size,
                                  &b->file->name);
                }

                return NULL;
            }

            p += size;
        }
    }

    ngx_memzero(&error, sizeof(json_error_t));

    ctx->body = ngx_http_monetize_json_parse(r, &text, &error);

    if (ctx->body == NULL) {
        return ngx_http_monetize_error_body("invalid_json",
                                            "the body is not valid JSON: %s "
                                            "(line %d, column %d)",
                                            error.text, error.line,
                                            error.column);
    }

    if (!json_is_object(ctx->body)) {
        return ngx_http_monetize_error_body("invalid_json",
                                            "the body must be a JSON object");
    }

    return NULL;
}


static ngx_int_t
ngx_http_monetize_api_start(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    if (ctx->authenticate) {
        return ngx_http_monetize_authenticate(r, ctx);
    }

    return ctx->next(r, ctx);
}


/*
 * Runs one statement for the request; "result" is called with the answer
 * and returns what ends the request, or NGX_DONE to go on.
 */

ngx_int_t
ngx_http_monetize_api_query(ngx_http_request_t *r, const char *sql,
    ngx_str_t *params, int nparams, ngx_http_monetize_api_result_pt result)
{
    u_char                         *p;
    ngx_int_t                       i;
    ngx_http_monetize_api_ctx_t    *ctx;
    ngx_http_monetize_pg_query_t   *q;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    q = ngx_http_monetize_pg_query_create(r->pool, nparams);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < nparams; i++) {
        if (params[i].data == NULL) {
            continue;
        }

        p = ngx_pnalloc(r->pool, params[i].len + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(p, params[i].data, params[i].len);
        p[params[i].len] = '\0';
        q->params[i] = (char *) p;
    }

    q->sql = sql;
    q->handler = ngx_http_monetize_api_query_done;
    q->data = r;

    ctx->result = result;

    if (ngx_http_monetize_pg_send(mcf->pg, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_api_query_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_int_t                     rc;
    ngx_http_request_t           *r;
    ngx_http_monetize_api_ctx_t  *ctx;

    r = q->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    rc = ctx->result(r, ctx, q);

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


/* The answer to a query that failed in a way the caller does not expect. */

ngx_int_t
ngx_http_monetize_api_backend_failed(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q)
{
    if (q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE) {
        return ngx_http_monetize_api_unavailable(r, "postgres");
    }

    ngx_http_monetize_pg_log_refused(r->connection->log, q);

    if (ngx_http_monetize_pg_transient(q)) {
        return ngx_http_monetize_api_unavailable(r, "postgres");
    }

    return ngx_http_monetize_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                        "internal_error",
                                        "the server failed; the operator "
                                        "will find the cause in its log");
}


ngx_int_t
ngx_http_monetize_api_unavailable(ngx_http_request_t *r, const char *what)
{
    ngx_str_t  retry = ngx_string("1");

    if (ngx_http_monetize_set_header(r, "Retry-After", &retry) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "backend_unavailable",
                                        "%s is unavailable; try again",
                                        what);
}


/* Ends a request from an event handler (a query's or a thread's answer). */

void
ngx_http_monetize_api_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
