
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_STRIPE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_STRIPE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_curl.h"
#include "ngx_http_monetize_jobs.h"


/* monetize_stripe: mcf->stripe, NULL without the directive */
typedef struct {
    ngx_str_t                          secret;       /* never logged */
    ngx_str_t                          api_base;     /* no trailing "/" */
    ngx_str_t                          api_version;  /* Stripe-Version */
    ngx_msec_t                         timeout;      /* one try */
    ngx_uint_t                         tries;        /* with backoff */
    ngx_str_t                          auth;         /* header lines,   */
    ngx_str_t                          version_header; /* NUL-ended    */
} ngx_http_monetize_stripe_conf_t;


typedef struct ngx_http_monetize_stripe_call_s
    ngx_http_monetize_stripe_call_t;

typedef void (*ngx_http_monetize_stripe_done_pt)(
    ngx_http_monetize_stripe_call_t *sc);


#define NGX_HTTP_MONETIZE_STRIPE_OK           0  /* 2xx */
#define NGX_HTTP_MONETIZE_STRIPE_REFUSED      1  /* a 4xx other than 409 and
                                                    429: not retried */
#define NGX_HTTP_MONETIZE_STRIPE_UNAVAILABLE  2  /* network, timeout, 409,
                                                    429, 5xx after all
                                                    tries */


/*
 * One call to Stripe's API, in its owner's pool (a request's, a job's):
 * when that pool goes first, the backoff timer and the transfer go with it
 * and the handler is never called. Otherwise the handler is called once,
 * from an event; json (Stripe's answer, or NULL) is freed with the pool.
 */

struct ngx_http_monetize_stripe_call_s {
    ngx_http_monetize_stripe_done_pt   handler;
    void                              *data;
    ngx_uint_t                         result;
    ngx_uint_t                         status;     /* last HTTP status, 0
                                                      without an answer */
    json_t                            *json;

    /* private */
    ngx_pool_t                        *pool;
    ngx_log_t                         *log;
    ngx_http_monetize_stripe_conf_t   *conf;
    ngx_uint_t                         method;
    ngx_str_t                          url;        /* NUL-terminated */
    ngx_str_t                          path;
    ngx_str_t                          idempotency_key;
    ngx_array_t                        form;       /* of u_char *, "n=v" */
    ngx_str_t                          body;
    ngx_uint_t                         tries;      /* made so far */
    ngx_msec_t                         retry_after;
    ngx_http_monetize_curl_t          *curl;
    u_char                            *answer;
    size_t                             answer_len;
    size_t                             answer_cap;
    ngx_event_t                        backoff;
    unsigned                           should_retry:2;  /* Stripe's
                                                      header: 1 yes, 2 no */
    unsigned                           done:1;
};


/*
 * method NGX_HTTP_GET or NGX_HTTP_POST; a POST needs an idempotency key
 * derived from what it is for (a retry never makes a second object); path
 * is "/v1/customers" etc.
 */
ngx_http_monetize_stripe_call_t *ngx_http_monetize_stripe_call(
    ngx_pool_t *pool, ngx_log_t *log, ngx_uint_t method, const char *path,
    ngx_str_t *idempotency_key);

/* form-encoded as Stripe expects: name "metadata[user_id]" etc. */
ngx_int_t ngx_http_monetize_stripe_param(ngx_http_monetize_stripe_call_t *sc,
    const char *name, ngx_str_t *value);

/* NGX_ERROR: not started, and the handler is not called */
ngx_int_t ngx_http_monetize_stripe_start(
    ngx_http_monetize_stripe_conf_t *conf,
    ngx_http_monetize_stripe_call_t *sc);

/* a NUL-terminated copy in the pool, for libcurl and libpq */
char *ngx_http_monetize_stripe_cstr(ngx_pool_t *pool, ngx_str_t *s);


/*
 * In ngx_http_monetize_stripe_customer.c: the user's one Stripe customer:
 * users.stripe_customer_id, else made (POST /v1/customers,
 * Idempotency-Key "customer-<user_id>", the key of the registration's job
 * too, so both paths make the same one customer)
 * and stored once. handler(data, rc, &customer_id): rc NGX_OK; NGX_ERROR
 * (Stripe or PostgreSQL unavailable, or Stripe refused the key) or
 * NGX_DECLINED (Stripe refused the customer with a 4xx, or the account is
 * gone), both 503 for a request; called once, from an event, unless the
 * pool went first. NGX_ERROR returned: not started, the handler is not
 * called.
 */
ngx_int_t ngx_http_monetize_stripe_customer(
    ngx_http_monetize_stripe_conf_t *conf, ngx_http_monetize_pg_pool_t *pg,
    ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *user_id,
    void (*handler)(void *data, ngx_int_t rc, ngx_str_t *customer_id),
    void *data);

/* the "stripe_customer" job of the jobs outbox */
void ngx_http_monetize_stripe_customer_job(ngx_http_monetize_job_t *job);

/* the directive monetize_stripe, setting mcf->stripe */
char *ngx_http_monetize_stripe_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_MONETIZE_STRIPE_H_INCLUDED_ */
