
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_overage.h"
#include "ngx_http_monetize_stripe.h"


/*
 * Overage reported to Stripe's meters. The counts are the gate's (sql/015:
 * the debit counts each call past the quota of a plan that bills it); a
 * sweep in each worker turns what is unreported into "meter_event" jobs,
 * at most one per account and period each monetize_overage_interval, in
 * the transaction that records it as reported; each job then sends its
 * one meter event until Stripe has it. Its identifier is also its
 * Idempotency-Key: a try whose answer was lost is answered the first
 * answer, and a try after Stripe forgot the key (24 hours) is refused as
 * a duplicate identifier, which means Stripe has it too.
 *
 * An account with no Stripe customer yet gets one first (the registration's
 * job may not have run, or Stripe was down then): the customer function
 * makes it with the same idempotency key as that job, so both make one.
 */


#define NGX_HTTP_MONETIZE_OVERAGE_BATCH     100     /* rows a sweep takes */
#define NGX_HTTP_MONETIZE_OVERAGE_TICK_MIN  250


typedef struct {
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_event_t                        timer;
    ngx_msec_t                         tick;
    ngx_log_t                         *log;
    u_char                             seconds[NGX_INT_T_LEN + 1];
    u_char                             batch[NGX_INT_T_LEN + 1];
    unsigned                           busy:1;
} ngx_http_monetize_overage_t;


typedef struct {
    ngx_str_t                          identifier;
    ngx_str_t                          event_name;
    ngx_str_t                          value;
    ngx_str_t                          timestamp;
} ngx_http_monetize_meter_event_t;


static void ngx_http_monetize_overage_sweep(ngx_event_t *ev);
static void ngx_http_monetize_overage_swept(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_overage_customer(void *data, ngx_int_t rc,
    ngx_str_t *customer_id);
static void ngx_http_monetize_overage_sent(
    ngx_http_monetize_stripe_call_t *sc);
static ngx_uint_t ngx_http_monetize_overage_duplicate(
    ngx_http_monetize_stripe_call_t *sc);
static ngx_int_t ngx_http_monetize_overage_field(ngx_pool_t *pool,
    json_t *payload, const char *name, ngx_str_t *out);


static ngx_http_monetize_overage_t  *ngx_http_monetize_overage;


ngx_int_t
ngx_http_monetize_overage_init_process(ngx_cycle_t *cycle)
{
    ngx_http_monetize_overage_t    *ov;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_monetize_module);

    if (mcf == NULL || mcf->stripe == NULL || mcf->pg == NULL) {
        return NGX_OK;
    }

    ov = ngx_pcalloc(cycle->pool, sizeof(ngx_http_monetize_overage_t));
    if (ov == NULL) {
        return NGX_ERROR;
    }

    ov->pg = mcf->pg;
    ov->log = cycle->log;

    /*
     * The database says when an account is due (its last report an
     * interval ago); the sweep only looks often enough for that to be
     * late by a fraction of the interval.
     */

    ov->tick = ngx_max(mcf->overage_interval / 4,
                       NGX_HTTP_MONETIZE_OVERAGE_TICK_MIN);

    ngx_sprintf(ov->seconds, "%M%Z", (mcf->overage_interval + 999) / 1000);
    ngx_sprintf(ov->batch, "%d%Z", NGX_HTTP_MONETIZE_OVERAGE_BATCH);

    /* it holds no worker that is shutting down */

    ov->timer.handler = ngx_http_monetize_overage_sweep;
    ov->timer.data = ov;
    ov->timer.log = cycle->log;
    ov->timer.cancelable = 1;

    /* the workers' sweeps apart */
    ngx_add_timer(&ov->timer, 100 + (ngx_msec_t) ngx_random() % ov->tick);

    ngx_http_monetize_overage = ov;

    return NGX_OK;
}


void
ngx_http_monetize_overage_exit(void)
{
    ngx_http_monetize_overage_t  *ov;

    ov = ngx_http_monetize_overage;

    if (ov == NULL) {
        return;
    }

    if (ov->timer.timer_set) {
        ngx_del_timer(&ov->timer);
    }

    ngx_http_monetize_overage = NULL;
}


static void
ngx_http_monetize_overage_sweep(ngx_event_t *ev)
{
    ngx_pool_t                    *pool;
    ngx_http_monetize_overage_t   *ov;
    ngx_http_monetize_pg_query_t  *q;

    ov = ev->data;

    if (ov->busy || ngx_exiting) {
        return;
    }

    pool = ngx_create_pool(1024, ov->log);
    if (pool == NULL) {
        goto again;
    }

    q = ngx_http_monetize_pg_query_create(pool, 2);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        goto again;
    }

    q->sql = "SELECT monetize_overage_report($1, $2)";
    q->params[0] = (char *) ov->seconds;
    q->params[1] = (char *) ov->batch;
    q->handler = ngx_http_monetize_overage_swept;
    q->data = pool;

    if (ngx_http_monetize_pg_send(ov->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto again;
    }

    ov->busy = 1;

    return;

again:

    ngx_add_timer(&ov->timer, ov->tick);
}


static void
ngx_http_monetize_overage_swept(ngx_http_monetize_pg_query_t *q)
{
    int64_t                       n;
    ngx_pool_t                   *pool;
    ngx_msec_t                    next;
    ngx_http_monetize_overage_t  *ov;

    pool = q->data;
    ov = ngx_http_monetize_overage;

    if (ov == NULL) {
        /* the worker is exiting: what is due stays due, for the others */
        ngx_destroy_pool(pool);
        return;
    }

    ov->busy = 0;
    next = ov->tick;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK
        && ngx_http_monetize_pg_get_int(q, 0, 0, &n) == NGX_OK
        && n > 0)
    {
        ngx_log_error(NGX_LOG_INFO, ov->log, 0,
                      "monetize: %L overage reports queued", n);

        ngx_http_monetize_jobs_wake();

        if (n >= NGX_HTTP_MONETIZE_OVERAGE_BATCH) {
            next = 1;               /* more may be due */
        }

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ov->log, q);
    }

    ngx_destroy_pool(pool);

    if (!ngx_exiting && !ov->timer.timer_set) {
        ngx_add_timer(&ov->timer, next);
    }
}


/* the "meter_event" job: {identifier, event_name, value, timestamp} */

void
ngx_http_monetize_overage_job(ngx_http_monetize_job_t *job)
{
    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_meter_event_t  *me;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_monetize_module);

    me = ngx_pcalloc(job->pool, sizeof(ngx_http_monetize_meter_event_t));
    if (me == NULL) {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "out of memory");
        return;
    }

    if (job->user_id.len == 0
        || ngx_http_monetize_overage_field(job->pool, job->payload,
                                           "identifier", &me->identifier)
           != NGX_OK
        || ngx_http_monetize_overage_field(job->pool, job->payload,
                                           "event_name", &me->event_name)
           != NGX_OK
        || ngx_http_monetize_overage_field(job->pool, job->payload,
                                           "value", &me->value)
           != NGX_OK
        || ngx_http_monetize_overage_field(job->pool, job->payload,
                                           "timestamp", &me->timestamp)
           != NGX_OK)
    {
        ngx_http_monetize_job_done(job, NGX_DECLINED,
                                   "a meter_event job without an account, "
                                   "identifier, event name, value or "
                                   "timestamp");
        return;
    }

    job->data = me;

    if (ngx_http_monetize_stripe_customer(mcf->stripe, mcf->pg, job->pool,
                                          job->log, &job->user_id,
                                          ngx_http_monetize_overage_customer,
                                          job)
        != NGX_OK)
    {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "could not be started");
    }
}


static void
ngx_http_monetize_overage_customer(void *data, ngx_int_t rc,
    ngx_str_t *customer_id)
{
    ngx_http_monetize_job_t *job = data;

    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_meter_event_t  *me;
    ngx_http_monetize_stripe_call_t  *sc;

    if (rc != NGX_OK) {
        /* reported calls are owed: wait until the account has a customer */
        ngx_http_monetize_job_done(job, NGX_AGAIN,
                                   "the account has no Stripe customer yet");
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_monetize_module);
    me = job->data;

    sc = ngx_http_monetize_stripe_call(job->pool, job->log, NGX_HTTP_POST,
                                       "/v1/billing/meter_events",
                                       &me->identifier);

    if (sc == NULL
        || ngx_http_monetize_stripe_param(sc, "event_name", &me->event_name)
           != NGX_OK
        || ngx_http_monetize_stripe_param(sc, "payload[stripe_customer_id]",
                                          customer_id)
           != NGX_OK
        || ngx_http_monetize_stripe_param(sc, "payload[value]", &me->value)
           != NGX_OK
        || ngx_http_monetize_stripe_param(sc, "identifier", &me->identifier)
           != NGX_OK
        || ngx_http_monetize_stripe_param(sc, "timestamp", &me->timestamp)
           != NGX_OK)
    {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "out of memory");
        return;
    }

    sc->handler = ngx_http_monetize_overage_sent;
    sc->data = job;

    if (ngx_http_monetize_stripe_start(mcf->stripe, sc) != NGX_OK) {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "could not be started");
    }
}


static void
ngx_http_monetize_overage_sent(ngx_http_monetize_stripe_call_t *sc)
{
    ngx_http_monetize_job_t *job = sc->data;

    ngx_http_monetize_meter_event_t  *me;

    me = job->data;

    if (sc->result == NGX_HTTP_MONETIZE_STRIPE_OK) {
        ngx_http_monetize_job_done(job, NGX_OK, NULL);
        return;
    }

    if (sc->result == NGX_HTTP_MONETIZE_STRIPE_REFUSED
        && ngx_http_monetize_overage_duplicate(sc))
    {
        ngx_log_error(NGX_LOG_INFO, job->log, 0,
                      "monetize: Stripe has the meter event \"%V\" already",
                      &me->identifier);
        ngx_http_monetize_job_done(job, NGX_OK, NULL);
        return;
    }

    /*
     * Any other refusal (a meter Stripe does not know, a customer deleted
     * there) is the operator's to fix, and the calls are owed meanwhile:
     * tried again, with the job's backoff; the client logged Stripe's
     * error.
     */

    ngx_http_monetize_job_done(job, NGX_AGAIN,
                               sc->result == NGX_HTTP_MONETIZE_STRIPE_REFUSED
                               ? "Stripe refused the meter event"
                               : "Stripe unavailable");
}


/*
 * Stripe keeps a meter event's identifier unique for at least a day and
 * refuses a second event with it: {"error": {"type":
 * "invalid_request_error", "message": "An event already exists with
 * identifier ..."}}.
 */

static ngx_uint_t
ngx_http_monetize_overage_duplicate(ngx_http_monetize_stripe_call_t *sc)
{
    json_t      *error;
    const char  *code, *message;

    if (sc->status != NGX_HTTP_BAD_REQUEST || sc->json == NULL) {
        return 0;
    }

    error = json_object_get(sc->json, "error");
    code = json_string_value(json_object_get(error, "code"));
    message = json_string_value(json_object_get(error, "message"));

    if (code && (ngx_strcmp(code, "resource_already_exists") == 0
                 || ngx_strcmp(code, "duplicate_meter_event") == 0))
    {
        return 1;
    }

    return message
           && ngx_strstr(message, "already exists with identifier") != NULL;
}


/* a string or integer of the payload, as text */

static ngx_int_t
ngx_http_monetize_overage_field(ngx_pool_t *pool, json_t *payload,
    const char *name, ngx_str_t *out)
{
    json_t      *v;
    const char  *s;

    v = json_object_get(payload, name);

    if (json_is_integer(v) && json_integer_value(v) > 0) {
        out->data = ngx_pnalloc(pool, NGX_INT64_LEN);
        if (out->data == NULL) {
            return NGX_ERROR;
        }

        out->len = ngx_sprintf(out->data, "%L",
                               (int64_t) json_integer_value(v))
                   - out->data;
        return NGX_OK;
    }

    s = json_string_value(v);

    if (s == NULL || *s == '\0') {
        return NGX_ERROR;
    }

    out->data = (u_char *) s;
    out->len = ngx_strlen(s);

    return NGX_OK;
}


/* monetize_overage_interval TIME (1s .. 1d; default 60s) */

char *
ngx_http_monetize_overage_interval(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   ms;

    if (mcf->overage_interval != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000 || ms > 86400000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_overage_interval: invalid value \"%V\" "
                           "(a time from 1s to 1d)", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->overage_interval = ms;

    return NGX_CONF_OK;
}
