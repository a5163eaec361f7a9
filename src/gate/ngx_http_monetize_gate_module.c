
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_gate.h"
#include "ngx_http_monetize_json.h"


/*
 * The gate module: its directives, its place in the access phase (the
 * decision itself is in ngx_http_monetize_gate.c), the JSON of its denials
 * and X-Credits-Remaining on the answers, refunds in the log phase, and the
 * $monetize_* variables.
 */


static ngx_int_t ngx_http_monetize_gate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_gate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_monetize_gate_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_gate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_monetize_gate_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_monetize_gate_add_variables(ngx_conf_t *cf);
static void *ngx_http_monetize_gate_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_monetize_gate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_monetize_gate_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_monetize_gate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_monetize_refund_on(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_monetize_past_due(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_monetize_gate_init(ngx_conf_t *cf);


static ngx_conf_enum_t  ngx_http_monetize_rate_limits[] = {
    { ngx_string("off"), NGX_HTTP_MONETIZE_LIMIT_OFF },
    { ngx_string("local"), NGX_HTTP_MONETIZE_LIMIT_LOCAL },
    { ngx_string("redis"), NGX_HTTP_MONETIZE_LIMIT_REDIS },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_monetize_rate_limit_keys[] = {
    { ngx_string("key"), NGX_HTTP_MONETIZE_LIMIT_BY_KEY },
    { ngx_string("account"), NGX_HTTP_MONETIZE_LIMIT_BY_ACCOUNT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_monetize_fail_modes[] = {
    { ngx_string("local"), NGX_HTTP_MONETIZE_FAIL_LOCAL },
    { ngx_string("closed"), NGX_HTTP_MONETIZE_FAIL_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_monetize_past_due_modes[] = {
    { ngx_string("allow"), NGX_HTTP_MONETIZE_PAST_DUE_ALLOW },
    { ngx_string("deny"), NGX_HTTP_MONETIZE_PAST_DUE_DENY },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_monetize_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_monetize_gate_commands[] = {

    { ngx_string("monetize_gate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_monetize_gate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, enable),
      NULL },

    { ngx_string("monetize_cost"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, cost),
      NULL },

    { ngx_string("monetize_refund_on"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_refund_on,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, rate_limit),
      &ngx_http_monetize_rate_limits },

    { ngx_string("monetize_rate_limit_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, rate_limit_key),
      &ngx_http_monetize_rate_limit_keys },

    { ngx_string("monetize_fail_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, fail_mode),
      &ngx_http_monetize_fail_modes },

    { ngx_string("monetize_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, quota),
      NULL },

    { ngx_string("monetize_deny_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, deny_log_level),
      &ngx_http_monetize_log_levels },

    { ngx_string("monetize_past_due"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_past_due,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, past_due),
      &ngx_http_monetize_past_due_modes },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_monetize_gate_module_ctx = {
    ngx_http_monetize_gate_add_variables,  /* preconfiguration */
    ngx_http_monetize_gate_init,           /* postconfiguration */

    ngx_http_monetize_gate_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_monetize_gate_create_loc_conf, /* create location configuration */
    ngx_http_monetize_gate_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_monetize_gate_module = {
    NGX_MODULE_V1,
    &ngx_http_monetize_gate_module_ctx,    /* module context */
    ngx_http_monetize_gate_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_monetize_gate_vars[] = {

    { ngx_string("monetize_user_id"), NULL, ngx_http_monetize_gate_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_key_id"), NULL, ngx_http_monetize_gate_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_plan"), NULL, ngx_http_monetize_gate_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_credits"), NULL, ngx_http_monetize_gate_variable,
      3, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_auth"), NULL, ngx_http_monetize_gate_variable,
      4, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("monetize_jwt_claim_"), NULL,
      ngx_http_monetize_gate_claim_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_monetize_gate_header_filter(ngx_http_request_t *r)
{
    json_t                        *body;
    ngx_http_monetize_limit_t      lim;
    ngx_http_monetize_gate_ctx_t  *ctx;

    static ngx_str_t  overage = ngx_string("true");

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    /*
     * nginx's own page of the gate's denial, in the location that denied
     * it (no error_page redirected the call since): the gate's JSON
     * replaces it.
     */

    if (ctx->denied && !ctx->answering
        && r->uri_changes == ctx->uri_changes
        && r->headers_out.status == ngx_http_monetize_gate_status(ctx))
    {
        body = ngx_http_monetize_gate_answer(r, ctx);

        ctx->answer = ngx_http_monetize_json_buf(r, r->headers_out.status,
                                                 body);
        if (ctx->answer == NULL) {
            return NGX_ERROR;
        }

        ctx->answering = 1;
    }

    if (ctx->balance_known
        && ngx_http_monetize_set_number(r, "X-Credits-Remaining",
                                        ctx->balance)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->quota_known && ctx->quota_left >= 0
        && ngx_http_monetize_set_number(r, "X-Quota-Remaining",
                                        ctx->quota_left)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->overage
        && ngx_http_monetize_set_header(r, "X-Overage", &overage) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->limited) {
        lim = ctx->limit;
        lim.remaining = ngx_http_monetize_gate_calls_left(ctx, lim.remaining);

        if (ngx_http_monetize_rate_limit_headers(r, &lim) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/* The denial's JSON goes out instead of the page nginx made for it. */

static ngx_int_t
ngx_http_monetize_gate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                    out, *cl;
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = (r == r->main)
          ? ngx_http_get_module_ctx(r, ngx_http_monetize_gate_module) : NULL;

    if (ctx == NULL || !ctx->answering) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->answer == NULL) {
        /* sent: what is left to do is the writer's */
        return ngx_http_next_body_filter(r, NULL);
    }

    out.buf = ctx->answer;
    out.next = NULL;
    ctx->answer = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/*
 * "Charge only for what was served": refund what the upstream failed. Only
 * the call's own status counts: with log_subrequest on, the log phase runs
 * for its subrequests too, and an include that failed is not a call that
 * failed.
 */

static ngx_int_t
ngx_http_monetize_gate_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                          status;
    ngx_http_monetize_gate_ctx_t       *ctx;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (ctx == NULL || !ctx->debited || ctx->refunded) {
        return NGX_OK;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);
    status = r->headers_out.status;

    if (status >= 640
        || !(glcf->refund[status / 64] & ((uint64_t) 1 << (status % 64))))
    {
        return NGX_OK;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ctx->refunded = 1;
    ngx_http_monetize_refund(mcf->ledger, &ctx->reference);

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_gate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                        *p;
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r->main);

    if (ctx == NULL || !ctx->authenticated) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    switch (data) {

    case 0:
        v->data = ctx->info.user_id;
        v->len = NGX_HTTP_MONETIZE_UUID_LEN;
        break;

    case 1:
        if (ctx->session) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->info.key_id;
        v->len = NGX_HTTP_MONETIZE_UUID_LEN;
        break;

    case 2:
        v->data = ctx->info.plan;
        v->len = ctx->info.plan_len;
        break;

    case 3:
        if (!ctx->balance_known) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%L", ctx->balance) - p;
        break;

    default: /* 4 */
        if (ctx->session) {
            v->data = (u_char *) "jwt";
            v->len = sizeof("jwt") - 1;
            break;
        }

        v->data = (u_char *) "api_key";
        v->len = sizeof("api_key") - 1;
    }

    return NGX_OK;
}


/* $monetize_jwt_claim_NAME: a claim of an identity provider's token */

static ngx_int_t
ngx_http_monetize_gate_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *var = (ngx_str_t *) data;

    ngx_str_t                      name, value;
    ngx_int_t                      rc;
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r->main);

    if (ctx == NULL || !ctx->authenticated || ctx->idp.claims == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    name.data = var->data + sizeof("monetize_jwt_claim_") - 1;
    name.len = var->len - (sizeof("monetize_jwt_claim_") - 1);

    rc = ngx_http_monetize_jwks_claim(r, &ctx->idp, &name, &value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = value.data;
    v->len = value.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_gate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_monetize_gate_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_monetize_gate_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_monetize_gate_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_gate_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    gmcf->request_id = NGX_CONF_UNSET;

    return gmcf;
}


static void *
ngx_http_monetize_gate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_gate_loc_conf_t));
    if (glcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     glcf->refund = { 0 };
     */

    glcf->enable = NGX_CONF_UNSET;
    glcf->cost = NGX_CONF_UNSET_PTR;
    glcf->refund_set = NGX_CONF_UNSET;
    glcf->deny_log_level = NGX_CONF_UNSET_UINT;
    glcf->rate_limit = NGX_CONF_UNSET_UINT;
    glcf->rate_limit_key = NGX_CONF_UNSET_UINT;
    glcf->fail_mode = NGX_CONF_UNSET_UINT;
    glcf->quota = NGX_CONF_UNSET;
    glcf->past_due = NGX_CONF_UNSET_UINT;

    return glcf;
}


static char *
ngx_http_monetize_gate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_monetize_gate_loc_conf_t *prev = parent;
    ngx_http_monetize_gate_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_monetize_main_conf_t  *mcf;

    /* the scope goes with the monetize_gate that names it */
    if (conf->enable == NGX_CONF_UNSET) {
        conf->scope = prev->scope;
    }

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->cost, prev->cost, NULL);
    ngx_conf_merge_uint_value(conf->deny_log_level, prev->deny_log_level,
                              NGX_LOG_INFO);
    ngx_conf_merge_uint_value(conf->rate_limit, prev->rate_limit,
                              NGX_HTTP_MONETIZE_LIMIT_OFF);
    ngx_conf_merge_uint_value(conf->rate_limit_key, prev->rate_limit_key,
                              NGX_HTTP_MONETIZE_LIMIT_BY_KEY);
    ngx_conf_merge_uint_value(conf->fail_mode, prev->fail_mode,
                              NGX_HTTP_MONETIZE_FAIL_LOCAL);
    ngx_conf_merge_value(conf->quota, prev->quota, 0);
    ngx_conf_merge_uint_value(conf->past_due, prev->past_due,
                              NGX_HTTP_MONETIZE_PAST_DUE_ALLOW);

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_monetize_module);

    if (conf->rate_limit == NGX_HTTP_MONETIZE_LIMIT_REDIS
        && mcf->redis == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"monetize_rate_limit redis\" needs "
                           "\"monetize_redis\" at http level");
        return NGX_CONF_ERROR;
    }

    /*
     * With "satisfy any", a call that another access check lets through
     * skips the gate: served with no key and no debit. The gate decides
     * whether a call is paid for, whatever else allows it; refused here
     * rather than run regardless, which would make "allow" mean nothing.
     * nginx merged its own configuration of this location first.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->enable && clcf->satisfy == NGX_HTTP_SATISFY_ANY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"monetize_gate on\" cannot be combined with "
                           "\"satisfy any\"%s%V%s: a call that another "
                           "access check allows would pass with no API key "
                           "and no debit",
                           clcf->name.len ? " in location \"" : "",
                           &clcf->name, clcf->name.len ? "\"" : "");
        return NGX_CONF_ERROR;
    }

    /* /health tells a load balancer: Redis down takes this node out */

    if (conf->enable && conf->rate_limit == NGX_HTTP_MONETIZE_LIMIT_REDIS
        && conf->fail_mode == NGX_HTTP_MONETIZE_FAIL_CLOSED)
    {
        mcf->redis_required = 1;
    }

    if (conf->refund_set == NGX_CONF_UNSET) {
        conf->refund_set = prev->refund_set;
        ngx_memcpy(conf->refund, prev->refund, sizeof(conf->refund));
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_monetize_gate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_gate_loc_conf_t *glcf = conf;

    u_char                         *p;
    ngx_str_t                      *value, s;
    ngx_http_monetize_main_conf_t  *mcf;

    if (glcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        glcf->enable = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2)
    {
        glcf->enable = 0;
        return NGX_CONF_OK;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_gate: invalid value \"%V\", give on "
                           "[scope=NAME] or off", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* scope=NAME: a name as POST /keys takes it */

    if (cf->args->nelts == 3) {
        s = value[2];

        if (s.len <= 6 || s.len > 6 + 64
            || ngx_strncmp(s.data, "scope=", 6) != 0)
        {
            goto invalid;
        }

        for (p = s.data + 6; p < s.data + s.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9')
                  || ngx_strlchr((u_char *) ":._/-",
                                 (u_char *) ":._/-" + 5, *p)))
            {
                goto invalid;
            }
        }

        glcf->scope.data = s.data + 6;
        glcf->scope.len = s.len - 6;
    }

    /* the core checks that its stores are there for us */
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_monetize_module);
    mcf->gate_used = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_gate: invalid parameter \"%V\", give "
                       "scope=NAME (1 to 64 letters, digits or \":._/-\")",
                       &value[2]);
    return NGX_CONF_ERROR;
}


/* monetize_refund_on off | 5xx | STATUS ... */

static char *
ngx_http_monetize_refund_on(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_gate_loc_conf_t *glcf = conf;

    ngx_int_t    status;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (glcf->refund_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    glcf->refund_set = 1;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "5xx") == 0) {
            for (status = 500; status < 600; status++) {
                glcf->refund[status / 64] |= (uint64_t) 1 << (status % 64);
            }

            continue;
        }

        status = ngx_atoi(value[i].data, value[i].len);

        if (status < 400 || status > 599) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_refund_on: invalid status \"%V\", "
                               "give \"off\", \"5xx\" or statuses from 400 "
                               "to 599", &value[i]);
            return NGX_CONF_ERROR;
        }

        glcf->refund[status / 64] |= (uint64_t) 1 << (status % 64);
    }

    return NGX_CONF_OK;
}


/* the enum slot, with an EMERG that names the directive (nginx's does not) */

static char *
ngx_http_monetize_past_due(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "allow") != 0
        && ngx_strcmp(value[1].data, "deny") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: invalid value \"%V\" (allow or deny)",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_enum_slot(cf, cmd, conf);
}


static ngx_int_t
ngx_http_monetize_gate_init(ngx_conf_t *cf)
{
    ngx_str_t                            request_id = ngx_string("request_id");
    ngx_array_t                         *handlers;
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_monetize_gate_main_conf_t  *gmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_monetize_gate_module);

    /* the debit's reference: "call:" and the request's id */
    gmcf->request_id = ngx_http_get_variable_index(cf, &request_id);
    if (gmcf->request_id == NGX_ERROR) {
        return NGX_ERROR;
    }

    /*
     * nginx runs a phase's handlers from the last registered to the first:
     * first in the array, the gate decides after allow/deny, auth_basic and
     * auth_request, so a call they refuse is never charged.
     */

    handlers = &cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers;

    h = ngx_array_push(handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memmove((ngx_http_handler_pt *) handlers->elts + 1, handlers->elts,
                (handlers->nelts - 1) * sizeof(ngx_http_handler_pt));

    *(ngx_http_handler_pt *) handlers->elts = ngx_http_monetize_gate_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_monetize_gate_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_monetize_gate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_monetize_gate_body_filter;

    return NGX_OK;
}
