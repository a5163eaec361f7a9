
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_ledger.h"


/*
 * Each worker's writer of money: the calls the gate debits, in batches, and
 * what it gives back.
 *
 * Debits: the calls that arrive in one turn of the event loop go in one
 * batch statement (group commit). Up to BATCHES_IN_FLIGHT batches are in
 * flight at once, of different accounts: one account's held balance row
 * does not hold up the other accounts' calls. A call of an account that a
 * batch in flight holds waits for that batch's answer, and all its
 * account's calls that arrived meanwhile go in one batch then: a second
 * batch of the account would only wait for the first's lock, and each
 * batch has a fixed cost (PostgreSQL's CPU, a commit), so splitting one
 * account's calls into more, smaller batches made the gate slower.
 *
 * Each call is answered by its deadline, whatever the tries: its caller's
 * (the gate's, from when it started on the call), or at the latest the
 * pool's timeout and grace after it arrived. A call
 * still waiting for a batch at its deadline is refused, never sent; a
 * batch's timer is its earliest call's. A batch whose answer was lost (the
 * connection died after sending) is sent again with the same references,
 * and so is one PostgreSQL rolled back as a deadlock or serialization
 * victim: monetize_debit() reads, under each account's lock, what the batch
 * already did, and does nothing twice. A batch whose outcome is still
 * unknown when it must be answered is refused to its callers (503) and
 * voided: monetize_void() records the void, which a late commit of the
 * batch then finds and refuses, or writes off what did commit.
 *
 * Refunds and voids go through the worker's queue of money given back
 * (ngx_http_monetize_give_back.c).
 */


#define NGX_HTTP_MONETIZE_BATCH_MAX      256
#define NGX_HTTP_MONETIZE_BATCH_TRIES    5
#define NGX_HTTP_MONETIZE_BATCHES_IN_FLIGHT  2


struct ngx_http_monetize_batch_s {
    ngx_pool_t                        *pool;
    ngx_http_monetize_ledger_t        *ledger;
    ngx_uint_t                         n;
    ngx_http_monetize_debit_t        **items;    /* NULL: its owner left */
    ngx_str_t                         *users;
    ngx_str_t                         *accounts;  /* distinct users */
    ngx_uint_t                         naccounts;
    ngx_queue_t                        flying_link;
    ngx_str_t                         *refs;
    ngx_str_t                          params[5];
    ngx_http_monetize_pg_query_t      *query;    /* the try in flight */
    ngx_event_t                        deadline;
    ngx_uint_t                         tries;
    unsigned                           unknown:1; /* a try got no answer */
    unsigned                           flying:1;  /* counted in in_flight */
};


struct ngx_http_monetize_ledger_s {
    ngx_http_monetize_pg_pool_t       *pg;

    ngx_queue_t                        pending;
    ngx_event_t                        late;       /* a pending deadline */
    ngx_event_t                        flush;
    ngx_uint_t                         in_flight;  /* batches */
    ngx_queue_t                        flying;     /* those batches */

    ngx_msec_t                         budget;     /* of a debit */

    ngx_http_monetize_give_back_t     *give_back;  /* refunds, voids */

    unsigned                           initialized:1;
};


static void ngx_http_monetize_ledger_init(ngx_http_monetize_ledger_t *ledger);
static void ngx_http_monetize_debit_late(ngx_event_t *ev);
static void ngx_http_monetize_debit_refuse_late(
    ngx_http_monetize_ledger_t *ledger);
static void ngx_http_monetize_debit_flush(ngx_event_t *ev);
static ngx_uint_t ngx_http_monetize_ledger_holds(
    ngx_http_monetize_ledger_t *ledger, ngx_str_t *user);
static ngx_int_t ngx_http_monetize_batch_send(ngx_http_monetize_batch_t *b);
static void ngx_http_monetize_batch_done(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_batch_answer(ngx_http_monetize_batch_t *b,
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_batch_retry(ngx_http_monetize_batch_t *b);
static void ngx_http_monetize_batch_expire(ngx_event_t *ev);
static void ngx_http_monetize_batch_fail(ngx_http_monetize_batch_t *b,
    ngx_uint_t void_refs);
static void ngx_http_monetize_debit_cleanup(void *data);


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
    { ngx_string("overage"), NGX_HTTP_MONETIZE_DEBIT_OVERAGE },
    { ngx_string("insufficient_credits"), NGX_HTTP_MONETIZE_DEBIT_REFUSED },
    { ngx_string("quota_exceeded"), NGX_HTTP_MONETIZE_DEBIT_QUOTA_EXCEEDED },
    { ngx_string("key_revoked"), NGX_HTTP_MONETIZE_DEBIT_KEY_REVOKED },
    { ngx_string("key_expired"), NGX_HTTP_MONETIZE_DEBIT_KEY_EXPIRED },
    { ngx_string("account_suspended"), NGX_HTTP_MONETIZE_DEBIT_SUSPENDED },
    /* "void": voided before, never debited */
    { ngx_null_string, NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE }
};


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
    ngx_msec_t      deadline;
    ngx_msec_int_t  left;

    ngx_http_monetize_ledger_init(ledger);

    deadline = ngx_current_msec + ledger->budget;

    if (d->deadline == 0
        || (ngx_msec_int_t) (d->deadline - deadline) > 0)
    {
        d->deadline = deadline;
    }

    ngx_queue_insert_tail(&ledger->pending, &d->queue);
    d->queued = 1;

    /*
     * Calls come with their callers' deadlines, not in deadline order: one
     * may have less time left than those ahead of it, and is answered at
     * its deadline even while a batch is in flight.
     */

    left = (ngx_msec_int_t) (d->deadline - ngx_current_msec);

    if (ledger->late.timer_set
        && (ngx_msec_int_t) (ledger->late.timer.key - d->deadline) > 0)
    {
        /* else ngx_add_timer() could keep the later time */
        ngx_del_timer(&ledger->late);
    }

    if (!ledger->late.timer_set) {
        ngx_add_timer(&ledger->late, left > 0 ? (ngx_msec_t) left : 1);
    }

    /* the calls that arrive in this turn of the event loop go together */

    if (ledger->in_flight < NGX_HTTP_MONETIZE_BATCHES_IN_FLIGHT
        && !ledger->flush.posted)
    {
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
    ngx_queue_init(&ledger->flying);

    ledger->late.handler = ngx_http_monetize_debit_late;
    ledger->late.data = ledger;
    ledger->late.log = ngx_cycle->log;

    ledger->flush.handler = ngx_http_monetize_debit_flush;
    ledger->flush.data = ledger;
    ledger->flush.log = ngx_cycle->log;

    ledger->budget = ngx_http_monetize_pg_timeout(ledger->pg);

    ledger->initialized = 1;
}


static void
ngx_http_monetize_debit_late(ngx_event_t *ev)
{
    ngx_http_monetize_debit_refuse_late(ev->data);
}


/*
 * The calls whose deadline passed while they waited for a batch were never
 * sent: they are refused, with nothing to void. The timer is set again for
 * the first deadline of those that still wait.
 */

static void
ngx_http_monetize_debit_refuse_late(ngx_http_monetize_ledger_t *ledger)
{
    ngx_uint_t                  n;
    ngx_msec_int_t              left, first;
    ngx_queue_t                 late, *q, *next;
    ngx_http_monetize_debit_t  *d;

    ngx_queue_init(&late);
    first = -1;
    n = 0;

    for (q = ngx_queue_head(&ledger->pending);
         q != ngx_queue_sentinel(&ledger->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        d = ngx_queue_data(q, ngx_http_monetize_debit_t, queue);

        left = (ngx_msec_int_t) (d->deadline - ngx_current_msec);

        if (left > 0) {
            if (first < 0 || left < first) {
                first = left;
            }

            continue;
        }

        /* still "queued": should its owner go first, it leaves this queue */
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&late, q);
        n++;
    }

    if (ledger->late.timer_set) {
        ngx_del_timer(&ledger->late);
    }

    if (first > 0) {
        ngx_add_timer(&ledger->late, (ngx_msec_t) first);
    }

    if (n == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "monetize: %ui debits were not sent by their calls' "
                  "deadline; they are refused", n);

    while (!ngx_queue_empty(&late)) {
        q = ngx_queue_head(&late);
        ngx_queue_remove(q);

        d = ngx_queue_data(q, ngx_http_monetize_debit_t, queue);
        d->queued = 0;
        d->done = 1;
        d->status = NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE;

        d->handler(d);
    }
}


static void
ngx_http_monetize_debit_flush(ngx_event_t *ev)
{
    ngx_http_monetize_ledger_t *ledger = ev->data;

    u_char                     *p;
    ngx_uint_t                  i, n;
    ngx_msec_t                  deadline;
    ngx_msec_int_t              left;
    ngx_pool_t                 *pool;
    ngx_queue_t                *q, *next;
    ngx_str_t                  *users, *keys, *costs, *quotas;
    ngx_http_monetize_batch_t  *b;
    ngx_http_monetize_debit_t  *d;

    if (ledger->in_flight >= NGX_HTTP_MONETIZE_BATCHES_IN_FLIGHT) {
        return;
    }

    ngx_http_monetize_debit_refuse_late(ledger);

    for (q = ngx_queue_head(&ledger->pending);
         q != ngx_queue_sentinel(&ledger->pending);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_monetize_debit_t, queue);

        if (!ngx_http_monetize_ledger_holds(ledger, &d->user_id)) {
            break;
        }
    }

    if (q == ngx_queue_sentinel(&ledger->pending)) {
        /* nothing, or only calls of accounts in flight: they wait */
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

    b->deadline.handler = ngx_http_monetize_batch_expire;
    b->deadline.data = b;
    b->deadline.log = ngx_cycle->log;

    b->items = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(void *));
    b->refs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    b->users = ngx_palloc(pool,
                          NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    b->accounts = ngx_palloc(pool,
                             NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    users = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    keys = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    costs = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    quotas = ngx_palloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * sizeof(ngx_str_t));
    p = ngx_pnalloc(pool, NGX_HTTP_MONETIZE_BATCH_MAX * NGX_INT64_LEN);

    if (b->items == NULL || b->refs == NULL || b->users == NULL
        || b->accounts == NULL || users == NULL || keys == NULL
        || costs == NULL || quotas == NULL || p == NULL)
    {
        ngx_destroy_pool(pool);
        goto failed;
    }

    n = 0;

    for (q = ngx_queue_head(&ledger->pending);
         n < NGX_HTTP_MONETIZE_BATCH_MAX
         && q != ngx_queue_sentinel(&ledger->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        d = ngx_queue_data(q, ngx_http_monetize_debit_t, queue);

        if (ngx_http_monetize_ledger_holds(ledger, &d->user_id)) {
            continue;
        }

        ngx_queue_remove(q);
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
        b->users[n].len = d->user_id.len;
        b->users[n].data = ngx_pstrdup(pool, &d->user_id);

        if (b->refs[n].data == NULL || b->users[n].data == NULL) {
            n++;
            goto batch_failed;
        }

        for (i = 0; i < b->naccounts; i++) {
            if (b->accounts[i].len == d->user_id.len
                && ngx_strncmp(b->accounts[i].data, d->user_id.data,
                               d->user_id.len) == 0)
            {
                break;
            }
        }

        if (i == b->naccounts) {
            b->accounts[b->naccounts++] = b->users[n];
        }

        n++;
    }

    b->n = n;

    if (ngx_queue_empty(&ledger->pending) && ledger->late.timer_set) {
        ngx_del_timer(&ledger->late);
    }

    /* the batch is answered by its earliest call's deadline */

    deadline = b->items[0]->deadline;

    for (i = 1; i < n; i++) {
        if ((ngx_msec_int_t) (b->items[i]->deadline - deadline) < 0) {
            deadline = b->items[i]->deadline;
        }
    }

    left = (ngx_msec_int_t) (deadline - ngx_current_msec);
    ngx_add_timer(&b->deadline, left > 0 ? (ngx_msec_t) left : 1);

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

    ledger->in_flight++;
    ngx_queue_insert_tail(&ledger->flying, &b->flying_link);
    b->flying = 1;

    if (ngx_http_monetize_batch_send(b) != NGX_OK) {
        goto batch_failed;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize ledger: debit batch of %ui, %ui in flight",
                   n, ledger->in_flight);

    /* more than a batch's worth waited: the rest may go at once */

    if (n == NGX_HTTP_MONETIZE_BATCH_MAX
        && ledger->in_flight < NGX_HTTP_MONETIZE_BATCHES_IN_FLIGHT
        && !ngx_queue_empty(&ledger->pending) && !ledger->flush.posted)
    {
        ngx_post_event(&ledger->flush, &ngx_posted_events);
    }

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


/* Is one of the batches in flight that of the account USER? */

static ngx_uint_t
ngx_http_monetize_ledger_holds(ngx_http_monetize_ledger_t *ledger,
    ngx_str_t *user)
{
    ngx_uint_t                  i;
    ngx_queue_t                *q;
    ngx_http_monetize_batch_t  *b;

    for (q = ngx_queue_head(&ledger->flying);
         q != ngx_queue_sentinel(&ledger->flying);
         q = ngx_queue_next(q))
    {
        b = ngx_queue_data(q, ngx_http_monetize_batch_t, flying_link);

        for (i = 0; i < b->naccounts; i++) {
            if (b->accounts[i].len == user->len
                && ngx_strncmp(b->accounts[i].data, user->data, user->len)
                   == 0)
            {
                return 1;
            }
        }
    }

    return 0;
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
    b->query = q;

    return ngx_http_monetize_pg_send(b->ledger->pg, q);
}


static void
ngx_http_monetize_batch_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_batch_t *b = q->data;

    const char  *state;

    b->query = NULL;

    switch (q->status) {

    case NGX_HTTP_MONETIZE_PG_OK:
        ngx_http_monetize_batch_answer(b, q);
        return;

    case NGX_HTTP_MONETIZE_PG_UNAVAILABLE:

        /* no answer: perhaps debited, perhaps not; ask again */

        if (q->sent) {
            b->unknown = 1;
        }

        ngx_http_monetize_batch_retry(b);
        return;

    default:
        break;
    }

    state = ngx_http_monetize_pg_sqlstate(q);

    if (ngx_strcmp(state, "40P01") == 0 || ngx_strcmp(state, "40001") == 0) {

        /* a deadlock's or serialization's victim: rolled back, safe */

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "monetize: postgres rolled a debit batch back "
                      "(%s), sending it again", state);
        ngx_http_monetize_batch_retry(b);
        return;
    }

    /*
     * Refused, and so rolled back; but if an earlier try got no answer,
     * what it did is still unknown.
     */

    ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    ngx_http_monetize_batch_fail(b, b->unknown);
}


static void
ngx_http_monetize_batch_retry(ngx_http_monetize_batch_t *b)
{
    if (b->tries < NGX_HTTP_MONETIZE_BATCH_TRIES
        && ngx_http_monetize_batch_send(b) == NGX_OK)
    {
        return;
    }

    ngx_http_monetize_batch_fail(b, b->unknown);
}


/* The earliest call's deadline: answer now, void what may be debited. */

static void
ngx_http_monetize_batch_expire(ngx_event_t *ev)
{
    ngx_http_monetize_batch_t *b = ev->data;

    if (b->query && b->query->sent) {
        b->unknown = 1;
    }

    if (!b->unknown) {
        /* else batch_fail() says it */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: a debit batch of %ui calls was not sent "
                      "by its earliest call's deadline; its calls are "
                      "refused", b->n);
    }

    ngx_http_monetize_batch_fail(b, b->unknown);
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
}


/*
 * The calls still waiting get "unavailable", their references voided if
 * the batch may have debited them; then the batch is gone, and the calls
 * that arrived meanwhile go in the next.
 */

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
                      "monetize: a debit batch of %ui calls has no known "
                      "outcome after %ui tries; its calls are refused and "
                      "voided", b->n, b->tries);

        for (i = 0; i < b->n; i++) {
            ngx_http_monetize_give_back_void(ledger->give_back, &b->users[i],
                                             &b->refs[i]);
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

    if (b->deadline.timer_set) {
        ngx_del_timer(&b->deadline);
    }

    if (b->flying) {
        ledger->in_flight--;
        ngx_queue_remove(&b->flying_link);
    }

    /* a try still queued or running is detached: its answer is dropped */
    ngx_destroy_pool(b->pool);

    if (ledger->in_flight < NGX_HTTP_MONETIZE_BATCHES_IN_FLIGHT
        && !ngx_queue_empty(&ledger->pending) && !ledger->flush.posted)
    {
        ngx_post_event(&ledger->flush, &ngx_posted_events);
    }
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

    ledger->give_back = ngx_http_monetize_give_back_create(cf, pg);
    if (ledger->give_back == NULL) {
        return NULL;
    }

    return ledger;
}


void
ngx_http_monetize_refund(ngx_http_monetize_ledger_t *ledger,
    ngx_str_t *debit_reference)
{
    ngx_http_monetize_give_back_refund(ledger->give_back, debit_reference);
}


void
ngx_http_monetize_ledger_exit(ngx_http_monetize_ledger_t *ledger)
{
    ngx_http_monetize_give_back_exit(ledger->give_back);
}
