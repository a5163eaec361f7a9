
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_download.h"
#include "ngx_http_monetize_json.h"


/*
 * Downloads for paying accounts: "monetize_download on product=ID" in a
 * location lets a request through only with a valid download token for
 * that product (?token= or X-Download-Token), checked in the access phase
 * from the token alone, as secure_link does: no database trip, the same on
 * every worker and node that shares monetize_key_secret. A refusal is a
 * 403 that nginx finalizes (error_page applies); its JSON comes from the
 * header filter here, as the gate's does. Each download let through is
 * logged in download_logs from the log phase, batched
 * (store/download_log.c).
 *
 * The core module's (one module a .so: the sanitizers' ODR check compares
 * the .so's tables of module names). Its request context is found through
 * the request pool's cleanup, never in the core module's slot, which the
 * API's handler owns; that also keeps it across internal redirects.
 */


typedef struct {
    ngx_http_monetize_download_claims_t    claims;
    const char                            *code;
    const char                            *message;
    ngx_uint_t                             uri_changes;
    ngx_buf_t                             *answer;
    unsigned                               admitted:1;
    unsigned                               denied:1;
    unsigned                               answering:1;
    unsigned                               logged:1;
} ngx_http_monetize_download_ctx_t;


static ngx_int_t ngx_http_monetize_download_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_download_token(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_http_monetize_download_ctx_t *ngx_http_monetize_download_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_monetize_download_cleanup(void *data);
static ngx_int_t ngx_http_monetize_download_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_download_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static ngx_int_t ngx_http_monetize_download_log_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_download_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_http_monetize_download_conf_t *ngx_http_monetize_download_conf(
    ngx_conf_t *cf, ngx_http_monetize_main_conf_t *mcf);


#define NGX_HTTP_MONETIZE_DOWNLOAD_TTL_MAX  (366 * 24 * 60 * 60)


static ngx_http_variable_t  ngx_http_monetize_download_vars[] = {

    { ngx_string("monetize_download_user"), NULL,
      ngx_http_monetize_download_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_download_product"), NULL,
      ngx_http_monetize_download_variable, 1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_monetize_download_header =
    ngx_string("X-Download-Token");


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_monetize_download_handler(ngx_http_request_t *r)
{
    const char                              *why;
    ngx_int_t                                rc;
    ngx_str_t                                token, product;
    ngx_pool_cleanup_t                      *cln;
    ngx_http_monetize_download_ctx_t        *ctx;
    ngx_http_monetize_loc_conf_t            *lcf;
    ngx_http_monetize_main_conf_t           *mcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    if (!lcf->download || r != r->main) {
        return NGX_DECLINED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ctx = ngx_http_monetize_download_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_download_ctx_t));
        cln = ngx_pool_cleanup_add(r->pool, 0);

        if (ctx == NULL || cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_monetize_download_cleanup;
        cln->data = ctx;
    }

    /* a redirect into another download location is checked for its own */

    ctx->admitted = 0;
    ctx->denied = 0;

    if (ngx_http_complex_value(r, lcf->download_product, &product)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_monetize_download_token(r, &token);

    if (rc == NGX_DECLINED) {
        why = "no download token (?token= or X-Download-Token)";
        rc = NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;

    } else if (rc == NGX_BUSY) {
        why = "the token is given twice (?token=, X-Download-Token), "
              "differently";
        rc = NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;

    } else {
        rc = ngx_http_monetize_download_token_check(r->pool,
                                                    mcf->download->key,
                                                    &token, &ctx->claims,
                                                    &why);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc == NGX_HTTP_MONETIZE_DOWNLOAD_OK
        && (ctx->claims.product.len != product.len
            || ngx_strncmp(ctx->claims.product.data, product.data,
                           product.len) != 0))
    {
        why = "the token is for another product";
        rc = NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    if (rc == NGX_HTTP_MONETIZE_DOWNLOAD_OK) {
        ctx->admitted = 1;
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "monetize: download of \"%V\" refused: %s", &product, why);

    if (rc == NGX_HTTP_MONETIZE_DOWNLOAD_EXPIRED) {
        ctx->code = "token_expired";
        ctx->message = "this download token has expired; ask for a new one "
                       "(POST /downloads/token)";

    } else {
        ctx->code = "invalid_token";
        ctx->message = why;
    }

    ctx->denied = 1;
    ctx->answering = 0;
    ctx->uri_changes = r->uri_changes;

    return NGX_HTTP_FORBIDDEN;
}


/*
 * The token: ?token= or X-Download-Token. NGX_DECLINED: none; NGX_BUSY:
 * both, different (never resolved by picking one).
 */

static ngx_int_t
ngx_http_monetize_download_token(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_str_t         arg, header;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "token", sizeof("token") - 1, &arg)
        != NGX_OK)
    {
        ngx_str_null(&arg);
    }

    ngx_str_null(&header);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == ngx_http_monetize_download_header.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_http_monetize_download_header.data,
                               h[i].key.len) == 0)
        {
            if (header.data) {
                return NGX_BUSY;
            }

            header = h[i].value;
        }
    }

    if (arg.data && header.data
        && (arg.len != header.len
            || ngx_strncmp(arg.data, header.data, arg.len) != 0))
    {
        return NGX_BUSY;
    }

    *token = arg.data ? arg : header;

    return token->data ? NGX_OK : NGX_DECLINED;
}


/* the request's context, made by the access handler (see above) */

static ngx_http_monetize_download_ctx_t *
ngx_http_monetize_download_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    if (r != r->main) {
        return NULL;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_monetize_download_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


static void
ngx_http_monetize_download_cleanup(void *data)
{
    /* only a mark for ngx_http_monetize_download_get_ctx() */
}


/* nginx's page of our 403, where no error_page took it: the JSON instead */

static ngx_int_t
ngx_http_monetize_download_header_filter(ngx_http_request_t *r)
{
    ngx_http_monetize_loc_conf_t      *lcf;
    ngx_http_monetize_download_ctx_t  *ctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    /* refused in this location, or not by us */
    if (!lcf->download || r != r->main
        || r->headers_out.status != NGX_HTTP_FORBIDDEN)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_monetize_download_get_ctx(r);

    if (ctx && ctx->denied && !ctx->answering
        && r->uri_changes == ctx->uri_changes
        && r->headers_out.status == NGX_HTTP_FORBIDDEN)
    {
        ctx->answer = ngx_http_monetize_json_buf(r, NGX_HTTP_FORBIDDEN,
                          ngx_http_monetize_error_body(ctx->code, "%s",
                                                       ctx->message));
        if (ctx->answer == NULL) {
            return NGX_ERROR;
        }

        ctx->answering = 1;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_monetize_download_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_chain_t                        out, *cl;
    ngx_http_monetize_loc_conf_t      *lcf;
    ngx_http_monetize_download_ctx_t  *ctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);

    ctx = lcf->download ? ngx_http_monetize_download_get_ctx(r) : NULL;

    if (ctx == NULL || !ctx->answering) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->answer == NULL) {
        return ngx_http_next_body_filter(r, NULL);
    }

    out.buf = ctx->answer;
    out.next = NULL;
    ctx->answer = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* every download let through, with the bytes of its body that were sent */

static ngx_int_t
ngx_http_monetize_download_log_handler(ngx_http_request_t *r)
{
    off_t                              bytes;
    ngx_http_monetize_main_conf_t     *mcf;
    ngx_http_monetize_download_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_monetize_download_get_ctx(r);

    if (ctx == NULL || !ctx->admitted || ctx->logged) {
        return NGX_OK;
    }

    ctx->logged = 1;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    /* as $body_bytes_sent */
    bytes = r->connection->sent - r->header_size;

    ngx_http_monetize_download_log_add(mcf->pg, ctx->claims.user_id,
                                       &ctx->claims.product,
                                       &r->connection->addr_text,
                                       ngx_max(bytes, 0),
                                       r->headers_out.status);

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_download_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_monetize_download_ctx_t  *ctx;

    ctx = ngx_http_monetize_download_get_ctx(r->main);

    if (ctx == NULL || !ctx->admitted) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (data == 0) {
        v->data = ctx->claims.user_id;
        v->len = NGX_HTTP_MONETIZE_UUID_LEN;

    } else {
        v->data = ctx->claims.product.data;
        v->len = ctx->claims.product.len;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_download_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_monetize_download_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_http_monetize_download_conf_t *
ngx_http_monetize_download_conf(ngx_conf_t *cf,
    ngx_http_monetize_main_conf_t *mcf)
{
    ngx_http_monetize_download_conf_t  *dc;

    if (mcf->download) {
        return mcf->download;
    }

    dc = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_download_conf_t));
    if (dc == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     dc->url = NULL;
     *     dc->key_set = 0;
     *     dc->used = 0;
     */

    dc->ttl = NGX_CONF_UNSET;

    mcf->download = dc;

    return dc;
}


char *
ngx_http_monetize_download_init_conf(ngx_conf_t *cf,
    ngx_http_monetize_main_conf_t *mcf)
{
    ngx_str_t                           url;
    ngx_http_compile_complex_value_t    ccv;
    ngx_http_monetize_download_conf_t  *dc;

    dc = ngx_http_monetize_download_conf(cf, mcf);
    if (dc == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(dc->ttl, 24 * 60 * 60);

    if (dc->url == NULL) {
        ngx_str_set(&url, "$scheme://$monetize_host/downloads/");

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &url;
        ccv.complex_value = ngx_palloc(cf->pool,
                                       sizeof(ngx_http_complex_value_t));
        if (ccv.complex_value == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        dc->url = ccv.complex_value;
    }

    if (mcf->key_secret.data) {
        if (ngx_http_monetize_download_token_key(&mcf->key_secret, dc->key)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize: HMAC() failed");
            return NGX_CONF_ERROR;
        }

        dc->key_set = 1;
    }

    if (dc->used && (mcf->key_secret.data == NULL || mcf->pg == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"monetize_download on\" needs "
                           "\"monetize_key_secret\" (its tokens' key) and "
                           "\"monetize_postgres\" (download_logs) at http "
                           "level");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_monetize_download_merge_loc_conf(ngx_conf_t *cf,
    ngx_http_monetize_loc_conf_t *prev, ngx_http_monetize_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    /* "on" and its product go together */

    if (conf->download == NGX_CONF_UNSET) {
        conf->download = (prev->download == NGX_CONF_UNSET)
                         ? 0 : prev->download;
        conf->download_product = (prev->download_product
                                  == NGX_CONF_UNSET_PTR)
                                 ? NULL : prev->download_product;
    }

    /* as the gate: another access check must not let a download through */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->download && clcf->satisfy == NGX_HTTP_SATISFY_ANY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"monetize_download on\" cannot be combined "
                           "with \"satisfy any\"%s%V%s: a download that "
                           "another access check allows would need no "
                           "token",
                           clcf->name.len ? " in location \"" : "",
                           &clcf->name, clcf->name.len ? "\"" : "");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* monetize_download on product=VALUE | off */

char *
ngx_http_monetize_download(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_loc_conf_t *lcf = conf;

    ngx_str_t                           s, *value;
    ngx_uint_t                          i;
    ngx_http_compile_complex_value_t    ccv;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_download_conf_t  *dc;

    if (lcf->download != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        lcf->download = 0;
        lcf->download_product = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "on") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_download: invalid value \"%V\", give "
                           "\"on product=ID\" or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "product=", 8) != 0
            || value[i].len == 8
            || lcf->download_product != NGX_CONF_UNSET_PTR)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_download: invalid or repeated "
                               "parameter \"%V\", give product=ID once "
                               "(a variable may make it)", &value[i]);
            return NGX_CONF_ERROR;
        }

        s.data = value[i].data + 8;
        s.len = value[i].len - 8;

        lcf->download_product = ngx_palloc(cf->pool,
                                           sizeof(ngx_http_complex_value_t));
        if (lcf->download_product == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &s;
        ccv.complex_value = lcf->download_product;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (lcf->download_product == NGX_CONF_UNSET_PTR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"monetize_download on\" needs product=ID: the "
                           "product this location serves");
        return NGX_CONF_ERROR;
    }

    lcf->download = 1;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_monetize_module);

    dc = ngx_http_monetize_download_conf(cf, mcf);
    if (dc == NULL) {
        return NGX_CONF_ERROR;
    }

    dc->used = 1;

    return NGX_CONF_OK;
}


/* monetize_download_ttl TIME: how long a new token is good for */

char *
ngx_http_monetize_download_ttl(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    time_t                              t;
    ngx_str_t                          *value;
    ngx_http_monetize_download_conf_t  *dc;

    dc = ngx_http_monetize_download_conf(cf, conf);
    if (dc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (dc->ttl != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    t = ngx_parse_time(&value[1], 1);

    if (t == (time_t) NGX_ERROR || t <= 0
        || t > NGX_HTTP_MONETIZE_DOWNLOAD_TTL_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_download_ttl: invalid time \"%V\", "
                           "give 1s to 366d", &value[1]);
        return NGX_CONF_ERROR;
    }

    dc->ttl = t;

    return NGX_CONF_OK;
}


/* monetize_download_url URL: variables allowed */

char *
ngx_http_monetize_download_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                          *value;
    ngx_http_compile_complex_value_t    ccv;
    ngx_http_monetize_download_conf_t  *dc;

    dc = ngx_http_monetize_download_conf(cf, conf);
    if (dc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (dc->url) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_download_url: empty URL");
        return NGX_CONF_ERROR;
    }

    dc->url = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (dc->url == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = dc->url;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the core module's postconfiguration */

ngx_int_t
ngx_http_monetize_download_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_monetize_download_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_monetize_download_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_monetize_download_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_monetize_download_body_filter;

    return NGX_OK;
}
