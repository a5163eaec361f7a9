
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#if !(NGX_THREADS)
#error nginx-monetize hashes passwords in a thread pool: --with-threads
#endif

#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_shm.h"
#include "ngx_http_monetize_cache.h"
#include "ngx_http_monetize_ledger.h"
#include "ngx_http_monetize_meter.h"
#include "ngx_http_monetize_redis.h"
#include "ngx_http_monetize_mail.h"
#include "ngx_http_monetize_portal.h"
#include "ngx_http_monetize_stripe.h"
#include "ngx_http_monetize_sts.h"


typedef struct {
    ngx_http_monetize_pg_pool_t  *pg;
    ngx_http_monetize_cache_t    *cache;
    ngx_http_monetize_shm_t      *limits;         /* node-local limits */
    int64_t                       api_limit;      /* us between calls */
    ngx_uint_t                    api_limit_burst;
    ngx_http_monetize_ledger_t   *ledger;
    ngx_http_monetize_meter_t    *meter;
    ngx_http_monetize_redis_t    *redis;
    ngx_str_t                     key_secret;
    ngx_str_t                     key_prefix;
    ngx_int_t                     signup_credits;
    ngx_int_t                     bcrypt_cost;
    ngx_str_t                     thread_pool_name;
    ngx_thread_pool_t            *thread_pool;
    size_t                        max_body_size;
    ngx_http_complex_value_t     *top_up_url;
    ngx_flag_t                    api_used;
    ngx_flag_t                    gate_used;      /* set by the gate */
    ngx_flag_t                    redis_required; /* set by the gate: a
                                                     location refuses calls
                                                     without Redis */
    ngx_uint_t                    plans_version;  /* per worker, see plans */
    ngx_str_t                     jwt_secret;     /* sessions: see jwt.c */
    time_t                        jwt_access_ttl;
    time_t                        jwt_refresh_ttl;
    ngx_flag_t                    require_verified_email;
    ngx_http_monetize_smtp_t     *smtp;           /* mail, see outbox */
    ngx_str_t                     public_url;     /* the links' base */
    ngx_str_t                     portal_url;     /* the portal's links */
    ngx_http_monetize_stripe_conf_t  *stripe;     /* NULL: no Stripe */
    ngx_int_t                     low_balance;    /* alert below; UNSET:
                                                     none (see alerts) */
    struct ngx_http_monetize_notify_conf_s  *notify;  /* operator webhook */
    ngx_array_t                  *webhook_secrets; /* of ngx_str_t; NULL:
                                                      no webhooks */
    time_t                        webhook_tolerance;
    ngx_msec_t                    overage_interval; /* between an account's
                                                     meter events */
    ngx_str_t                     billing_return_url;  /* see billing.c */
    ngx_http_monetize_sts_conf_t *sts;            /* NULL: no AWS STS */
    struct ngx_http_monetize_download_conf_s  *download;  /* download.c */
    ngx_array_t                  *jwks;           /* of ..._jwks_conf_t;
                                                     NULL: none (jwks.c) */
    ngx_flag_t                    jwt_autoprovision;
} ngx_http_monetize_main_conf_t;


typedef struct {
    ngx_array_t                  *cors_origins;   /* of ngx_str_t; NULL:
                                                     off */
    ngx_http_monetize_portal_t   *portal;         /* monetize_portal */
    ngx_uint_t                    session_cookie; /* see session_cookie.c */
    ngx_flag_t                    download;       /* see download.c */
    ngx_http_complex_value_t     *download_product;
} ngx_http_monetize_loc_conf_t;


/* the core module's directives: ngx_http_monetize_conf.c */
char *ngx_http_monetize_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_key_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_limits(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_set_api_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_monetize_smtp(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

char *ngx_http_monetize_conf_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *out);
char *ngx_http_monetize_conf_set_num(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


extern ngx_module_t  ngx_http_monetize_module;


#endif /* _NGX_HTTP_MONETIZE_H_INCLUDED_ */
