
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_ledger.h"


/*
 * Each worker's writer of money: the calls the gate debits and the refunds
 * it gives back, in batches.
 *
 * Debits: while one batch statement is in flight, the calls that arrive
 * wait; when it is answered, all of them go in the next one (group commit).
 * A batch whose answer was lost (the connection died after sending) is sent
 * again with the same references: monetize_debit() reports what it already
 * debited and debits nothing twice. A batch that still has no answer is
 * refused to its callers (503) and its references are voided: refunded if,
 * after all, they were debited.
 *
 * Refunds: fire and forget, batched the same way, retried every second
 * while PostgreSQL refuses them; monetize_refund() applies each once.
 */


#define NGX_HTTP_MONETIZE_BATCH_MAX      256
#define NGX_HTTP_MONETIZE_BATCH_TRIES    3
#define NGX_HTTP_MONETIZE_REFUNDS_MAX    100000
#define NGX_HTTP_MONETIZE_REFUND_RETRY   1000


struct ngx_http_monetize_batch_s {
    ngx_pool_t                        *pool;
    ngx_http_monetize_ledger_t        *ledger;
    ngx_uint_t                         n;
    ngx_http_monetize_debit_t        **items;    /* NULL: its owner left */
    ngx_str_t                         *refs;
    ngx_str_t                          params[5];
    ngx_uint_t                         tries;
    unsigned                           sent:1;   /* an attempt reached it */
};


typedef struct {
    ngx_queue_t                        queue;
    size_t                             len;
    u_char                             data[1];
} ngx_http_monetize_refund_t;


struct ngx_http_monetize_ledger_s {
    ngx_http_monetize_pg_pool_t       *pg;

    ngx_queue_t                        pending;
    ngx_event_t                        flush;
    ngx_http_monetize_batch_t         *in_flight;

    ngx_queue_t                        refunds;
    ngx_uint_t                         nrefunds;
    ngx_pool_t                        *refunding;  /* a batch in flight */
    ngx_uint_t                         nrefunding; /* the queue's first */
    ngx_event_t                        refund_retry;

    unsigned                           initialized:1;
};


static void ngx_http_monetize_ledger_init(ngx_http_monetize_ledger_t *ledger);
static void ngx_http_monetize_debit_flush(ngx_event_t *ev);
static ngx_int_t ngx_http_monetize_batch_send(ngx_http_monetize_batch_t *b);
static void ngx_http_monetize_batch_done(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_batch_answer(ngx_http_monetize_batch_t *b,
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_batch_fail(ngx_http_monetize_batch_t *b,
    ngx_uint_t void_refs);
static void ngx_http_monetize_debit_cleanup(void *data);
static void ngx_http_monetize_refund_flush(ngx_event_t *ev);
static void ngx_http_monetize_refund_done(ngx_http_monetize_pg_query_t *q);


static const char  ngx_http_monetize_debit_sql[] =
    "SELECT idx, outcome, balance, quota_remaining, period_end"
    "  FROM monetize_debit($1::uuid[], $2::uuid[], $3::bigint[], $4::text[],"
    "                      $5::boolean[], $6::boolean)";


static struct {
    ngx_str_t                          outcome;
    ngx_http_monetize_debit_status_e   status;
} ngx_http_monetize_outcomes[] = {
    { ngx_string("credits"), NGX_HTTP_MONETIZE_DEBIT_ADMITTED },
    { ngx_string("quota"), NGX_HTTP_MONETIZE_DEBIT_INCLUDED },
    { ngx_string("insufficient_credits"), NGX_HTTP_MONETIZE_DEBIT_REFUSED },
    { ngx_string("quota_exceeded"), NGX_HTTP_MONETIZE_DEBIT_QUOTA_EXCEEDED },
    { ngx_null_string, NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE }
};

static const char  ngx_http_monetize_refund_sql[] =
    "SELECT count(*) FILTER (WHERE applied)"
    "  FROM monetize_refund($1::text[])";


ngx_http_monetize_debit_t *
ngx_http_monetize_debit_create(ngx_pool_t *owner)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_monetize_debit_t  *d;

    d = ngx_pcalloc(owner, sizeof(ngx_http_monetize_debit_t));
    if (d == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(owner, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_monetize_debit_cleanup;
    cln->data = d;

    return d;
}


void
ngx_http_monetize_debit(ngx_http_monetize_ledger_t *ledger,
    ngx_http_monetize_debit_t *d)
{
    ngx_http_monetize_ledger_init(ledger);

    ngx_queue_insert_tail(&ledger->pending, &d->queue);
    d->queued = 1;

    /* the calls that arrive in this turn of the event loop go together */

    if (ledger->in_flight == NULL && !ledger->flush.posted) {
        ngx_post_event(&ledger->flush, &ngx_posted_events);
    }
}


static void
ngx_http_monetize_ledger_init(ngx_http_monetize_ledger_t *ledger)
{
    if (ledger->initialized) {
        return;
    }

    ngx_queue_init(&ledger->pending);
    ngx_queue_init(&ledger->refunds);

    ledger->flush.handler = ngx_http_monetize_debit_flush;
    ledger->flush.data = ledger;
    ledger->flush.log = ngx_cycle->log;

    ledger->refund_retry.handler = ngx_http_monetize_refund_flush;
    ledger->refund_retry.data = ledger;
    ledger->refund_retry.log = ngx_cycle->log;
    ledger->refund_retry.cancelable = 1;

    ledger->initialized = 1;
}


static void
ngx_http_monetize_debit_flush(ngx_event_t *ev)
{
    ngx_http_monetize_ledger_t *ledger = ev->data;

    u_char                     *p;
    ngx_uint_t                  i, n;
    ngx_pool_t                 *pool;
    ngx_queue_t                *q;
    ngx_str_t                  *users, *keys, *costs, *quotas;
    ngx_http_monetize_batch_t  *b;
    ngx_http_monetize_debit_t  *d;

    if (ledger->in_flight || ngx_queue_empty(&ledger->pending)) {
        return;
    }

    pool = ngx_create_pool(16384, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    b = ngx_pcalloc(pool, sizeof(ngx_http_monetize_batch_t));
    if (b == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    b->pool = pool;
    b->ledger = ledger;

    b->items = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(void *));
    b->refs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    users = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    keys = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    costs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    quotas = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    p = ngx_pnalloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * NGX_INT64_LEN);

    if (b->items == NULL || b->refs == NULL || users == NULL || keys == NULL
        || costs == NULL || quotas == NULL || p == NULL)
    {
        ngx_destroy_pool(pool);
        goto failed;
    }

    for (n = 0;
         n < NGX_HTTP_MONETIZE_BATCH_MAX && !ngx_queue_empty(&ledger->pending);
         n++)
    {
        q = ngx_queue_head(&ledger->pending);
        ngx_queue_remove(q);

        d = ngx_queue_data(q, ngx_http_monetize_debit_t, queue);
        d->queued = 0;
        d->slot = &b->items[n];

        b->items[n] = d;
        users[n] = d->user_id;
        keys[n] = d->key_id;

        costs[n].data = p;
        p = ngx_sprintf(p, "%L", d->cost);
        costs[n].len = p - costs[n].data;

        if (d->quota) {
            ngx_str_set(&quotas[n], "t");

        } else {
            ngx_str_set(&quotas[n], "f");
        }

        /* the references outlive the calls: a lost batch is voided */
        b->refs[n].len = d->reference.len;
        b->refs[n].data = ngx_pstrdup(pool, &d->reference);
        if (b->refs[n].data == NULL) {
            n++;
            goto batch_failed;
        }
    }

    b->n = n;

    b->params[0].data = ngx_http_monetize_pg_array(pool, users, n, 0);
    b->params[1].data = ngx_http_monetize_pg_array(pool, keys, n, 0);
    b->params[2].data = ngx_http_monetize_pg_array(pool, costs, n, 0);
    b->params[3].data = ngx_http_monetize_pg_array(pool, b->refs, n, 1);
    b->params[4].data = ngx_http_monetize_pg_array(pool, quotas, n, 0);

    for (i = 0; i < 5; i++) {
        if (b->params[i].data == NULL) {
            goto batch_failed;
        }
    }

    ledger->in_flight = b;

    if (ngx_http_monetize_batch_send(b) != NGX_OK) {
        goto batch_failed;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize ledger: debit batch of %ui", n);

    return;

batch_failed:

    b->n = n;
    ngx_http_monetize_batch_fail(b, 0);
    return;

failed:

    /* out of memory: the calls wait for the next batch */
    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "monetize: cannot allocate a debit batch");
}


static ngx_int_t
ngx_http_monetize_batch_send(ngx_http_monetize_batch_t *b)
{
    ngx_uint_t                     i;
    ngx_http_monetize_pg_query_t  *q;

    q = ngx_http_monetize_pg_query_create(b->pool, 6);
    if (q == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < 5; i++) {
        q->params[i] = (const char *) b->params[i].data;
    }

    /* a batch sent again asks what it already debited */
    q->params[5] = b->tries ? "t" : "f";

    q->sql = ngx_http_monetize_debit_sql;
    q->handler = ngx_http_monetize_batch_done;
    q->data = b;

    b->tries++;

    return ngx_http_monetize_pg_send(b->ledger->pg, q);
}


static void
ngx_http_monetize_batch_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_batch_t *b = q->data;

    b->sent |= q->sent;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK) {
        ngx_http_monetize_batch_answer(b, q);
        return;
    }

    if (q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE) {

        /* no answer: perhaps debited, perhaps not; ask again */

        if (b->tries < NGX_HTTP_MONETIZE_BATCH_TRIES
            && ngx_http_monetize_batch_send(b) == NGX_OK)
        {
            return;
        }

        /* a batch that never reached the server debited nothing */
        ngx_http_monetize_batch_fail(b, b->sent);
        return;
    }

    /* refused, and so rolled back: nothing was debited */
    ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    ngx_http_monetize_batch_fail(b, 0);
}


static void
ngx_http_monetize_batch_answer(ngx_http_monetize_batch_t *b,
    ngx_http_monetize_pg_query_t *q)
{
    int                          row, rows;
    int64_t                      idx, balance, left, end;
    ngx_str_t                    outcome;
    ngx_uint_t                   i;
    ngx_http_monetize_debit_t   *d;
    ngx_http_monetize_ledger_t  *ledger;

    ledger = b->ledger;
    rows = PQntuples(q->result);

    for (row = 0; row < rows; row++) {

        if (ngx_http_monetize_pg_get_int(q, row, 0, &idx) != NGX_OK
            || ngx_http_monetize_pg_get_str(q, row, 1, &outcome) != NGX_OK
            || ngx_http_monetize_pg_get_int(q, row, 2, &balance) != NGX_OK
            || idx < 1 || idx > (int64_t) b->n)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: monetize_debit() answered a bad row");
            continue;
        }

        d = b->items[idx - 1];

        if (d == NULL) {
            continue;
        }

        for (i = 0; ngx_http_monetize_outcomes[i].outcome.len; i++) {
            if (outcome.len == ngx_http_monetize_outcomes[i].outcome.len
                && ngx_strncmp(outcome.data,
                               ngx_http_monetize_outcomes[i].outcome.data,
                               outcome.len) == 0)
            {
                break;
            }
        }

        if (ngx_http_monetize_pg_get_int(q, row, 3, &left) != NGX_OK) {
            left = -1;
        }

        if (ngx_http_monetize_pg_get_int(q, row, 4, &end) != NGX_OK) {
            end = 0;
        }

        b->items[idx - 1] = NULL;
        d->slot = NULL;
        d->done = 1;
        d->status = ngx_http_monetize_outcomes[i].status;
        d->balance = balance;
        d->quota_left = left;
        d->period_end = (time_t) end;

        d->handler(d);
    }

    /* a call the answer did not mention was not debited */
    ngx_http_monetize_batch_fail(b, 0);

    if (!ngx_queue_empty(&ledger->pending)) {
        ngx_http_monetize_debit_flush(&ledger->flush);
    }
}


/* The calls still waiting get "unavailable"; then the batch is gone. */

static void
ngx_http_monetize_batch_fail(ngx_http_monetize_batch_t *b,
    ngx_uint_t void_refs)
{
    ngx_uint_t                   i;
    ngx_http_monetize_debit_t   *d;
    ngx_http_monetize_ledger_t  *ledger;

    ledger = b->ledger;

    if (void_refs) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: a debit batch of %ui calls got no answer "
                      "after %ui tries; its calls are refused and voided",
                      b->n, b->tries);

        for (i = 0; i < b->n; i++) {
            ngx_http_monetize_refund(ledger, &b->refs[i]);
        }
    }

    for (i = 0; i < b->n; i++) {
        d = b->items[i];

        if (d == NULL) {
            continue;
        }

        b->items[i] = NULL;
        d->slot = NULL;
        d->done = 1;
        d->status = NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE;

        d->handler(d);
    }

    if (ledger->in_flight == b) {
        ledger->in_flight = NULL;
    }

    ngx_destroy_pool(b->pool);
}


static void
ngx_http_monetize_debit_cleanup(void *data)
{
    ngx_http_monetize_debit_t *d = data;

    if (d->done) {
        return;
    }

    if (d->queued) {
        ngx_queue_remove(&d->queue);
        d->queued = 0;
    }

    if (d->slot) {
        *d->slot = NULL;
        d->slot = NULL;
    }

    d->done = 1;
}


void
ngx_http_monetize_refund(ngx_http_monetize_ledger_t *ledger,
    ngx_str_t *debit_reference)
{
    ngx_http_monetize_refund_t  *rf;

    ngx_http_monetize_ledger_init(ledger);

    if (ledger->nrefunds >= NGX_HTTP_MONETIZE_REFUNDS_MAX) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui refunds wait for postgres; the refund "
                      "of \"%V\" is dropped", ledger->nrefunds,
                      debit_reference);
        return;
    }

    rf = ngx_alloc(sizeof(ngx_http_monetize_refund_t) + debit_reference->len,
                   ngx_cycle->log);
    if (rf == NULL) {
        return;
    }

    rf->len = debit_reference->len;
    ngx_memcpy(rf->data, debit_reference->data, rf->len);

    ngx_queue_insert_tail(&ledger->refunds, &rf->queue);
    ledger->nrefunds++;

    if (ledger->refunding == NULL && !ledger->refund_retry.timer_set) {
        ngx_http_monetize_refund_flush(&ledger->refund_retry);
    }
}


static void
ngx_http_monetize_refund_flush(ngx_event_t *ev)
{
    ngx_http_monetize_ledger_t *ledger = ev->data;

    ngx_uint_t                     n;
    ngx_str_t                     *refs;
    ngx_pool_t                    *pool;
    ngx_queue_t                   *q;
    ngx_http_monetize_refund_t    *rf;
    ngx_http_monetize_pg_query_t  *pq;

    if (ledger->refunding || ngx_queue_empty(&ledger->refunds)) {
        return;
    }

    pool = ngx_create_pool(8192, ngx_cycle->log);
    if (pool == NULL) {
        goto retry;
    }

    refs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    pq = ngx_http_monetize_pg_query_create(pool, 1);

    if (refs == NULL || pq == NULL) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    n = 0;

    for (q = ngx_queue_head(&ledger->refunds);
         q != ngx_queue_sentinel(&ledger->refunds)
         && n < NGX_HTTP_MONETIZE_BATCH_MAX;
         q = ngx_queue_next(q))
    {
        rf = ngx_queue_data(q, ngx_http_monetize_refund_t, queue);
        refs[n].data = rf->data;
        refs[n].len = rf->len;
        n++;
    }

    pq->params[0] = (const char *)
                        ngx_http_monetize_pg_array(pool, refs, n, 1);
    if (pq->params[0] == NULL) {
        ngx_destroy_pool(pool);
        goto retry;
    }

    pq->sql = ngx_http_monetize_refund_sql;
    pq->handler = ngx_http_monetize_refund_done;
    pq->data = ledger;

    /* the first n of the queue leave it once PostgreSQL has them */
    ledger->refunding = pool;
    ledger->nrefunding = n;

    if (ngx_http_monetize_pg_send(ledger->pg, pq) != NGX_OK) {
        ledger->refunding = NULL;
        ngx_destroy_pool(pool);
        goto retry;
    }

    return;

retry:

    if (!ledger->refund_retry.timer_set) {
        ngx_add_timer(&ledger->refund_retry, NGX_HTTP_MONETIZE_REFUND_RETRY);
    }
}


static void
ngx_http_monetize_refund_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_ledger_t *ledger = q->data;

    ngx_uint_t                   i;
    ngx_queue_t                 *head;
    ngx_http_monetize_refund_t  *rf;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK) {
        for (i = 0; i < ledger->nrefunding; i++) {
            head = ngx_queue_head(&ledger->refunds);
            ngx_queue_remove(head);
            ledger->nrefunds--;

            rf = ngx_queue_data(head, ngx_http_monetize_refund_t, queue);
            ngx_free(rf);
        }

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    }

    ngx_destroy_pool(ledger->refunding);
    ledger->refunding = NULL;
    ledger->nrefunding = 0;

    if (ngx_queue_empty(&ledger->refunds)) {
        return;
    }

    if (q->status == NGX_HTTP_MONETIZE_PG_OK) {
        ngx_http_monetize_refund_flush(&ledger->refund_retry);
        return;
    }

    if (!ledger->refund_retry.timer_set) {
        ngx_add_timer(&ledger->refund_retry, NGX_HTTP_MONETIZE_REFUND_RETRY);
    }
}


ngx_http_monetize_ledger_t *
ngx_http_monetize_ledger_create(ngx_conf_t *cf,
    ngx_http_monetize_pg_pool_t *pg)
{
    ngx_http_monetize_ledger_t  *ledger;

    ledger = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_ledger_t));
    if (ledger == NULL) {
        return NULL;
    }

    ledger->pg = pg;

    return ledger;
}


void
ngx_http_monetize_ledger_exit(ngx_http_monetize_ledger_t *ledger)
{
    if (ledger->initialized && ledger->nrefunds) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: %ui refunds were not yet written when the "
                      "worker exited", ledger->nrefunds);
    }
}
