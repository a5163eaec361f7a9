
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_webhooks.h"
#include "ngx_http_monetize_jwt.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_keystore.h"
#include "ngx_http_monetize_outbox.h"
#include "ngx_http_monetize_portal_api.h"
#include "ngx_http_monetize_jobs.h"
#include "ngx_http_monetize_alerts.h"
#include "ngx_http_monetize_notify.h"
#include "ngx_http_monetize_overage.h"
#include "ngx_http_monetize_download.h"


/*
 * The core module: http-level configuration of the stores and secrets, the
 * monetize_api content handler, and each worker's store connections.
 */


static ngx_int_t ngx_http_monetize_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_monetize_host_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_monetize_init_process(ngx_cycle_t *cycle);
static void ngx_http_monetize_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_monetize_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_monetize_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_monetize_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_monetize_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_conf_num_bounds_t  ngx_http_monetize_signup_credits_bounds = {
    NULL, 0, 1000000000
};

static ngx_conf_num_bounds_t  ngx_http_monetize_bcrypt_cost_bounds = {
    NULL, 4, 31
};

static ngx_conf_num_bounds_t  ngx_http_monetize_low_balance_bounds = {
    NULL, 1, NGX_MAX_INT_T_VALUE
};


static ngx_command_t  ngx_http_monetize_commands[] = {

    { ngx_string("monetize_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_key_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_key_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_monetize_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_limits"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_limits,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_api_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_monetize_set_api_limit,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, key_prefix),
      NULL },

    { ngx_string("monetize_signup_credits"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_conf_set_num,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, signup_credits),
      &ngx_http_monetize_signup_credits_bounds },

    { ngx_string("monetize_bcrypt_cost"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_conf_set_num,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, bcrypt_cost),
      &ngx_http_monetize_bcrypt_cost_bounds },

    { ngx_string("monetize_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("monetize_api_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, max_body_size),
      NULL },

    { ngx_string("monetize_jwt_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_jwt_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_jwks"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_monetize_jwks_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_jwt_autoprovision"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, jwt_autoprovision),
      NULL },

    { ngx_string("monetize_jwt_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_monetize_jwt_ttl,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_require_verified_email"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, require_verified_email),
      NULL },

    { ngx_string("monetize_top_up_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, top_up_url),
      NULL },

    { ngx_string("monetize_smtp"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_smtp,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_stripe"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_stripe_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_aws_sts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_sts_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_overage_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_overage_interval,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_public_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_low_balance"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_conf_set_num,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, low_balance),
      &ngx_http_monetize_low_balance_bounds },

    { ngx_string("monetize_notify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_notify_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_stripe_webhook_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_stripe_webhook_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_stripe_tolerance"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_monetize_main_conf_t, webhook_tolerance),
      NULL },

    { ngx_string("monetize_billing_return_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_billing_return_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_download_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_download_ttl,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_download_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_download_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_monetize_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_portal"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_monetize_portal,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_cors_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_session_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_monetize_session_cookie_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_download"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_monetize_download,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("monetize_portal_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_monetize_portal_url_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_variable_t  ngx_http_monetize_host_var =
    { ngx_string("monetize_host"), NULL, ngx_http_monetize_host_variable, 0,
      0, 0 };


static ngx_http_module_t  ngx_http_monetize_module_ctx = {
    ngx_http_monetize_add_variables,       /* preconfiguration */
    ngx_http_monetize_download_init,       /* postconfiguration */

    ngx_http_monetize_create_main_conf,    /* create main configuration */
    ngx_http_monetize_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_monetize_create_loc_conf,     /* create location configuration */
    ngx_http_monetize_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_monetize_module = {
    NGX_MODULE_V1,
    &ngx_http_monetize_module_ctx,         /* module context */
    ngx_http_monetize_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_monetize_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_monetize_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * $monetize_host: the host and port the client called, as its Host header
 * says; without one (HTTP/1.0), the server's name and the port the call
 * came to, unless it is the scheme's own. $host drops the port.
 */

static ngx_int_t
ngx_http_monetize_host_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    ngx_str_t                  name;
    ngx_uint_t                 port, scheme_port;
    ngx_http_core_srv_conf_t  *cscf;

    if (r->headers_in.host && r->headers_in.host->value.len) {
        v->data = r->headers_in.host->value.data;
        v->len = r->headers_in.host->value.len;
        v->valid = 1;
        v->no_cacheable = 0;
        v->not_found = 0;
        return NGX_OK;
    }

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
    name = cscf->server_name;

    if (ngx_connection_local_sockaddr(r->connection, NULL, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    port = ngx_inet_get_port(r->connection->local_sockaddr);
    scheme_port = 80;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        scheme_port = 443;
    }
#endif

    p = ngx_pnalloc(r->pool, name.len + sizeof(":65535") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    p = ngx_cpymem(p, name.data, name.len);

    if (port != scheme_port) {
        p = ngx_sprintf(p, ":%ui", port);
    }

    v->len = p - v->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_init_process(ngx_cycle_t *cycle)
{
    ngx_http_monetize_main_conf_t  *mcf;

    /* not in the cache manager and loader, which call us too */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_monetize_module);

    if (mcf) {
        ngx_http_monetize_keystore_listen(mcf);
    }

    if (mcf && mcf->redis) {
        ngx_http_monetize_redis_init_process(mcf->redis);
    }

    if (mcf && mcf->smtp
        && ngx_http_monetize_outbox_init_process(cycle, mcf->pg, mcf->smtp)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf && mcf->pg
        && ngx_http_monetize_jobs_init_process(cycle, mcf->pg) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf && mcf->pg && (mcf->smtp || mcf->notify)
        && ngx_http_monetize_alerts_init_process(cycle, mcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_monetize_overage_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mcf && ngx_http_monetize_jwks_init_process(cycle, mcf->jwks)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_monetize_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_monetize_module);

    if (mcf && mcf->ledger) {
        ngx_http_monetize_ledger_exit(mcf->ledger);
        ngx_http_monetize_meter_exit(mcf->meter);
    }

    if (mcf && mcf->pg) {
        ngx_http_monetize_pg_pool_close(mcf->pg);
    }

    if (mcf && mcf->redis) {
        ngx_http_monetize_redis_exit_process(mcf->redis);
    }

    ngx_http_monetize_outbox_exit();
    ngx_http_monetize_jobs_exit();
    ngx_http_monetize_alerts_exit();
    ngx_http_monetize_overage_exit();
    ngx_http_monetize_download_log_exit();
    ngx_http_monetize_jwks_exit_process();
    ngx_http_monetize_curl_exit();
}


static ngx_int_t
ngx_http_monetize_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    v = &ngx_http_monetize_host_var;

    var = ngx_http_add_variable(cf, &v->name, v->flags);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = v->get_handler;
    var->data = v->data;

    return ngx_http_monetize_download_add_variables(cf);
}


static void *
ngx_http_monetize_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->pg = NULL;
     *     mcf->key_secret = { 0, NULL };
     *     mcf->key_prefix = { 0, NULL };
     *     mcf->thread_pool_name = { 0, NULL };
     *     mcf->thread_pool = NULL;
     *     mcf->top_up_url = NULL;
     *     mcf->api_used = 0;
     *     mcf->gate_used = 0;
     *     mcf->redis_required = 0;
     */

    mcf->signup_credits = NGX_CONF_UNSET;
    mcf->api_limit = NGX_CONF_UNSET;
    mcf->bcrypt_cost = NGX_CONF_UNSET;
    mcf->max_body_size = NGX_CONF_UNSET_SIZE;
    mcf->jwt_access_ttl = NGX_CONF_UNSET;
    mcf->jwt_refresh_ttl = NGX_CONF_UNSET;
    mcf->require_verified_email = NGX_CONF_UNSET;
    mcf->jwt_autoprovision = NGX_CONF_UNSET;
    mcf->low_balance = NGX_CONF_UNSET;
    mcf->webhook_tolerance = NGX_CONF_UNSET;
    mcf->overage_interval = NGX_CONF_UNSET_MSEC;

    return mcf;
}


static char *
ngx_http_monetize_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    u_char                            *p, *last;
    const char                        *user;
    ngx_str_t                          top_up, name;
    ngx_http_compile_complex_value_t   ccv;

    ngx_str_set(&top_up, "$scheme://$monetize_host/v1/purchase_credits");

    ngx_conf_init_value(mcf->signup_credits, 0);
    ngx_conf_init_value(mcf->bcrypt_cost, 12);
    ngx_conf_init_size_value(mcf->max_body_size, 16384);
    ngx_conf_init_msec_value(mcf->overage_interval, 60000);
    ngx_http_monetize_jwt_init_conf(mcf);
    ngx_conf_init_value(mcf->jwt_autoprovision, 0);
    ngx_conf_init_value(mcf->webhook_tolerance,
                        NGX_HTTP_MONETIZE_WEBHOOK_TOLERANCE);

    if (mcf->key_prefix.data == NULL) {
        ngx_str_set(&mcf->key_prefix, "sk_live_");
    }

    if (mcf->thread_pool_name.data == NULL) {
        ngx_str_set(&mcf->thread_pool_name, "default");
    }

    if (mcf->top_up_url == NULL) {
        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &top_up;
        ccv.complex_value = ngx_palloc(cf->pool,
                                       sizeof(ngx_http_complex_value_t));
        if (ccv.complex_value == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        mcf->top_up_url = ccv.complex_value;
    }

    last = mcf->key_prefix.data + mcf->key_prefix.len;

    for (p = mcf->key_prefix.data; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '-'))
        {
            break;
        }
    }

    if (mcf->key_prefix.len == 0 || mcf->key_prefix.len > 32 || p != last) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_key_prefix: \"%V\" must be 1 to 32 "
                           "letters, digits, \"_\" or \"-\"",
                           &mcf->key_prefix);
        return NGX_CONF_ERROR;
    }

    if (mcf->pg) {
        mcf->ledger = ngx_http_monetize_ledger_create(cf, mcf->pg);
        mcf->meter = ngx_http_monetize_meter_create(cf, mcf->pg);

        if (mcf->ledger == NULL || mcf->meter == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (mcf->smtp && (mcf->pg == NULL || mcf->public_url.data == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_smtp needs \"monetize_postgres\" and "
                           "\"monetize_public_url\" at http level");
        return NGX_CONF_ERROR;
    }

    if (mcf->stripe && mcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_stripe needs \"monetize_postgres\" at "
                           "http level");
        return NGX_CONF_ERROR;
    }

    if (mcf->sts && mcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_aws_sts needs \"monetize_postgres\" at "
                           "http level");
        return NGX_CONF_ERROR;
    }

    if (mcf->notify && mcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_notify needs \"monetize_postgres\" at "
                           "http level");
        return NGX_CONF_ERROR;
    }

    if (mcf->low_balance != NGX_CONF_UNSET
        && (mcf->pg == NULL || (mcf->smtp == NULL && mcf->notify == NULL)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_low_balance %i needs "
                           "\"monetize_postgres\", and \"monetize_smtp\" or "
                           "\"monetize_notify\" to send its alerts",
                           mcf->low_balance);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_monetize_billing_init_conf(cf, mcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_monetize_download_init_conf(cf, mcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (mcf->cache && mcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_cache needs \"monetize_postgres\" at "
                           "http level");
        return NGX_CONF_ERROR;
    }

    if (!mcf->api_used && !mcf->gate_used) {
        return NGX_CONF_OK;
    }

    /* 10 calls a minute a client address, 5 at once, on public endpoints */
    if (mcf->api_limit == NGX_CONF_UNSET) {
        mcf->api_limit = 6000000;
        mcf->api_limit_burst = 5;
    }

    if (mcf->limits == NULL) {
        ngx_str_set(&name, "monetize_limits");

        mcf->limits = ngx_http_monetize_shm_add(cf, &name, 1024 * 1024,
                                                sizeof(int64_t),
                                                "monetize_limits");
        if (mcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    user = mcf->api_used ? "monetize_api" : "monetize_gate";

    if (mcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s needs \"monetize_postgres\" at http level",
                           user);
        return NGX_CONF_ERROR;
    }

    if (mcf->key_secret.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s needs \"monetize_key_secret\" at http level",
                           user);
        return NGX_CONF_ERROR;
    }

    /* bcrypt runs there; "default" is created if not declared */

    mcf->thread_pool = ngx_thread_pool_add(cf, &mcf->thread_pool_name);
    if (mcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_monetize_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_monetize_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->cors_origins = NGX_CONF_UNSET_PTR;
    lcf->session_cookie = NGX_CONF_UNSET_UINT;
    lcf->download = NGX_CONF_UNSET;
    lcf->download_product = NGX_CONF_UNSET_PTR;

    return lcf;
}


static char *
ngx_http_monetize_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_monetize_loc_conf_t *prev = parent;
    ngx_http_monetize_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);
    ngx_conf_merge_uint_value(conf->session_cookie, prev->session_cookie,
                              NGX_HTTP_MONETIZE_SESSION_COOKIE_OFF);

    return ngx_http_monetize_download_merge_loc_conf(cf, prev, conf);
}
