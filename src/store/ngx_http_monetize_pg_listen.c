
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg_conn.h"


/*
 * LISTEN on a connection of its own, outside the pool's count. The handler
 * hears every notification, and (with a NULL channel) each time the
 * subscription starts: whatever it missed while not subscribed, it must
 * assume changed. A lost connection is replaced a second later.
 */


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


void
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

void
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


void
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


void
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


/* Is every change heard now? */

ngx_uint_t
ngx_http_monetize_pg_listening(ngx_http_monetize_pg_pool_t *pool)
{
    return pool->initialized && pool->listener.subscribed;
}
