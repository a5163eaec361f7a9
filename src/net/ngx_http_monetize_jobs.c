
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_jobs.h"
#include "ngx_http_monetize_stripe.h"


/*
 * Each worker's runner of the jobs table (sql/012_jobs_stripe.sql), as the
 * outbox is for mail: it claims due rows of the kinds it can run (FOR
 * UPDATE SKIP LOCKED, leased), hands each to its kind's handler in a pool
 * of its own, and records the handler's end. A handler that outlives the
 * lease is dropped (its pool goes, and its calls with it) before the row
 * is due again, so one job never runs twice at once.
 */


#define NGX_HTTP_MONETIZE_JOBS_POLL     2000
#define NGX_HTTP_MONETIZE_JOBS_BATCH    10
#define NGX_HTTP_MONETIZE_JOBS_LEASE    300000
#define NGX_HTTP_MONETIZE_JOBS_MARGIN   30000    /* to record the drop */
#define NGX_HTTP_MONETIZE_JOBS_CLEANUP  3600000


typedef struct {
    ngx_str_t                          name;
    ngx_http_monetize_job_run_pt       handler;
    size_t                             conf;     /* the main conf's field
                                                    that must be set */
} ngx_http_monetize_job_kind_t;


typedef struct {
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_event_t                        timer;
    ngx_event_t                        cleanup;
    ngx_uint_t                         running;  /* jobs in flight */
    ngx_log_t                         *log;
    u_char                            *kinds;    /* a text[] literal */
    unsigned                           claiming:1;
} ngx_http_monetize_jobs_t;


typedef struct {
    ngx_http_monetize_job_t           *job;
    ngx_event_t                        expire;
} ngx_http_monetize_job_run_t;


static void ngx_http_monetize_jobs_tick(ngx_event_t *ev);
static void ngx_http_monetize_jobs_claimed(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_jobs_start(ngx_http_monetize_jobs_t *jr,
    ngx_http_monetize_pg_query_t *q, int row);
static ngx_http_monetize_job_kind_t *ngx_http_monetize_jobs_kind(
    ngx_str_t *name);
static void ngx_http_monetize_jobs_payload_free(void *data);
static void ngx_http_monetize_jobs_expire(ngx_event_t *ev);
static void ngx_http_monetize_jobs_marked(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_jobs_end(ngx_http_monetize_job_t *job);
static void ngx_http_monetize_jobs_clean(ngx_event_t *ev);
static void ngx_http_monetize_jobs_cleaned(ngx_http_monetize_pg_query_t *q);


/* a kind runs where its configuration is given; elsewhere its jobs wait */

static ngx_http_monetize_job_kind_t  ngx_http_monetize_job_kinds[] = {

    { ngx_string("stripe_customer"),
      ngx_http_monetize_stripe_customer_job,
      offsetof(ngx_http_monetize_main_conf_t, stripe) },

    { ngx_null_string, NULL, 0 }
};


static ngx_http_monetize_jobs_t  *ngx_http_monetize_jobs;


ngx_int_t
ngx_http_monetize_jobs_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_pg_pool_t *pg)
{
    void                           **field;
    ngx_str_t                        names[16];
    ngx_uint_t                       i, n;
    ngx_http_monetize_jobs_t        *jr;
    ngx_http_monetize_main_conf_t   *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_monetize_module);
    n = 0;

    for (i = 0; ngx_http_monetize_job_kinds[i].handler; i++) {
        field = (void **) ((u_char *) mcf + ngx_http_monetize_job_kinds[i].conf);

        if (*field && n < sizeof(names) / sizeof(names[0])) {
            names[n++] = ngx_http_monetize_job_kinds[i].name;
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    jr = ngx_pcalloc(cycle->pool, sizeof(ngx_http_monetize_jobs_t));
    if (jr == NULL) {
        return NGX_ERROR;
    }

    jr->kinds = ngx_http_monetize_pg_array(cycle->pool, names, n, 1);
    if (jr->kinds == NULL) {
        return NGX_ERROR;
    }

    jr->pg = pg;
    jr->log = cycle->log;

    /* neither holds a worker that is shutting down */

    jr->timer.handler = ngx_http_monetize_jobs_tick;
    jr->timer.data = jr;
    jr->timer.log = cycle->log;
    jr->timer.cancelable = 1;

    jr->cleanup.handler = ngx_http_monetize_jobs_clean;
    jr->cleanup.data = jr;
    jr->cleanup.log = cycle->log;
    jr->cleanup.cancelable = 1;

    ngx_add_timer(&jr->timer, 100);
    ngx_add_timer(&jr->cleanup, 1000);

    ngx_http_monetize_jobs = jr;

    return NGX_OK;
}


void
ngx_http_monetize_jobs_wake(void)
{
    ngx_http_monetize_jobs_t  *jr;

    jr = ngx_http_monetize_jobs;

    if (jr == NULL || jr->claiming || ngx_exiting) {
        return;
    }

    ngx_add_timer(&jr->timer, 1);
}


void
ngx_http_monetize_jobs_exit(void)
{
    ngx_http_monetize_jobs_t  *jr;

    jr = ngx_http_monetize_jobs;

    if (jr == NULL) {
        return;
    }

    if (jr->timer.timer_set) {
        ngx_del_timer(&jr->timer);
    }

    if (jr->cleanup.timer_set) {
        ngx_del_timer(&jr->cleanup);
    }

    ngx_http_monetize_jobs = NULL;
}


static void
ngx_http_monetize_jobs_tick(ngx_event_t *ev)
{
    u_char                        *p;
    ngx_pool_t                    *pool;
    ngx_http_monetize_jobs_t      *jr;
    ngx_http_monetize_pg_query_t  *q;

    jr = ev->data;

    if (jr->claiming || ngx_exiting) {
        return;
    }

    /* the jobs in flight come back here when they are done */

    if (jr->running >= NGX_HTTP_MONETIZE_JOBS_BATCH) {
        return;
    }

    pool = ngx_create_pool(1024, jr->log);
    if (pool == NULL) {
        goto again;
    }

    q = ngx_http_monetize_pg_query_create(pool, 3);
    p = ngx_pnalloc(pool, 2 * NGX_INT64_LEN + 2);

    if (q == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        goto again;
    }

    q->sql = "SELECT id, kind, user_id, payload, attempts"
             "  FROM monetize_job_claim($1, $2, $3)";
    q->params[0] = (char *) jr->kinds;
    q->params[1] = (char *) p;
    p = ngx_sprintf(p, "%M%Z", (ngx_msec_t) NGX_HTTP_MONETIZE_JOBS_LEASE);
    q->params[2] = (char *) p;
    ngx_sprintf(p, "%ui%Z",
                (ngx_uint_t) NGX_HTTP_MONETIZE_JOBS_BATCH - jr->running);
    q->handler = ngx_http_monetize_jobs_claimed;
    q->data = pool;

    if (ngx_http_monetize_pg_send(jr->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto again;
    }

    jr->claiming = 1;

    return;

again:

    ngx_add_timer(&jr->timer, NGX_HTTP_MONETIZE_JOBS_POLL);
}


static void
ngx_http_monetize_jobs_claimed(ngx_http_monetize_pg_query_t *q)
{
    int                        row, rows;
    ngx_pool_t                *pool;
    ngx_msec_t                 next;
    ngx_http_monetize_jobs_t  *jr;

    pool = q->data;
    jr = ngx_http_monetize_jobs;

    if (jr == NULL) {
        /* the worker is exiting: the rows' lease ends, others run them */
        ngx_destroy_pool(pool);
        return;
    }

    jr->claiming = 0;
    next = NGX_HTTP_MONETIZE_JOBS_POLL;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK) {
        rows = PQntuples(q->result);

        for (row = 0; row < rows; row++) {
            ngx_http_monetize_jobs_start(jr, q, row);
        }

        /* a full batch: more may be due */
        if (rows && jr->running < NGX_HTTP_MONETIZE_JOBS_BATCH) {
            next = 1;
        }

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(jr->log, q);
    }

    ngx_destroy_pool(pool);

    if (!ngx_exiting && !jr->timer.timer_set) {
        ngx_add_timer(&jr->timer, next);
    }
}


static void
ngx_http_monetize_jobs_start(ngx_http_monetize_jobs_t *jr,
    ngx_http_monetize_pg_query_t *q, int row)
{
    int64_t                        id, attempt;
    ngx_str_t                      kind, user, payload;
    ngx_pool_t                    *pool;
    json_error_t                   err;
    ngx_pool_cleanup_t            *cln;
    ngx_http_monetize_job_t       *job;
    ngx_http_monetize_job_run_t   *run;
    ngx_http_monetize_job_kind_t  *k;

    if (ngx_http_monetize_pg_get_int(q, row, 0, &id) != NGX_OK
        || ngx_http_monetize_pg_get_str(q, row, 1, &kind) != NGX_OK
        || ngx_http_monetize_pg_get_int(q, row, 4, &attempt) != NGX_OK)
    {
        return;
    }

    if (ngx_http_monetize_pg_get_str(q, row, 2, &user) != NGX_OK) {
        ngx_str_null(&user);
    }

    if (ngx_http_monetize_pg_get_str(q, row, 3, &payload) != NGX_OK) {
        ngx_str_set(&payload, "{}");
    }

    k = ngx_http_monetize_jobs_kind(&kind);
    if (k == NULL) {
        return;
    }

    pool = ngx_create_pool(4096, jr->log);
    if (pool == NULL) {
        return;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_monetize_job_t));
    run = ngx_pcalloc(pool, sizeof(ngx_http_monetize_job_run_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (job == NULL || run == NULL || cln == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    job->pool = pool;
    job->log = jr->log;
    job->id = id;
    job->kind = k->name;
    job->attempt = (ngx_uint_t) attempt;
    job->runner = run;

    /* the result goes with the claim's pool: the job keeps copies */

    job->id_text.data = ngx_pnalloc(pool, NGX_INT64_LEN + 1);
    job->user_id.data = ngx_pnalloc(pool, user.len + 1);

    if (job->id_text.data == NULL || job->user_id.data == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    job->id_text.len = ngx_sprintf(job->id_text.data, "%L", id)
                       - job->id_text.data;
    job->id_text.data[job->id_text.len] = '\0';

    ngx_memcpy(job->user_id.data, user.data, user.len);
    job->user_id.data[user.len] = '\0';
    job->user_id.len = user.len;

    job->payload = json_loadb((char *) payload.data, payload.len, 0, &err);
    if (job->payload == NULL) {
        job->payload = json_object();
    }

    cln->handler = ngx_http_monetize_jobs_payload_free;
    cln->data = job;

    run->job = job;
    run->expire.handler = ngx_http_monetize_jobs_expire;
    run->expire.data = job;
    run->expire.log = jr->log;
    run->expire.cancelable = 1;     /* the lease brings it back */

    ngx_add_timer(&run->expire, NGX_HTTP_MONETIZE_JOBS_LEASE
                                - NGX_HTTP_MONETIZE_JOBS_MARGIN);

    jr->running++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, jr->log, 0,
                   "monetize: job #%L %V, attempt %ui", id, &job->kind,
                   job->attempt);

    k->handler(job);
}


static ngx_http_monetize_job_kind_t *
ngx_http_monetize_jobs_kind(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_monetize_job_kinds[i].handler; i++) {
        if (ngx_http_monetize_job_kinds[i].name.len == name->len
            && ngx_strncmp(ngx_http_monetize_job_kinds[i].name.data,
                           name->data, name->len) == 0)
        {
            return &ngx_http_monetize_job_kinds[i];
        }
    }

    return NULL;
}


static void
ngx_http_monetize_jobs_payload_free(void *data)
{
    ngx_http_monetize_job_t *job = data;

    ngx_http_monetize_job_run_t  *run;

    run = job->runner;

    if (run->expire.timer_set) {
        ngx_del_timer(&run->expire);
    }

    if (job->payload) {
        json_decref(job->payload);
        job->payload = NULL;
    }
}


/*
 * The handler outran the lease: its work is dropped with its pool, and
 * the row, whose lease is about to end, is run again.
 */

static void
ngx_http_monetize_jobs_expire(ngx_event_t *ev)
{
    ngx_http_monetize_job_t *job = ev->data;

    ngx_log_error(NGX_LOG_ERR, job->log, 0,
                  "monetize: job #%L %V took longer than its lease; it is "
                  "due again", job->id, &job->kind);

    ngx_http_monetize_jobs_end(job);
}


void
ngx_http_monetize_job_done(ngx_http_monetize_job_t *job, ngx_int_t rc,
    const char *error)
{
    size_t                         len;
    ngx_http_monetize_jobs_t      *jr;
    ngx_http_monetize_job_run_t   *run;
    ngx_http_monetize_pg_query_t  *q;

    if (job->finished) {
        return;
    }

    job->finished = 1;

    run = job->runner;

    if (run->expire.timer_set) {
        ngx_del_timer(&run->expire);
    }

    jr = ngx_http_monetize_jobs;

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, job->log, 0, "monetize: job #%L %V done",
                      job->id, &job->kind);

    } else if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, job->log, 0,
                      "monetize: job #%L %V failed for good: %s", job->id,
                      &job->kind, error ? error : "(no reason)");

    } else {
        ngx_log_error(NGX_LOG_WARN, job->log, 0,
                      "monetize: job #%L %V not done (attempt %ui): %s; "
                      "it is due again later", job->id, &job->kind,
                      job->attempt, error ? error : "(no reason)");
    }

    if (jr == NULL) {
        goto failed;
    }

    q = ngx_http_monetize_pg_query_create(job->pool, rc == NGX_OK ? 1 : 2);
    if (q == NULL) {
        goto failed;
    }

    q->params[0] = (char *) job->id_text.data;

    if (rc != NGX_OK) {
        if (error == NULL) {
            error = "(no reason)";
        }

        len = ngx_strlen(error);

        q->params[1] = ngx_pnalloc(job->pool, len + 1);
        if (q->params[1] == NULL) {
            goto failed;
        }

        ngx_memcpy((char *) q->params[1], error, len + 1);
    }

    q->sql = (rc == NGX_OK) ? "SELECT monetize_job_done($1)"
             : (rc == NGX_DECLINED) ? "SELECT monetize_job_fail($1, $2)"
             : "SELECT monetize_job_retry($1, $2)";
    q->handler = ngx_http_monetize_jobs_marked;
    q->data = job;

    if (ngx_http_monetize_pg_send(jr->pg, q) == NGX_OK) {
        return;
    }

failed:

    /* the row's lease ends, and it is run (again) */
    ngx_http_monetize_jobs_end(job);
}


static void
ngx_http_monetize_jobs_marked(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_job_t *job = q->data;

    if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(job->log, q);

    } else if (q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE) {
        ngx_log_error(NGX_LOG_ERR, job->log, 0,
                      "monetize: job #%L: its outcome was not recorded; "
                      "it is due again when its lease ends", job->id);
    }

    ngx_http_monetize_jobs_end(job);
}


static void
ngx_http_monetize_jobs_end(ngx_http_monetize_job_t *job)
{
    ngx_http_monetize_jobs_t  *jr;

    jr = ngx_http_monetize_jobs;

    ngx_destroy_pool(job->pool);

    if (jr == NULL) {
        return;
    }

    jr->running--;

    if (!jr->claiming && !ngx_exiting && !jr->timer.timer_set) {
        ngx_add_timer(&jr->timer, jr->running ? NGX_HTTP_MONETIZE_JOBS_POLL
                                              : 1);
    }
}


static void
ngx_http_monetize_jobs_clean(ngx_event_t *ev)
{
    ngx_pool_t                    *pool;
    ngx_http_monetize_jobs_t      *jr;
    ngx_http_monetize_pg_query_t  *q;

    jr = ev->data;

    if (ngx_exiting) {
        return;
    }

    ngx_add_timer(&jr->cleanup, NGX_HTTP_MONETIZE_JOBS_CLEANUP);

    pool = ngx_create_pool(512, jr->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_http_monetize_pg_query_create(pool, 0);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    q->sql = "SELECT monetize_job_cleanup()";
    q->handler = ngx_http_monetize_jobs_cleaned;
    q->data = pool;

    if (ngx_http_monetize_pg_send(jr->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_monetize_jobs_cleaned(ngx_http_monetize_pg_query_t *q)
{
    int64_t      jobs;
    ngx_pool_t  *pool;

    pool = q->data;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK
        && ngx_http_monetize_pg_get_int(q, 0, 0, &jobs) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "monetize: jobs cleanup: %L old jobs deleted", jobs);

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    }

    ngx_destroy_pool(pool);
}
