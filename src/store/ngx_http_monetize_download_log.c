
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_download_log.h"
#include "ngx_http_monetize_cache.h"


/*
 * download_logs, written as the meter writes usage: each worker keeps the
 * downloads its log phase saw in memory and inserts them once a second in
 * one statement (monetize_log_downloads, sql/022). Rows that PostgreSQL
 * did not take wait for the next second. The flush timer is not
 * cancelable while rows are pending, so a worker that a reload or a quit
 * retires writes them before it goes (a bounded number of tries: then
 * they are dropped and the log says how many). A worker killed loses at
 * most its last second.
 */


#define NGX_HTTP_MONETIZE_DOWNLOAD_LOG_FLUSH       1000
#define NGX_HTTP_MONETIZE_DOWNLOAD_LOG_BATCH       5000   /* rows a statement */
#define NGX_HTTP_MONETIZE_DOWNLOAD_LOG_PENDING     100000 /* then dropped */
#define NGX_HTTP_MONETIZE_DOWNLOAD_LOG_EXIT_TRIES  3


typedef struct {
    ngx_queue_t                      queue;
    u_char                           user_id[NGX_HTTP_MONETIZE_UUID_LEN];
    off_t                            bytes;
    ngx_uint_t                       status;
    time_t                           sec;
    ngx_msec_t                       msec;
    ngx_str_t                        product;       /* in this allocation */
    ngx_str_t                        address;
} ngx_http_monetize_download_row_t;


typedef struct {
    ngx_http_monetize_pg_pool_t     *pg;
    ngx_queue_t                      pending;
    ngx_uint_t                       n;
    ngx_queue_t                      outbox;        /* in the statement */
    ngx_pool_t                      *sending;       /* a statement in flight */
    ngx_event_t                      flush;
    ngx_uint_t                       exit_tries;
    ngx_uint_t                       dropped;       /* over the bound */
    unsigned                         initialized:1;
} ngx_http_monetize_download_log_t;


static void ngx_http_monetize_download_log_flush(ngx_event_t *ev);
static void ngx_http_monetize_download_log_done(
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_download_log_retry(void);
static void ngx_http_monetize_download_log_return(void);
static void ngx_http_monetize_download_log_drop(const char *why);


static const char  ngx_http_monetize_download_log_sql[] =
    "SELECT monetize_log_downloads($1::uuid[], $2::text[], $3::text[],"
    "                              $4::bigint[], $5::integer[],"
    "                              $6::double precision[])";


/* per worker: made on the first download the worker sees */
static ngx_http_monetize_download_log_t  ngx_http_monetize_dlog;


void
ngx_http_monetize_download_log_add(ngx_http_monetize_pg_pool_t *pg,
    u_char *user_id, ngx_str_t *product, ngx_str_t *address, off_t bytes,
    ngx_uint_t status)
{
    ngx_time_t                        *tp;
    ngx_http_monetize_download_row_t  *row;
    ngx_http_monetize_download_log_t  *dl;

    dl = &ngx_http_monetize_dlog;

    if (!dl->initialized) {
        ngx_queue_init(&dl->pending);
        ngx_queue_init(&dl->outbox);

        dl->flush.handler = ngx_http_monetize_download_log_flush;
        dl->flush.data = dl;
        dl->flush.log = ngx_cycle->log;

        /* pending rows keep a worker that is shutting down (see above) */
        dl->flush.cancelable = 0;

        dl->initialized = 1;
    }

    dl->pg = pg;

    if (dl->n >= NGX_HTTP_MONETIZE_DOWNLOAD_LOG_PENDING) {
        if (dl->dropped++ == 0) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: %ui downloads wait to be logged; "
                          "further ones are not", dl->n);
        }

        return;
    }

    row = ngx_alloc(sizeof(ngx_http_monetize_download_row_t) + product->len
                    + address->len, ngx_cycle->log);
    if (row == NULL) {
        return;
    }

    tp = ngx_timeofday();

    ngx_memcpy(row->user_id, user_id, NGX_HTTP_MONETIZE_UUID_LEN);
    row->bytes = bytes;
    row->status = status;
    row->sec = tp->sec;
    row->msec = tp->msec;

    row->product.data = (u_char *) (row + 1);
    row->product.len = product->len;
    ngx_memcpy(row->product.data, product->data, product->len);

    row->address.data = row->product.data + product->len;
    row->address.len = address->len;
    ngx_memcpy(row->address.data, address->data, address->len);

    ngx_queue_insert_tail(&dl->pending, &row->queue);
    dl->n++;

    if (!dl->flush.timer_set && dl->sending == NULL) {
        ngx_add_timer(&dl->flush, NGX_HTTP_MONETIZE_DOWNLOAD_LOG_FLUSH);
    }
}


static void
ngx_http_monetize_download_log_flush(ngx_event_t *ev)
{
    ngx_http_monetize_download_log_t *dl = ev->data;

    u_char                            *p;
    ngx_str_t                         *cols[6];
    ngx_uint_t                         i, n;
    ngx_pool_t                        *pool;
    ngx_queue_t                       *q;
    ngx_http_monetize_pg_query_t      *pq;
    ngx_http_monetize_download_row_t  *row;

    if (dl->sending || ngx_queue_empty(&dl->pending)) {
        return;
    }

    if (dl->dropped) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui downloads were not logged: too many "
                      "waited for postgres", dl->dropped);
        dl->dropped = 0;
    }

    n = ngx_min(dl->n, NGX_HTTP_MONETIZE_DOWNLOAD_LOG_BATCH);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_http_monetize_download_log_retry();
        return;
    }

    pq = ngx_http_monetize_pg_query_create(pool, 6);
    p = ngx_pnalloc(pool, n * (NGX_OFF_T_LEN + NGX_INT_T_LEN + NGX_TIME_T_LEN
                               + sizeof(".000")));
    if (pq == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        ngx_http_monetize_download_log_retry();
        return;
    }

    for (i = 0; i < 6; i++) {
        cols[i] = ngx_palloc(pool, n * sizeof(ngx_str_t));
        if (cols[i] == NULL) {
            ngx_destroy_pool(pool);
            ngx_http_monetize_download_log_retry();
            return;
        }
    }

    /* downloads logged while these are sent wait for the next statement */

    for (i = 0; i < n; i++) {
        q = ngx_queue_head(&dl->pending);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&dl->outbox, q);
        dl->n--;

        row = ngx_queue_data(q, ngx_http_monetize_download_row_t, queue);

        cols[0][i].data = row->user_id;
        cols[0][i].len = NGX_HTTP_MONETIZE_UUID_LEN;
        cols[1][i] = row->product;
        cols[2][i] = row->address;

        cols[3][i].data = p;
        p = ngx_sprintf(p, "%O", row->bytes);
        cols[3][i].len = p - cols[3][i].data;

        cols[4][i].data = p;
        p = ngx_sprintf(p, "%ui", row->status);
        cols[4][i].len = p - cols[4][i].data;

        cols[5][i].data = p;
        p = ngx_sprintf(p, "%T.%03M", row->sec, row->msec);
        cols[5][i].len = p - cols[5][i].data;
    }

    for (i = 0; i < 6; i++) {
        pq->params[i] = (const char *)
                            ngx_http_monetize_pg_array(pool, cols[i], n,
                                                       i == 1 || i == 2);
        if (pq->params[i] == NULL) {
            break;
        }
    }

    pq->sql = ngx_http_monetize_download_log_sql;
    pq->handler = ngx_http_monetize_download_log_done;
    pq->data = dl;

    if (i == 6
        && ngx_http_monetize_pg_send(dl->pg, pq) == NGX_OK)
    {
        dl->sending = pool;
        return;
    }

    ngx_destroy_pool(pool);
    ngx_http_monetize_download_log_return();
    ngx_http_monetize_download_log_retry();
}


static void
ngx_http_monetize_download_log_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_download_log_t *dl = q->data;

    ngx_uint_t    written;
    ngx_queue_t  *head;

    written = (q->status == NGX_HTTP_MONETIZE_PG_OK);

    if (written) {
        while (!ngx_queue_empty(&dl->outbox)) {
            head = ngx_queue_head(&dl->outbox);
            ngx_queue_remove(head);
            ngx_free(ngx_queue_data(head, ngx_http_monetize_download_row_t,
                                    queue));
        }

    } else {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
        }

        ngx_http_monetize_download_log_return();
    }

    /* q is in this pool */
    ngx_destroy_pool(dl->sending);
    dl->sending = NULL;

    if (!written) {
        ngx_http_monetize_download_log_retry();

    } else if (!ngx_queue_empty(&dl->pending) && !dl->flush.timer_set) {
        ngx_add_timer(&dl->flush, NGX_HTTP_MONETIZE_DOWNLOAD_LOG_FLUSH);
    }
}


/*
 * Not written: again in a second; a worker that is exiting tries only so
 * often, so that it exits when PostgreSQL is down.
 */

static void
ngx_http_monetize_download_log_retry(void)
{
    ngx_http_monetize_download_log_t  *dl;

    dl = &ngx_http_monetize_dlog;

    if (ngx_exiting
        && ++dl->exit_tries >= NGX_HTTP_MONETIZE_DOWNLOAD_LOG_EXIT_TRIES)
    {
        ngx_http_monetize_download_log_drop("postgres did not take them "
                                            "while the worker was exiting");
        return;
    }

    if (!ngx_queue_empty(&dl->pending) && !dl->flush.timer_set) {
        ngx_add_timer(&dl->flush, NGX_HTTP_MONETIZE_DOWNLOAD_LOG_FLUSH);
    }
}


/* rows not written go back before the ones that came meanwhile */

static void
ngx_http_monetize_download_log_return(void)
{
    ngx_queue_t                       *last;
    ngx_http_monetize_download_log_t  *dl;

    dl = &ngx_http_monetize_dlog;

    while (!ngx_queue_empty(&dl->outbox)) {
        last = ngx_queue_last(&dl->outbox);
        ngx_queue_remove(last);
        ngx_queue_insert_head(&dl->pending, last);
        dl->n++;
    }
}


static void
ngx_http_monetize_download_log_drop(const char *why)
{
    ngx_uint_t                         n;
    ngx_queue_t                       *head;
    ngx_http_monetize_download_log_t  *dl;

    dl = &ngx_http_monetize_dlog;
    n = 0;

    while (!ngx_queue_empty(&dl->pending)) {
        head = ngx_queue_head(&dl->pending);
        ngx_queue_remove(head);
        ngx_free(ngx_queue_data(head, ngx_http_monetize_download_row_t,
                                queue));
        n++;
    }

    dl->n = 0;

    if (dl->flush.timer_set) {
        ngx_del_timer(&dl->flush);
    }

    if (n) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "monetize: %ui downloads were not logged: %s", n, why);
    }
}


void
ngx_http_monetize_download_log_exit(void)
{
    if (!ngx_http_monetize_dlog.initialized) {
        return;
    }

    /* a statement in flight may yet commit: those rows are not "lost" */
    ngx_http_monetize_download_log_drop("the worker exited without waiting "
                                        "for postgres");
}
