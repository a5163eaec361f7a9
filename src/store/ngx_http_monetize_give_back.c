
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_give_back.h"


/*
 * Each worker's queue of money given back: refunds of calls whose upstream
 * failed, and voids of calls whose debit's outcome stayed unknown (the
 * ledger answered them 503). Fire and forget, in batches of one kind at a
 * time, retried every second while PostgreSQL refuses them; each is
 * applied once (monetize_refund(), monetize_void()). The retry timer is not
 * cancelable: a worker that exits gracefully stays until they are written,
 * or until NGX_HTTP_MONETIZE_EXIT_TRIES failed tries.
 */


#define NGX_HTTP_MONETIZE_BATCH_MAX        256
#define NGX_HTTP_MONETIZE_GIVE_BACK_QUEUE  100000
#define NGX_HTTP_MONETIZE_GIVE_BACK_RETRY  1000
#define NGX_HTTP_MONETIZE_EXIT_TRIES       10


/* A refund of a debit, or the void of a call (then with its account). */

typedef struct {
    ngx_queue_t                        queue;
    size_t                             len;
    size_t                             user_len;  /* 0: a refund */
    u_char                             data[1];   /* reference, user */
} ngx_http_monetize_return_t;


struct ngx_http_monetize_give_back_s {
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_queue_t                        queue;
    ngx_uint_t                         n;
    ngx_pool_t                        *sending;   /* a batch in flight */
    ngx_uint_t                         nsent;     /* the queue's first */
    ngx_event_t                        retry;
    ngx_uint_t                         exit_tries;
    unsigned                           initialized:1;
};


static void ngx_http_monetize_give_back_init(
    ngx_http_monetize_give_back_t *gb);
static void ngx_http_monetize_give_back_add(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *user, ngx_str_t *reference);
static void ngx_http_monetize_give_back_flush(ngx_event_t *ev);
static void ngx_http_monetize_give_back_done(
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_give_back_later(
    ngx_http_monetize_give_back_t *gb);


static const char  ngx_http_monetize_refund_sql[] =
    "SELECT count(*) FILTER (WHERE applied)"
    "  FROM monetize_refund($1::text[])";

static const char  ngx_http_monetize_void_sql[] =
    "SELECT count(*) FROM monetize_void($1::uuid[], $2::text[])";


void
ngx_http_monetize_give_back_refund(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *debit_reference)
{
    ngx_http_monetize_give_back_add(gb, NULL, debit_reference);
}


void
ngx_http_monetize_give_back_void(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *user, ngx_str_t *reference)
{
    ngx_http_monetize_give_back_add(gb, user, reference);
}


static void
ngx_http_monetize_give_back_init(ngx_http_monetize_give_back_t *gb)
{
    if (gb->initialized) {
        return;
    }

    ngx_queue_init(&gb->queue);

    /* not cancelable: a worker that exits gracefully writes them first */
    gb->retry.handler = ngx_http_monetize_give_back_flush;
    gb->retry.data = gb;
    gb->retry.log = ngx_cycle->log;

    gb->initialized = 1;
}


static void
ngx_http_monetize_give_back_add(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *user, ngx_str_t *reference)
{
    size_t                       user_len;
    ngx_http_monetize_return_t  *rf;

    ngx_http_monetize_give_back_init(gb);

    if (gb->n >= NGX_HTTP_MONETIZE_GIVE_BACK_QUEUE) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui refunds and voids wait for postgres; "
                      "the %s of \"%V\" is dropped", gb->n,
                      user ? "void" : "refund", reference);
        return;
    }

    user_len = user ? user->len : 0;

    rf = ngx_alloc(sizeof(ngx_http_monetize_return_t) + reference->len
                   + user_len, ngx_cycle->log);
    if (rf == NULL) {
        return;
    }

    rf->len = reference->len;
    rf->user_len = user_len;
    ngx_memcpy(rf->data, reference->data, rf->len);

    if (user_len) {
        ngx_memcpy(rf->data + rf->len, user->data, user_len);
    }

    ngx_queue_insert_tail(&gb->queue, &rf->queue);
    gb->n++;

    if (gb->sending == NULL && !gb->retry.timer_set) {
        ngx_http_monetize_give_back_flush(&gb->retry);
    }
}


/* The first refunds, or the first voids, of the queue in one statement. */

static void
ngx_http_monetize_give_back_flush(ngx_event_t *ev)
{
    ngx_http_monetize_give_back_t *gb = ev->data;

    ngx_uint_t                     n, voids;
    ngx_str_t                     *refs, *users;
    ngx_pool_t                    *pool;
    ngx_queue_t                   *q;
    ngx_http_monetize_return_t    *rf;
    ngx_http_monetize_pg_query_t  *pq;

    if (gb->sending || ngx_queue_empty(&gb->queue)) {
        return;
    }

    rf = ngx_queue_data(ngx_queue_head(&gb->queue),
                        ngx_http_monetize_return_t, queue);
    voids = (rf->user_len != 0);

    pool = ngx_create_pool(8192, ngx_cycle->log);
    if (pool == NULL) {
        goto retry;
    }

    refs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    users = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    pq = ngx_http_monetize_pg_query_create(pool, voids ? 2 : 1);

    if (refs == NULL || users == NULL || pq == NULL) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    n = 0;

    for (q = ngx_queue_head(&gb->queue);
         q != ngx_queue_sentinel(&gb->queue)
         && n < NGX_HTTP_MONETIZE_BATCH_MAX;
         q = ngx_queue_next(q))
    {
        rf = ngx_queue_data(q, ngx_http_monetize_return_t, queue);

        if ((rf->user_len != 0) != voids) {
            break;
        }

        refs[n].data = rf->data;
        refs[n].len = rf->len;
        users[n].data = rf->data + rf->len;
        users[n].len = rf->user_len;
        n++;
    }

    if (voids) {
        pq->params[0] = (const char *)
                            ngx_http_monetize_pg_array(pool, users, n, 0);
        pq->params[1] = (const char *)
                            ngx_http_monetize_pg_array(pool, refs, n, 1);
        pq->sql = ngx_http_monetize_void_sql;

    } else {
        pq->params[0] = (const char *)
                            ngx_http_monetize_pg_array(pool, refs, n, 1);
        pq->sql = ngx_http_monetize_refund_sql;
    }

    if (pq->params[0] == NULL || (voids && pq->params[1] == NULL)) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    pq->handler = ngx_http_monetize_give_back_done;
    pq->data = gb;

    /* the first n of the queue leave it once PostgreSQL has them */
    gb->sending = pool;
    gb->nsent = n;

    if (ngx_http_monetize_pg_send(gb->pg, pq) != NGX_OK) {
        gb->sending = NULL;
        ngx_destroy_pool(pool);
        goto retry;
    }

    return;

retry:

    ngx_http_monetize_give_back_later(gb);
}


static void
ngx_http_monetize_give_back_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_give_back_t *gb = q->data;

    ngx_uint_t                      i;
    ngx_queue_t                    *head;
    ngx_http_monetize_return_t     *rf;
    ngx_http_monetize_pg_status_e   status;

    /* q lives in the pool destroyed below */
    status = q->status;

    if (status == NGX_HTTP_MONETIZE_PG_OK) {
        for (i = 0; i < gb->nsent; i++) {
            head = ngx_queue_head(&gb->queue);
            ngx_queue_remove(head);
            gb->n--;

            rf = ngx_queue_data(head, ngx_http_monetize_return_t, queue);
            ngx_free(rf);
        }

    } else if (status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    }

    ngx_destroy_pool(gb->sending);
    gb->sending = NULL;
    gb->nsent = 0;

    if (ngx_queue_empty(&gb->queue)) {
        return;
    }

    if (status == NGX_HTTP_MONETIZE_PG_OK) {
        ngx_http_monetize_give_back_flush(&gb->retry);
        return;
    }

    ngx_http_monetize_give_back_later(gb);
}


/*
 * Tried again in a second. A worker that exits gracefully waits for the
 * timer, so its refunds and voids are written; but not forever.
 */

static void
ngx_http_monetize_give_back_later(ngx_http_monetize_give_back_t *gb)
{
    ngx_queue_t                 *head;
    ngx_http_monetize_return_t  *rf;

    if (ngx_exiting && ++gb->exit_tries > NGX_HTTP_MONETIZE_EXIT_TRIES) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui refunds and voids could not be written "
                      "before the worker exits; they are dropped", gb->n);

        while (!ngx_queue_empty(&gb->queue)) {
            head = ngx_queue_head(&gb->queue);
            ngx_queue_remove(head);
            rf = ngx_queue_data(head, ngx_http_monetize_return_t, queue);
            ngx_free(rf);
        }

        gb->n = 0;
        return;
    }

    if (!gb->retry.timer_set) {
        ngx_add_timer(&gb->retry, NGX_HTTP_MONETIZE_GIVE_BACK_RETRY);
    }
}


ngx_http_monetize_give_back_t *
ngx_http_monetize_give_back_create(ngx_conf_t *cf,
    ngx_http_monetize_pg_pool_t *pg)
{
    ngx_http_monetize_give_back_t  *gb;

    gb = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_give_back_t));
    if (gb == NULL) {
        return NULL;
    }

    gb->pg = pg;

    return gb;
}


void
ngx_http_monetize_give_back_exit(ngx_http_monetize_give_back_t *gb)
{
    if (gb->initialized && gb->n) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui refunds and voids were not yet written "
                      "when the worker exited", gb->n);
    }
}
