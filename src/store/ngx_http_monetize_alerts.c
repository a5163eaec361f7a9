
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_alerts.h"
#include "ngx_http_monetize_outbox.h"
#include "ngx_http_monetize_jobs.h"


/*
 * Each worker's alert sweep: every few seconds, one statement
 * (monetize_alerts_sweep, sql/014_alerts.sql) finds the accounts that
 * crossed 80% or 100% of their monthly quota, or fell below
 * monetize_low_balance, and commits each alert with its mail and its
 * operator webhook job. The gate's debits do no work for it. Workers and
 * nodes take turns through an advisory lock in the statement; a worker
 * that finds it taken skips its turn.
 */


typedef struct {
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_event_t                        timer;
    ngx_log_t                         *log;
    const char                        *params[4];
    unsigned                           sweeping:1;
} ngx_http_monetize_alerts_t;


static void ngx_http_monetize_alerts_tick(ngx_event_t *ev);
static void ngx_http_monetize_alerts_swept(ngx_http_monetize_pg_query_t *q);


static ngx_http_monetize_alerts_t  *ngx_http_monetize_alerts;


ngx_int_t
ngx_http_monetize_alerts_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_main_conf_t *mcf)
{
    u_char                      *p;
    ngx_http_monetize_alerts_t  *al;

    al = ngx_pcalloc(cycle->pool, sizeof(ngx_http_monetize_alerts_t));
    if (al == NULL) {
        return NGX_ERROR;
    }

    al->pg = mcf->pg;
    al->log = cycle->log;

    /* the statement's parameters do not change while the worker lives */

    if (mcf->low_balance != NGX_CONF_UNSET) {
        p = ngx_pnalloc(cycle->pool, NGX_INT_T_LEN + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(p, "%i%Z", mcf->low_balance);
        al->params[0] = (char *) p;
    }

    al->params[1] = mcf->smtp ? "t" : "f";
    al->params[2] = mcf->notify ? "t" : "f";

    p = ngx_pnalloc(cycle->pool, mcf->public_url.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(p, mcf->public_url.data ? mcf->public_url.data
                                        : (u_char *) "",
                mcf->public_url.len + 1);
    al->params[3] = (char *) p;

    al->timer.handler = ngx_http_monetize_alerts_tick;
    al->timer.data = al;
    al->timer.log = cycle->log;
    al->timer.cancelable = 1;

    /* workers started together spread their turns */
    ngx_add_timer(&al->timer, NGX_HTTP_MONETIZE_ALERTS_SWEEP / 4
                              + ngx_random() % NGX_HTTP_MONETIZE_ALERTS_SWEEP);

    ngx_http_monetize_alerts = al;

    return NGX_OK;
}


void
ngx_http_monetize_alerts_exit(void)
{
    ngx_http_monetize_alerts_t  *al;

    al = ngx_http_monetize_alerts;

    if (al == NULL) {
        return;
    }

    if (al->timer.timer_set) {
        ngx_del_timer(&al->timer);
    }

    ngx_http_monetize_alerts = NULL;
}


static void
ngx_http_monetize_alerts_tick(ngx_event_t *ev)
{
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    ngx_http_monetize_alerts_t    *al;
    ngx_http_monetize_pg_query_t  *q;

    al = ev->data;

    if (al->sweeping || ngx_exiting) {
        return;
    }

    pool = ngx_create_pool(512, al->log);
    if (pool == NULL) {
        goto again;
    }

    q = ngx_http_monetize_pg_query_create(pool, 4);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        goto again;
    }

    q->sql = "SELECT mails, jobs FROM monetize_alerts_sweep($1, $2, $3, $4)";

    for (i = 0; i < 4; i++) {
        q->params[i] = al->params[i];
    }

    q->handler = ngx_http_monetize_alerts_swept;
    q->data = pool;

    if (ngx_http_monetize_pg_send(al->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto again;
    }

    al->sweeping = 1;

    return;

again:

    ngx_add_timer(&al->timer, NGX_HTTP_MONETIZE_ALERTS_SWEEP);
}


static void
ngx_http_monetize_alerts_swept(ngx_http_monetize_pg_query_t *q)
{
    int64_t                      mails, jobs;
    ngx_pool_t                  *pool;
    ngx_http_monetize_alerts_t  *al;

    pool = q->data;
    al = ngx_http_monetize_alerts;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK
        && ngx_http_monetize_pg_get_int(q, 0, 0, &mails) == NGX_OK
        && ngx_http_monetize_pg_get_int(q, 0, 1, &jobs) == NGX_OK)
    {
        if (mails || jobs) {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "monetize: alerts: %L mails and %L webhooks "
                          "queued", mails, jobs);
        }

        /* sent from here at once, rather than at the senders' next poll */

        if (mails) {
            ngx_http_monetize_outbox_wake();
        }

        if (jobs) {
            ngx_http_monetize_jobs_wake();
        }

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    }

    /* UNAVAILABLE was logged by the pool; the next turn tries again */

    ngx_destroy_pool(pool);

    if (al == NULL) {
        return;
    }

    al->sweeping = 0;

    if (!ngx_exiting) {
        ngx_add_timer(&al->timer, NGX_HTTP_MONETIZE_ALERTS_SWEEP);
    }
}
