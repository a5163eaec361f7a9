
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg_conn.h"


/*
 * A per-worker pool of PostgreSQL connections (ngx_http_monetize_pg_conn.c):
 * queries wait in a FIFO until a connection is idle; a pool of up to
 * "size" connections, opened as needed, replaced when lost. A query's
 * wait for a connection and its run on one are bounded each by a timer (the
 * latter armed when it is sent), and both by its caller's deadline if it
 * has one; its answer is delivered from a posted event.
 */


static void ngx_http_monetize_pg_dispatch(ngx_http_monetize_pg_conn_t *pc,
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_pg_fail_waiting(
    ngx_http_monetize_pg_pool_t *pool);
static void ngx_http_monetize_pg_deliver(ngx_event_t *ev);
static ngx_msec_t ngx_http_monetize_pg_wait_for(
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_pg_query_timeout(ngx_event_t *ev);
static void ngx_http_monetize_pg_abandon(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_pg_query_cleanup(void *data);


ngx_int_t
ngx_http_monetize_pg_send(ngx_http_monetize_pg_pool_t *pool,
    ngx_http_monetize_pg_query_t *q)
{
    ngx_queue_t                  *head;
    ngx_http_monetize_pg_conn_t  *pc;

    ngx_http_monetize_pg_init(pool);

    q->pool = pool;
    q->status = NGX_HTTP_MONETIZE_PG_UNAVAILABLE;

    q->event.handler = ngx_http_monetize_pg_query_timeout;
    q->event.data = q;
    q->event.log = ngx_cycle->log;

    if (q->deadline
        && (ngx_msec_int_t) (q->deadline - ngx_current_msec) <= 0)
    {
        /* its caller can wait no more: never sent */
        ngx_http_monetize_pg_complete(q, NGX_HTTP_MONETIZE_PG_UNAVAILABLE,
                                      NULL);
        return NGX_OK;
    }

    if (!ngx_queue_empty(&pool->idle)) {
        head = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(head, ngx_http_monetize_pg_conn_t, queue);
        ngx_http_monetize_pg_dispatch(pc, q);
        return NGX_OK;
    }

    /* the wait for a connection has a bound of its own */
    ngx_add_timer(&q->event, ngx_http_monetize_pg_wait_for(q));

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    q->queued = 1;

    if (pool->nconns < pool->size
        && ngx_http_monetize_pg_connect(pool) == NULL
        && pool->nconns == 0)
    {
        ngx_http_monetize_pg_fail_waiting(pool);
    }

    return NGX_OK;
}


void
ngx_http_monetize_pg_init(ngx_http_monetize_pg_pool_t *pool)
{
    if (pool->initialized) {
        return;
    }

    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->busy);
    ngx_queue_init(&pool->waiting);

    pool->listener.retry.handler = ngx_http_monetize_pg_listen_connect;
    pool->listener.retry.data = pool;
    pool->listener.retry.log = ngx_cycle->log;
    pool->listener.retry.cancelable = 1;

    pool->initialized = 1;
}


ngx_http_monetize_pg_query_t *
ngx_http_monetize_pg_query_create(ngx_pool_t *owner, int nparams)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_monetize_pg_query_t  *q;

    q = ngx_pcalloc(owner, sizeof(ngx_http_monetize_pg_query_t));
    if (q == NULL) {
        return NULL;
    }

    if (nparams) {
        q->params = ngx_pcalloc(owner, nparams * sizeof(char *));
        if (q->params == NULL) {
            return NULL;
        }
    }

    q->nparams = nparams;

    /*
     * A pool cleanup, not an http cleanup: it runs however the owner goes
     * away, so no callback can outlive the memory it points to.
     */

    cln = ngx_pool_cleanup_add(owner, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_monetize_pg_query_cleanup;
    cln->data = q;

    return q;
}


/* The connection is free: serve the oldest waiting query, or rest idle. */

void
ngx_http_monetize_pg_ready(ngx_http_monetize_pg_conn_t *pc)
{
    ngx_queue_t                   *head;
    ngx_http_monetize_pg_pool_t   *pool;
    ngx_http_monetize_pg_query_t  *q;

    pool = pc->pool;
    pc->state = NGX_HTTP_MONETIZE_PG_IDLE;

    if (pc->listener) {
        ngx_http_monetize_pg_listen_ready(pc);
        return;
    }

    ngx_queue_remove(&pc->queue);

    if (ngx_queue_empty(&pool->waiting)) {
        ngx_queue_insert_head(&pool->idle, &pc->queue);
        ngx_http_monetize_pg_wait(pc, PGRES_POLLING_READING);
        return;
    }

    head = ngx_queue_head(&pool->waiting);
    ngx_queue_remove(head);

    q = ngx_queue_data(head, ngx_http_monetize_pg_query_t, queue);
    q->queued = 0;

    ngx_queue_insert_head(&pool->idle, &pc->queue);
    ngx_http_monetize_pg_dispatch(pc, q);
}


static void
ngx_http_monetize_pg_dispatch(ngx_http_monetize_pg_conn_t *pc,
    ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_pg_pool_t  *pool;

    pool = pc->pool;

    ngx_queue_remove(&pc->queue);
    ngx_queue_insert_tail(&pool->busy, &pc->queue);

    pc->state = NGX_HTTP_MONETIZE_PG_BUSY;
    pc->query = q;
    q->conn = pc;

    /*
     * The query's timer runs from here: the server's statement_timeout
     * starts when the statement arrives, and the grace beyond it is what
     * lets an answer, even a refusal, come back before we give up on it.
     */

    if (q->event.timer_set) {
        ngx_del_timer(&q->event);
    }

    q->expires = ngx_current_msec + pool->timeout + pool->grace;
    ngx_add_timer(&q->event, ngx_http_monetize_pg_wait_for(q));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize pg: send \"%s\"", q->sql);

    if (!PQsendQueryParams(pc->pgconn, q->sql, q->nparams, NULL, q->params,
                           NULL, NULL, 0))
    {
        ngx_http_monetize_pg_log_error(pc, "cannot send a query to");
        ngx_http_monetize_pg_close(pc, 0);
        return;
    }

    q->sent = 1;

    ngx_http_monetize_pg_flush(pc);
}


void
ngx_http_monetize_pg_close(ngx_http_monetize_pg_conn_t *pc,
    ngx_uint_t connect_failed)
{
    ngx_http_monetize_pg_pool_t   *pool;
    ngx_http_monetize_pg_query_t  *q;

    pool = pc->pool;
    q = pc->query;

    if (pc->listener) {
        ngx_http_monetize_pg_detach(pc);
        PQclear(pc->result);
        PQfinish(pc->pgconn);
        ngx_free(pc);
        ngx_http_monetize_pg_listen_closed(pool);
        return;
    }

    ngx_queue_remove(&pc->queue);
    pool->nconns--;

    ngx_http_monetize_pg_detach(pc);

    PQclear(pc->result);
    PQfinish(pc->pgconn);
    ngx_free(pc);

    if (q != NULL) {
        ngx_http_monetize_pg_complete(q, NGX_HTTP_MONETIZE_PG_UNAVAILABLE,
                                      NULL);
    }

    if (ngx_queue_empty(&pool->waiting)) {
        return;
    }

    if (connect_failed) {
        if (pool->nconns == 0) {
            ngx_http_monetize_pg_fail_waiting(pool);
        }

        return;
    }

    /* a working connection went away while queries wait: replace it */

    if (pool->nconns < pool->size
        && ngx_http_monetize_pg_connect(pool) == NULL
        && pool->nconns == 0)
    {
        ngx_http_monetize_pg_fail_waiting(pool);
    }
}


static void
ngx_http_monetize_pg_fail_waiting(ngx_http_monetize_pg_pool_t *pool)
{
    ngx_queue_t                    waiting, *head;
    ngx_http_monetize_pg_query_t  *q;

    /* handlers may queue new queries: fail only those waiting now */

    ngx_queue_init(&waiting);
    ngx_queue_add(&waiting, &pool->waiting);
    ngx_queue_init(&pool->waiting);

    while (!ngx_queue_empty(&waiting)) {
        head = ngx_queue_head(&waiting);
        ngx_queue_remove(head);

        q = ngx_queue_data(head, ngx_http_monetize_pg_query_t, queue);
        q->queued = 0;

        ngx_http_monetize_pg_complete(q, NGX_HTTP_MONETIZE_PG_UNAVAILABLE,
                                      NULL);
    }
}


/*
 * The answer is delivered from a posted event, after the pool is back in a
 * consistent state: a handler never runs inside ngx_http_monetize_pg_send()
 * nor in the middle of the pool's own bookkeeping.
 */

void
ngx_http_monetize_pg_complete(ngx_http_monetize_pg_query_t *q,
    ngx_http_monetize_pg_status_e status, PGresult *res)
{
    if (q->event.timer_set) {
        ngx_del_timer(&q->event);
    }

    q->conn = NULL;
    q->status = status;
    q->result = res;

    q->event.handler = ngx_http_monetize_pg_deliver;
    ngx_post_event(&q->event, &ngx_posted_events);
}


static void
ngx_http_monetize_pg_deliver(ngx_event_t *ev)
{
    PGresult                      *res;
    ngx_http_monetize_pg_query_t  *q;

    q = ev->data;
    res = q->result;

    /* the handler may free the query's memory along with its owner */
    q->done = 1;
    q->handler(q);

    PQclear(res);
}


/* The pool's bound on a wait, or less if the caller's deadline is nearer. */

static ngx_msec_t
ngx_http_monetize_pg_wait_for(ngx_http_monetize_pg_query_t *q)
{
    ngx_msec_t      wait;
    ngx_msec_int_t  left;

    wait = q->pool->timeout + q->pool->grace;

    if (q->deadline == 0) {
        return wait;
    }

    left = (ngx_msec_int_t) (q->deadline - ngx_current_msec);

    if (left <= 0) {
        return 1;
    }

    return ngx_min(wait, (ngx_msec_t) left);
}


static void
ngx_http_monetize_pg_query_timeout(ngx_event_t *ev)
{
    ngx_uint_t                     cut;
    ngx_http_monetize_pg_conn_t   *pc;
    ngx_http_monetize_pg_query_t  *q;

    q = ev->data;

    cut = (q->deadline
           && (ngx_msec_int_t) (q->deadline - ngx_current_msec) <= 0);

    if (q->queued) {
        if (cut) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: no postgres connection became free by "
                          "its caller's deadline: %s", q->sql);

        } else {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: no postgres connection became free "
                          "within %Mms", q->pool->timeout + q->pool->grace);
        }

        ngx_queue_remove(&q->queue);
        q->queued = 0;
        ngx_http_monetize_pg_complete(q, NGX_HTTP_MONETIZE_PG_UNAVAILABLE,
                                      NULL);
        return;
    }

    if (cut && (ngx_msec_int_t) (q->expires - ngx_current_msec) > 0) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: postgres \"%V\" had not answered by its "
                      "caller's deadline; the statement is left to finish: "
                      "%s", &q->pool->conninfo.name, q->sql);
        ngx_http_monetize_pg_abandon(q);
        ngx_http_monetize_pg_complete(q, NGX_HTTP_MONETIZE_PG_UNAVAILABLE,
                                      NULL);
        return;
    }

    /*
     * The server still works on the statement and the protocol offers no
     * non-blocking way to stop it on this connection: drop the connection.
     */

    pc = q->conn;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "monetize: postgres \"%V\" did not answer within %Mms: %s",
                  &q->pool->conninfo.name, q->pool->timeout + q->pool->grace,
                  q->sql);

    ngx_http_monetize_pg_close(pc, 0);
}


/*
 * No one waits for a sent statement any more, but the server still runs
 * it: its connection keeps the statement's own bound, so a hung statement
 * never holds it for good, and serves the queue again once it answers.
 */

static void
ngx_http_monetize_pg_abandon(ngx_http_monetize_pg_query_t *q)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (q->expires - ngx_current_msec);

    ngx_add_timer(q->conn->connection->read, left > 0 ? left : 1);

    q->conn->query = NULL;
    q->conn = NULL;
}


static void
ngx_http_monetize_pg_query_cleanup(void *data)
{
    ngx_http_monetize_pg_query_t *q = data;

    if (q->done || q->pool == NULL) {
        return;
    }

    if (q->event.timer_set) {
        ngx_del_timer(&q->event);
    }

    if (q->event.posted) {
        ngx_delete_posted_event(&q->event);
        PQclear(q->result);
        q->result = NULL;
    }

    if (q->queued) {
        ngx_queue_remove(&q->queue);
        q->queued = 0;
    }

    if (q->conn) {
        ngx_http_monetize_pg_abandon(q);
    }

    q->done = 1;
}


ngx_str_t *
ngx_http_monetize_pg_name(ngx_http_monetize_pg_pool_t *pool)
{
    return &pool->conninfo.name;
}


/* The longest a sent query waits for its answer. */

ngx_msec_t
ngx_http_monetize_pg_timeout(ngx_http_monetize_pg_pool_t *pool)
{
    return pool->timeout + pool->grace;
}


void
ngx_http_monetize_pg_pool_close(ngx_http_monetize_pg_pool_t *pool)
{
    ngx_queue_t                  *head;
    ngx_http_monetize_pg_conn_t  *pc;

    if (!pool->initialized) {
        return;
    }

    if (pool->listener.retry.timer_set) {
        ngx_del_timer(&pool->listener.retry);
    }

    pc = pool->listener.conn;

    if (pc) {
        ngx_http_monetize_pg_detach(pc);
        PQclear(pc->result);
        PQfinish(pc->pgconn);
        ngx_free(pc);
        pool->listener.conn = NULL;
    }

    ngx_queue_add(&pool->busy, &pool->idle);
    ngx_queue_init(&pool->idle);

    while (!ngx_queue_empty(&pool->busy)) {
        head = ngx_queue_head(&pool->busy);
        ngx_queue_remove(head);

        pc = ngx_queue_data(head, ngx_http_monetize_pg_conn_t, queue);

        ngx_http_monetize_pg_detach(pc);
        PQclear(pc->result);
        PQfinish(pc->pgconn);
        ngx_free(pc);
    }

    pool->nconns = 0;
}


ngx_http_monetize_pg_pool_t *
ngx_http_monetize_pg_pool_create(ngx_conf_t *cf, ngx_str_t *conninfo,
    ngx_uint_t size, ngx_msec_t timeout)
{
    ngx_http_monetize_pg_pool_t  *pool;

    pool = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    if (ngx_http_monetize_pg_conninfo_parse(cf, conninfo, timeout,
                                            &pool->conninfo)
        != NGX_OK)
    {
        return NULL;
    }

    pool->size = size;
    pool->timeout = timeout;
    pool->grace = 1000;

    return pool;
}
