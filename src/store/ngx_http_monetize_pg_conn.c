
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_socket.h"
#include "ngx_http_monetize_pg_conn.h"


/*
 * One libpq connection on the worker's events: non-blocking from
 * PQconnectStartParams() on, its socket wrapped in an ngx_connection_t so
 * that epoll tells when libpq can make progress; connect, send, read. What
 * the connection is for, and what happens when it closes, is the pool's
 * (ngx_http_monetize_pg.c) and the listener's (_pg_listen.c).
 */


static ngx_int_t ngx_http_monetize_pg_attach(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_event_handler(ngx_event_t *ev);
static void ngx_http_monetize_pg_connect_poll(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_read(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_unreachable(ngx_http_monetize_pg_conn_t *pc);
static void ngx_http_monetize_pg_notice(void *arg, const char *message);


/* Starts a pooled connection; the caller makes a listener of it. */

ngx_http_monetize_pg_conn_t *
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

void
ngx_http_monetize_pg_detach(ngx_http_monetize_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->connection;

    if (c == NULL) {
        return;
    }

    ngx_http_monetize_socket_release(c);

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

        if (pc->state == NGX_HTTP_MONETIZE_PG_BUSY) {
            /* the deadline of a query whose owner went away */
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: postgres \"%V\" did not answer a "
                          "statement whose caller left; closing its "
                          "connection", &pc->pool->conninfo.name);
            ngx_http_monetize_pg_close(pc, 0);
            return;
        }

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


void
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

    if (pc->connection->read->timer_set) {
        ngx_del_timer(pc->connection->read);
    }

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

void
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


/* Logged once per outage; "is reachable again" closes it. */

static void
ngx_http_monetize_pg_unreachable(ngx_http_monetize_pg_conn_t *pc)
{
    if (!pc->pool->down) {
        ngx_http_monetize_pg_log_error(pc, "cannot connect to");
        pc->pool->down = 1;
    }
}


void
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
