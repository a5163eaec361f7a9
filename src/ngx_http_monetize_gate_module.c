
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_json.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_keystore.h"


/*
 * The gate: in the access phase, a call passes only with a valid API key
 * and enough credits, and its cost is debited, durably, before it goes on.
 *
 *     credential -> cost -> key (cache, else PostgreSQL) -> debit (batched)
 *
 * Each step that waits returns NGX_AGAIN; its answer resumes the phases,
 * and the handler, called again, returns the decision. A call is decided
 * once: an internal redirect (error_page, try_files) finds the decision
 * again and charges nothing more. In the log phase, a call whose upstream
 * failed with a status of monetize_refund_on is refunded.
 */


#define NGX_HTTP_MONETIZE_COST_MAX  1000000000


typedef struct {
    ngx_flag_t                       enable;
    ngx_http_complex_value_t        *cost;          /* NULL: 1 credit */
    uint64_t                         refund[10];    /* statuses 0..639 */
    ngx_flag_t                       refund_set;
    ngx_uint_t                       deny_log_level;
} ngx_http_monetize_gate_loc_conf_t;


typedef struct {
    ngx_int_t                        request_id;    /* variable index */
} ngx_http_monetize_gate_main_conf_t;


typedef enum {
    NGX_HTTP_MONETIZE_GATE_FINDING = 1,
    NGX_HTTP_MONETIZE_GATE_DEBITING,
    NGX_HTTP_MONETIZE_GATE_DECIDED
} ngx_http_monetize_gate_state_e;


typedef struct {
    ngx_http_monetize_gate_state_e   state;
    ngx_int_t                        rc;            /* once decided */
    u_char                           hash[NGX_HTTP_MONETIZE_HASH_SIZE];
    ngx_http_monetize_key_info_t     info;
    int64_t                          cost;
    int64_t                          balance;
    ngx_str_t                        reference;
    ngx_http_monetize_debit_t       *debit;
    unsigned                         waited:1;      /* resume the phases */
    unsigned                         authenticated:1;
    unsigned                         balance_known:1;
    unsigned                         debited:1;
    unsigned                         refunded:1;
} ngx_http_monetize_gate_ctx_t;


static ngx_http_monetize_gate_ctx_t *ngx_http_monetize_gate_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_monetize_gate_start(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_gate_cost(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_found(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_monetize_gate_check_key(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_debited(ngx_http_monetize_debit_t *d);
static void ngx_http_monetize_gate_decide(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_monetize_gate_resume(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_gate_deny(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_cleanup(void *data);

static ngx_int_t ngx_http_monetize_gate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_gate_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_gate_variable(ngx_http_request_t *r,
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
static ngx_int_t ngx_http_monetize_gate_init(ngx_conf_t *cf);


/* the denials of the gate: what they answer */

typedef enum {
    NGX_HTTP_MONETIZE_DENY_MISSING = 1,
    NGX_HTTP_MONETIZE_DENY_MALFORMED,
    NGX_HTTP_MONETIZE_DENY_AMBIGUOUS,
    NGX_HTTP_MONETIZE_DENY_NOT_OURS,
    NGX_HTTP_MONETIZE_DENY_UNKNOWN,
    NGX_HTTP_MONETIZE_DENY_REVOKED,
    NGX_HTTP_MONETIZE_DENY_EXPIRED,
    NGX_HTTP_MONETIZE_DENY_SUSPENDED,
    NGX_HTTP_MONETIZE_DENY_BAD_COST,
    NGX_HTTP_MONETIZE_DENY_CREDITS,
    NGX_HTTP_MONETIZE_DENY_UNAVAILABLE,
    NGX_HTTP_MONETIZE_DENY_INTERNAL
} ngx_http_monetize_deny_e;


typedef struct {
    ngx_uint_t                       status;
    const char                      *code;
    const char                      *message;
} ngx_http_monetize_denial_t;


static ngx_http_monetize_denial_t  ngx_http_monetize_denials[] = {
    { 0, NULL, NULL },
    { NGX_HTTP_UNAUTHORIZED, "missing_credentials",
      "send an API key as \"Authorization: Bearer <key>\" or "
      "\"X-API-Key: <key>\"" },
    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
      "the credential is malformed" },
    { NGX_HTTP_BAD_REQUEST, "invalid_request",
      "the credential is ambiguous" },
    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
      "this is not an API key of this service" },
    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key", "no such API key" },
    { NGX_HTTP_FORBIDDEN, "key_revoked", "this API key was revoked" },
    { NGX_HTTP_FORBIDDEN, "key_expired", "this API key has expired" },
    { NGX_HTTP_FORBIDDEN, "account_suspended", "this account is suspended" },
    { NGX_HTTP_BAD_REQUEST, "invalid_request",
      "the cost of this call is not a whole number of credits" },
    { NGX_HTTP_MONETIZE_PAYMENT_REQUIRED, "insufficient_credits", NULL },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "backend_unavailable",
      "postgres is unavailable; try again" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "the server failed; the operator will find the cause in its log" }
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
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
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

    { ngx_string("monetize_deny_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_monetize_gate_loc_conf_t, deny_log_level),
      &ngx_http_monetize_log_levels },

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

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_int_t
ngx_http_monetize_gate_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_monetize_gate_ctx_t       *ctx;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (!glcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_gate_ctx_t));
        cln = ngx_pool_cleanup_add(r->pool, 0);

        if (ctx == NULL || cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_monetize_gate_cleanup;
        cln->data = ctx;

        ngx_http_set_ctx(r, ctx, ngx_http_monetize_gate_module);

        ngx_http_monetize_gate_start(r, ctx);
    }

    if (ctx->state != NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ctx->waited = 1;
        return NGX_AGAIN;
    }

    if (ctx->rc != NGX_OK) {
        return ngx_http_monetize_gate_deny(r, ctx);
    }

    return NGX_OK;
}


/*
 * An internal redirect clears module contexts; the pool cleanup that owns
 * ours still holds it, so a redirected call keeps its one decision.
 */

static ngx_http_monetize_gate_ctx_t *
ngx_http_monetize_gate_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_gate_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_monetize_gate_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_monetize_gate_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_monetize_gate_start(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_str_t                        credential;
    const char                      *why;
    ngx_int_t                        rc;
    ngx_http_monetize_main_conf_t   *mcf;
    ngx_http_monetize_credential_e   cred;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    cred = ngx_http_monetize_credential(r, &credential, &why);

    switch (cred) {

    case NGX_HTTP_MONETIZE_CREDENTIAL_OK:
        break;

    case NGX_HTTP_MONETIZE_CREDENTIAL_MISSING:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_MISSING);
        return;

    case NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS:
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_AMBIGUOUS);
        return;

    default: /* NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED */
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_MALFORMED);
        return;
    }

    if (!ngx_http_monetize_key_is_well_formed(&mcf->key_prefix, &credential))
    {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_NOT_OURS);
        return;
    }

    rc = ngx_http_monetize_gate_cost(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx, rc);
        return;
    }

    if (ngx_http_monetize_key_hash_raw(&mcf->key_secret, &credential,
                                       ctx->hash)
        != NGX_OK)
    {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    ctx->state = NGX_HTTP_MONETIZE_GATE_FINDING;

    rc = ngx_http_monetize_keystore_find(r, ctx->hash, &ctx->info,
                                         ngx_http_monetize_gate_found);

    if (rc == NGX_OK) {
        ngx_http_monetize_gate_check_key(r, ctx);

    } else if (rc == NGX_ERROR) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
    }
}


/* monetize_cost: a whole number of credits, from 0 to 10^9 */

static ngx_int_t
ngx_http_monetize_gate_cost(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_int_t                           n;
    ngx_str_t                           value;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (glcf->cost == NULL) {
        ctx->cost = 1;
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, glcf->cost, &value) != NGX_OK) {
        return NGX_HTTP_MONETIZE_DENY_INTERNAL;
    }

    n = ngx_atoi(value.data, value.len);

    if (n == NGX_ERROR || n > NGX_HTTP_MONETIZE_COST_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: monetize_cost is \"%V\", not a whole number "
                      "from 0 to %d; nothing is debited", &value,
                      NGX_HTTP_MONETIZE_COST_MAX);
        return NGX_HTTP_MONETIZE_DENY_BAD_COST;
    }

    ctx->cost = n;

    return NGX_OK;
}


static void
ngx_http_monetize_gate_found(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_UNAVAILABLE);
        ngx_http_monetize_gate_resume(r, ctx);
        return;
    }

    ngx_http_monetize_gate_check_key(r, ctx);

    if (ctx->state == NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ngx_http_monetize_gate_resume(r, ctx);
    }
}


static void
ngx_http_monetize_gate_check_key(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    u_char                         *p;
    ngx_http_variable_value_t      *vv;
    ngx_http_monetize_debit_t      *d;
    ngx_http_monetize_key_info_t   *info;
    ngx_http_monetize_main_conf_t  *mcf;
    ngx_http_monetize_gate_main_conf_t  *gmcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_gate_module);

    info = &ctx->info;

    if (!info->found) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_UNKNOWN);
        return;
    }

    if (info->revoked) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_REVOKED);
        return;
    }

    if (info->expires_at && info->expires_at <= ngx_time()) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_EXPIRED);
        return;
    }

    if (info->suspended) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_SUSPENDED);
        return;
    }

    ctx->authenticated = 1;
    ctx->balance = info->balance;

    if (ctx->cost == 0) {
        /* free: admitted without a debit; the balance is the last known */
        ctx->balance_known = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        return;
    }

    vv = ngx_http_get_indexed_variable(r, gmcf->request_id);

    d = ngx_http_monetize_debit_create(r->pool);
    p = ngx_pnalloc(r->pool, sizeof("call:") - 1 + (vv ? vv->len : 0));

    if (vv == NULL || vv->not_found || d == NULL || p == NULL) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    ctx->reference.data = p;
    p = ngx_cpymem(p, "call:", sizeof("call:") - 1);
    p = ngx_cpymem(p, vv->data, vv->len);
    ctx->reference.len = p - ctx->reference.data;

    d->user_id.data = info->user_id;
    d->user_id.len = NGX_HTTP_MONETIZE_UUID_LEN;
    d->key_id.data = info->key_id;
    d->key_id.len = NGX_HTTP_MONETIZE_UUID_LEN;
    d->reference = ctx->reference;
    d->cost = ctx->cost;
    d->handler = ngx_http_monetize_gate_debited;
    d->data = r;

    ctx->debit = d;
    ctx->state = NGX_HTTP_MONETIZE_GATE_DEBITING;

    ngx_http_monetize_debit(mcf->ledger, d);
}


static void
ngx_http_monetize_gate_debited(ngx_http_monetize_debit_t *d)
{
    ngx_http_request_t             *r;
    ngx_http_monetize_gate_ctx_t   *ctx;
    ngx_http_monetize_main_conf_t  *mcf;

    r = d->data;
    ctx = ngx_http_monetize_gate_get_ctx(r);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    switch (d->status) {

    case NGX_HTTP_MONETIZE_DEBIT_ADMITTED:
        ctx->debited = 1;
        ctx->balance = d->balance;
        ctx->balance_known = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_REFUSED:
        ctx->balance = d->balance;
        ctx->balance_known = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_CREDITS);
        break;

    default: /* NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE */
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_UNAVAILABLE);
    }

    if (ctx->balance_known && mcf->cache) {
        ngx_http_monetize_cache_set_balance(mcf->cache, ctx->hash,
                                            ctx->balance);
    }

    ngx_http_monetize_gate_resume(r, ctx);
}


static void
ngx_http_monetize_gate_decide(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_core_loc_conf_t           *clcf;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    ctx->state = NGX_HTTP_MONETIZE_GATE_DECIDED;
    ctx->rc = rc;

    if (rc == NGX_OK) {
        mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        ngx_http_monetize_meter_count(mcf->meter, ctx->info.user_id,
                                      ctx->info.key_id, &clcf->name,
                                      ctx->debited ? ctx->cost : 0);
        return;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (rc == NGX_HTTP_MONETIZE_DENY_CREDITS) {
        ngx_log_error(glcf->deny_log_level, r->connection->log, 0,
                      "monetize: denied: insufficient_credits (cost %L, "
                      "balance %L)", ctx->cost, ctx->balance);
        return;
    }

    ngx_log_error(glcf->deny_log_level, r->connection->log, 0,
                  "monetize: denied: %s", ngx_http_monetize_denials[rc].code);
}


/* An answer came from an event: run the phases again from the gate. */

static void
ngx_http_monetize_gate_resume(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_connection_t  *c;

    if (!ctx->waited) {
        return;
    }

    c = r->connection;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/*
 * The gate answers its denials itself, in the contract's JSON, as nginx's
 * access phase does with its own error pages.
 */

static ngx_int_t
ngx_http_monetize_gate_deny(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_str_t                    retry = ngx_string("1");
    ngx_http_monetize_denial_t  *denial;

    denial = &ngx_http_monetize_denials[ctx->rc];

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (ctx->rc == NGX_HTTP_MONETIZE_DENY_CREDITS) {
        rc = ngx_http_monetize_send_insufficient(r, ctx->cost, ctx->balance);

    } else {
        if (denial->status == NGX_HTTP_SERVICE_UNAVAILABLE
            && ngx_http_monetize_set_header(r, "Retry-After", &retry)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_monetize_send_error(r, denial->status, denial->code,
                                          "%s", denial->message);
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static void
ngx_http_monetize_gate_cleanup(void *data)
{
    /* the context is in the request's pool; this only marks ownership */
}


static ngx_int_t
ngx_http_monetize_gate_header_filter(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_str_t                      value;
    ngx_http_monetize_gate_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (ctx == NULL || !ctx->balance_known) {
        return ngx_http_next_header_filter(r);
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%L", ctx->balance) - p;

    if (ngx_http_monetize_set_header(r, "X-Credits-Remaining", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* "Charge only for what was served": refund what the upstream failed. */

static ngx_int_t
ngx_http_monetize_gate_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                          status;
    ngx_http_monetize_gate_ctx_t       *ctx;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

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
        v->data = (u_char *) "api_key";
        v->len = sizeof("api_key") - 1;
    }

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

    return glcf;
}


static char *
ngx_http_monetize_gate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_monetize_gate_loc_conf_t *prev = parent;
    ngx_http_monetize_gate_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->cost, prev->cost, NULL);
    ngx_conf_merge_uint_value(conf->deny_log_level, prev->deny_log_level,
                              NGX_LOG_INFO);

    if (conf->refund_set == NGX_CONF_UNSET) {
        conf->refund_set = prev->refund_set;
        ngx_memcpy(conf->refund, prev->refund, sizeof(conf->refund));
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_monetize_gate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                           *rv;
    ngx_http_monetize_main_conf_t  *mcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK
        && ((ngx_http_monetize_gate_loc_conf_t *) conf)->enable)
    {
        /* the core checks that its stores are there for us */
        mcf = ngx_http_conf_get_module_main_conf(cf,
                                                 ngx_http_monetize_module);
        mcf->gate_used = 1;
    }

    return rv;
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


static ngx_int_t
ngx_http_monetize_gate_init(ngx_conf_t *cf)
{
    ngx_str_t                            request_id = ngx_string("request_id");
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

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_monetize_gate_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_monetize_gate_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_monetize_gate_header_filter;

    return NGX_OK;
}
