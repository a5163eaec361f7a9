
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"


/*
 * A per-worker pool of libpq connections driven by the worker's events.
 *
 * Every connection is non-blocking from PQconnectStartParams() on; its socket
 * is wrapped in an ngx_connection_t so that epoll tells us when libpq can
 * make progress. Queries wait in a FIFO until a connection is idle. Every
 * query runs under its own timer; every connection attempt under the
 * connection's read timer.
 */


typedef enum {
    NGX_HTTP_MONETIZE_PG_CONNECTING = 0,
    NGX_HTTP_MONETIZE_PG_IDLE,
    NGX_HTTP_MONETIZE_PG_BUSY
} ngx_http_monetize_pg_state_e;


struct ngx_http_monetize_pg_conn_s {
    ngx_queue_t                        queue;      /* pool->idle or ->busy */
    ngx_http_monetize_pg_pool_t       *pool;
    PGconn                            *pgconn;
    ngx_connection_t                  *connection;
    ngx_http_monetize_pg_state_e       state;
    ngx_http_monetize_pg_query_t      *query;      /* NULL when detached */
    PGresult                          *result;
    unsigned                           listener:1;
};


/* A connection of its own that LISTENs, outside the pool's count. */

typedef struct {
    const char                        *sql;        /* the LISTEN statements */
    ngx_http_monetize_pg_notify_pt     handler;
    void                              *data;
    ngx_http_monetize_pg_conn_t       *conn;
    ngx_event_t                        retry;
    unsigned                           sent:1;
    unsigned                           subscribed:1;
} ngx_http_monetize_pg_listener_t;


struct ngx_http_monetize_pg_pool_s {
    ngx_http_monetize_pg_conninfo_t    conninfo;
    ngx_uint_t                         size;
    ngx_msec_t                         timeout;

    ngx_msec_t                         grace;      /* beyond the server's */

    ngx_uint_t                         nconns;
    ngx_queue_t                        idle;
    ngx_queue_t                        busy;       /* connecting and busy */
    ngx_queue_t                        waiting;    /* queries */
    ngx_http_monetize_pg_listener_t    listener;
    unsigned                           initialized:1;
    unsigned                           down:1;
};


static void ngx_http_monetize_pg_init(ngx_http_monetize_pg_pool_t *pool);
static ngx_http_monetize_pg_conn_t *ngx_http_monetize_pg_connect(
    ngx_http_monetize_pg_pool_t *pool);
static void ngx_http_monetize_pg_listen_connect(ngx_event_t *ev);
static void ngx_http_monetize_pg_listen_ready(
    ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_listen_closed(
    ngx_http_monetize_pg_pool_t *pool);
static void ngx_http_monetize_pg_notifies(ngx_http_monetize_pg_conn_t *pc);
static ngx_int_t ngx_http_monetize_pg_attach(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_detach(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_event_handler(ngx_event_t *ev);
static void ngx_http_monetize_pg_connect_poll(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_ready(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_dispatch(ngx_http_monetize_pg_conn_t *pc,
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_pg_flush(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_read(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_wait(ngx_http_monetize_pg_conn_t *pc,
    PostgresPollingStatusType what);
static void ngx_http_monetize_pg_close(ngx_http_monetize_pg_conn_t *pc,
    ngx_uint_t connect_failed);
static void ngx_http_monetize_pg_fail_waiting(
    ngx_http_monetize_pg_pool_t *pool);
static void ngx_http_monetize_pg_complete(ngx_http_monetize_pg_query_t *q,
    ngx_http_monetize_pg_status_e status, PGresult *res);
static void ngx_http_monetize_pg_deliver(ngx_event_t *ev);
static void ngx_http_monetize_pg_query_timeout(ngx_event_t *ev);
static void ngx_http_monetize_pg_query_cleanup(void *data);
static void ngx_http_monetize_pg_unreachable(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_log_error(ngx_http_monetize_pg_conn_t *pc,
    const char *what);
static void ngx_http_monetize_pg_notice(void *arg, const char *message);


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
    ngx_add_timer(&q->event, pool->timeout + pool->grace);

    if (!ngx_queue_empty(&pool->idle)) {
        head = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(head, ngx_http_monetize_pg_conn_t, queue);
        ngx_http_monetize_pg_dispatch(pc, q);
        return NGX_OK;
    }

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


static void
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


/* Starts a pooled connection; the caller makes a listener of it. */

static ngx_http_monetize_pg_conn_t *
ngx_http_monetize_pg_connect(ngx_http_monetize_pg_pool_t *pool)
{
    ngx_http_monetize_pg_conn_t  *pc;

    pc = ngx_calloc(sizeof(ngx_http_monetize_pg_conn_t), ngx_cycle->log);
    if (pc == NULL) {
        return NULL;
    }

    pc->pool = pool;
    pc->state = NGX_HTTP_MONETIZE_PG_CONNECTING;

    pc->pgconn = PQconnectStartParams(pool->conninfo.keywords,
                                       pool->conninfo.values, 0);

    if (pc->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "monetize: PQconnectStartParams() failed");
        ngx_free(pc);
        return NULL;
    }

    if (PQstatus(pc->pgconn) == CONNECTION_BAD
        || PQsetnonblocking(pc->pgconn, 1) == -1)
    {
        ngx_http_monetize_pg_unreachable(pc);
        PQfinish(pc->pgconn);
        ngx_free(pc);
        return NULL;
    }

    PQsetNoticeProcessor(pc->pgconn, ngx_http_monetize_pg_notice, pool);

    if (ngx_http_monetize_pg_attach(pc) != NGX_OK) {
        PQfinish(pc->pgconn);
        ngx_free(pc);
        return NULL;
    }

    ngx_queue_insert_tail(&pool->busy, &pc->queue);
    pool->nconns++;

    ngx_add_timer(pc->connection->read, pool->timeout);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize pg: connecting, %ui connections",
                   pool->nconns);

    /* libpq starts as if PQconnectPoll() had asked for writability */
    ngx_http_monetize_pg_wait(pc, PGRES_POLLING_WRITING);

    return pc;
}


static ngx_int_t
ngx_http_monetize_pg_attach(ngx_http_monetize_pg_conn_t *pc)
{
    int                fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pgconn);

    if (fd == -1) {
        ngx_http_monetize_pg_log_error(pc, "no socket for");
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_http_monetize_pg_event_handler;
    c->write->handler = ngx_http_monetize_pg_event_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    /* our timers never keep a worker that is shutting down */
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    pc->connection = c;

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        pc->connection = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Unhooks the socket from nginx; libpq owns the descriptor and closes it. */

static void
ngx_http_monetize_pg_detach(ngx_http_monetize_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->connection;

    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active || c->write->disabled) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    pc->connection = NULL;
}


static void
ngx_http_monetize_pg_event_handler(ngx_event_t *ev)
{
    ngx_connection_t             *c;
    ngx_http_monetize_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (ev->timedout) {
        ev->timedout = 0;
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: connecting to postgres \"%V\" timed out",
                      &pc->pool->conninfo.name);
        ngx_http_monetize_pg_close(pc, 1);
        return;
    }

    switch (pc->state) {

    case NGX_HTTP_MONETIZE_PG_CONNECTING:
        ngx_http_monetize_pg_connect_poll(pc);
        return;

    default:
        if (ev->write) {
            ngx_http_monetize_pg_flush(pc);

        } else {
            ngx_http_monetize_pg_read(pc);
        }
    }
}


static void
ngx_http_monetize_pg_connect_poll(ngx_http_monetize_pg_conn_t *pc)
{
    PostgresPollingStatusType  rc;

    rc = PQconnectPoll(pc->pgconn);

    /* libpq may have moved to a new socket (another address, SSL retry) */

    if (rc != PGRES_POLLING_FAILED
        && PQsocket(pc->pgconn) != pc->connection->fd)
    {
        ngx_http_monetize_pg_detach(pc);

        if (ngx_http_monetize_pg_attach(pc) != NGX_OK) {
            ngx_http_monetize_pg_close(pc, 1);
            return;
        }

        ngx_add_timer(pc->connection->read, pc->pool->timeout);
    }

    switch (rc) {

    case PGRES_POLLING_OK:
        if (pc->connection->read->timer_set) {
            ngx_del_timer(pc->connection->read);
        }

        if (pc->pool->down) {
            pc->pool->down = 0;
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "monetize: postgres \"%V\" is reachable again",
                          &pc->pool->conninfo.name);
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "monetize pg: connected");

        ngx_http_monetize_pg_ready(pc);
        return;

    case PGRES_POLLING_FAILED:
        ngx_http_monetize_pg_unreachable(pc);
        ngx_http_monetize_pg_close(pc, 1);
        return;

    default:
        ngx_http_monetize_pg_wait(pc, rc);
        return;
    }
}


/* The connection is free: serve the oldest waiting query, or rest idle. */

static void
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

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize pg: send \"%s\"", q->sql);

    if (!PQsendQueryParams(pc->pgconn, q->sql, q->nparams, NULL, q->params,
                           NULL, NULL, 0))
    {
        ngx_http_monetize_pg_log_error(pc, "cannot send a query to");
        ngx_http_monetize_pg_close(pc, 0);
        return;
    }

    ngx_http_monetize_pg_flush(pc);
}


static void
ngx_http_monetize_pg_flush(ngx_http_monetize_pg_conn_t *pc)
{
    int  rc;

    if (pc->state != NGX_HTTP_MONETIZE_PG_BUSY) {
        return;
    }

    rc = PQflush(pc->pgconn);

    if (rc == -1) {
        ngx_http_monetize_pg_log_error(pc, "cannot send a query to");
        ngx_http_monetize_pg_close(pc, 0);
        return;
    }

    ngx_http_monetize_pg_wait(pc, rc == 1 ? PGRES_POLLING_WRITING
                                          : PGRES_POLLING_READING);
}


static void
ngx_http_monetize_pg_read(ngx_http_monetize_pg_conn_t *pc)
{
    PGresult                      *res;
    ngx_http_monetize_pg_query_t  *q;
    ngx_http_monetize_pg_status_e  status;

    if (!PQconsumeInput(pc->pgconn) || PQstatus(pc->pgconn) == CONNECTION_BAD)
    {
        if (pc->state == NGX_HTTP_MONETIZE_PG_BUSY) {
            ngx_http_monetize_pg_log_error(pc, "lost the connection to");

        } else {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "monetize: postgres \"%V\" closed an idle "
                          "connection", &pc->pool->conninfo.name);
        }

        ngx_http_monetize_pg_close(pc, 0);
        return;
    }

    if (pc->listener) {
        ngx_http_monetize_pg_notifies(pc);
    }

    if (pc->state != NGX_HTTP_MONETIZE_PG_BUSY) {
        ngx_http_monetize_pg_wait(pc, PGRES_POLLING_READING);
        return;
    }

    while (!PQisBusy(pc->pgconn)) {

        res = PQgetResult(pc->pgconn);

        if (res == NULL) {
            goto done;
        }

        /* keep the first error, or else the last result */

        if (pc->result != NULL
            && PQresultStatus(pc->result) == PGRES_FATAL_ERROR)
        {
            PQclear(res);

        } else {
            PQclear(pc->result);
            pc->result = res;
        }
    }

    ngx_http_monetize_pg_wait(pc, PGRES_POLLING_READING);
    return;

done:

    res = pc->result;
    q = pc->query;

    pc->result = NULL;
    pc->query = NULL;

    status = (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR)
             ? NGX_HTTP_MONETIZE_PG_ERROR : NGX_HTTP_MONETIZE_PG_OK;

    if (res == NULL) {
        status = NGX_HTTP_MONETIZE_PG_UNAVAILABLE;
    }

    if (q != NULL) {
        ngx_http_monetize_pg_complete(q, status, res);

    } else {
        PQclear(res);
    }

    if (PQtransactionStatus(pc->pgconn) != PQTRANS_IDLE) {
        /* a statement left a transaction open: never reuse such state */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: a query left a transaction open on "
                      "postgres \"%V\", closing the connection",
                      &pc->pool->conninfo.name);
        ngx_http_monetize_pg_close(pc, 0);
        return;
    }

    ngx_http_monetize_pg_ready(pc);
}


/*
 * Level-triggered: libpq does not read a socket until it would block, so
 * with edge-triggered events an EOF that arrived behind a message would
 * never be reported again. Read interest stays on for the connection's
 * life; write interest only while libpq has something to send.
 */

static void
ngx_http_monetize_pg_wait(ngx_http_monetize_pg_conn_t *pc,
    PostgresPollingStatusType what)
{
    ngx_event_t  *wev;

    wev = pc->connection->write;

    if (what == PGRES_POLLING_WRITING) {
        if (!wev->active
            && ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
        {
            /* the query's timer or the connect timer ends the wait */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: cannot watch a postgres socket");
        }

        return;
    }

    if (wev->active) {
        (void) ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }
}


static void
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

static void
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


static void
ngx_http_monetize_pg_query_timeout(ngx_event_t *ev)
{
    ngx_http_monetize_pg_conn_t   *pc;
    ngx_http_monetize_pg_query_t  *q;

    q = ev->data;

    if (q->queued) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: no postgres connection became free within "
                      "%Mms", q->pool->timeout + q->pool->grace);
        ngx_queue_remove(&q->queue);
        q->queued = 0;
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
                  &q->pool->conninfo.name, q->pool->timeout + q->pool->grace, q->sql);

    ngx_http_monetize_pg_close(pc, 0);
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
        q->conn->query = NULL;
        q->conn = NULL;
    }

    q->done = 1;
}


/* Logged once per outage; "is reachable again" closes it. */

static void
ngx_http_monetize_pg_unreachable(ngx_http_monetize_pg_conn_t *pc)
{
    if (!pc->pool->down) {
        ngx_http_monetize_pg_log_error(pc, "cannot connect to");
        pc->pool->down = 1;
    }
}


static void
ngx_http_monetize_pg_log_error(ngx_http_monetize_pg_conn_t *pc,
    const char *what)
{
    size_t  len;
    u_char  msg[512];

    len = ngx_http_monetize_pg_one_line(PQerrorMessage(pc->pgconn), msg,
                                        sizeof(msg));

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "monetize: %s postgres \"%V\": %*s",
                  what, &pc->pool->conninfo.name, len, msg);
}


static void
ngx_http_monetize_pg_notice(void *arg, const char *message)
{
    ngx_http_monetize_pg_pool_t *pool = arg;

    size_t  len;

    len = ngx_strlen(message);

    while (len && message[len - 1] == '\n') {
        len--;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "monetize: postgres \"%V\" says: %*s",
                  &pool->conninfo.name, len, message);
}


/*
 * LISTEN on a connection of its own. The handler hears every notification,
 * and (with a NULL channel) each time the subscription starts: whatever it
 * missed while not subscribed, it must assume changed.
 */

ngx_int_t
ngx_http_monetize_pg_listen(ngx_http_monetize_pg_pool_t *pool,
    const char *sql, ngx_http_monetize_pg_notify_pt handler, void *data)
{
    ngx_http_monetize_pg_init(pool);

    pool->listener.sql = sql;
    pool->listener.handler = handler;
    pool->listener.data = data;

    ngx_http_monetize_pg_listen_connect(&pool->listener.retry);

    return NGX_OK;
}


static void
ngx_http_monetize_pg_listen_connect(ngx_event_t *ev)
{
    ngx_http_monetize_pg_pool_t *pool = ev->data;

    ngx_http_monetize_pg_conn_t  *pc;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    pc = ngx_http_monetize_pg_connect(pool);

    if (pc == NULL) {
        ngx_http_monetize_pg_listen_closed(pool);
        return;
    }

    /* not one of the pool's: out of its queues and its count */
    ngx_queue_remove(&pc->queue);
    pool->nconns--;

    pc->listener = 1;
    pool->listener.conn = pc;
}


/*
 * Connected: send the LISTEN statements. Once they completed, tell the
 * handler that the subscription starts; from then on only notifications
 * come.
 */

static void
ngx_http_monetize_pg_listen_ready(ngx_http_monetize_pg_conn_t *pc)
{
    ngx_http_monetize_pg_listener_t  *ls;

    ls = &pc->pool->listener;

    if (!ls->sent) {
        if (!PQsendQuery(pc->pgconn, ls->sql)) {
            ngx_http_monetize_pg_log_error(pc, "cannot LISTEN on");
            ngx_http_monetize_pg_close(pc, 0);
            return;
        }

        ls->sent = 1;
        pc->state = NGX_HTTP_MONETIZE_PG_BUSY;
        ngx_http_monetize_pg_flush(pc);
        return;
    }

    ngx_http_monetize_pg_wait(pc, PGRES_POLLING_READING);

    if (!ls->subscribed) {
        ls->subscribed = 1;

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "monetize: listening for changes on postgres \"%V\"",
                      &pc->pool->conninfo.name);

        ls->handler(ls->data, NULL, NULL);
    }
}


static void
ngx_http_monetize_pg_listen_closed(ngx_http_monetize_pg_pool_t *pool)
{
    ngx_http_monetize_pg_listener_t  *ls;

    ls = &pool->listener;

    ls->conn = NULL;
    ls->sent = 0;
    ls->subscribed = 0;

    if (!ngx_exiting && !ngx_terminate && !ngx_quit
        && !ls->retry.timer_set)
    {
        ngx_add_timer(&ls->retry, 1000);
    }
}


static void
ngx_http_monetize_pg_notifies(ngx_http_monetize_pg_conn_t *pc)
{
    PGnotify                         *n;
    ngx_http_monetize_pg_listener_t  *ls;

    ls = &pc->pool->listener;

    while ((n = PQnotifies(pc->pgconn)) != NULL) {
        ls->handler(ls->data, n->relname, n->extra);
        PQfreemem(n);
    }
}


ngx_str_t *
ngx_http_monetize_pg_name(ngx_http_monetize_pg_pool_t *pool)
{
    return &pool->conninfo.name;
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
