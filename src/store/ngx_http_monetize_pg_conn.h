
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_PG_CONN_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_PG_CONN_H_INCLUDED_


/* The pool's insides, shared by its three files and no one else. */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"


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


ngx_http_monetize_pg_conn_t *ngx_http_monetize_pg_connect(
    ngx_http_monetize_pg_pool_t *pool);
void ngx_http_monetize_pg_detach(ngx_http_monetize_pg_conn_t *pc);
void ngx_http_monetize_pg_flush(ngx_http_monetize_pg_conn_t *pc);
void ngx_http_monetize_pg_wait(ngx_http_monetize_pg_conn_t *pc,
    PostgresPollingStatusType what);
void ngx_http_monetize_pg_log_error(ngx_http_monetize_pg_conn_t *pc,
    const char *what);
void ngx_http_monetize_pg_init(ngx_http_monetize_pg_pool_t *pool);
void ngx_http_monetize_pg_ready(ngx_http_monetize_pg_conn_t *pc);
void ngx_http_monetize_pg_close(ngx_http_monetize_pg_conn_t *pc,
    ngx_uint_t connect_failed);
void ngx_http_monetize_pg_complete(ngx_http_monetize_pg_query_t *q,
    ngx_http_monetize_pg_status_e status, PGresult *res);
void ngx_http_monetize_pg_listen_connect(ngx_event_t *ev);
void ngx_http_monetize_pg_listen_ready(ngx_http_monetize_pg_conn_t *pc);
void ngx_http_monetize_pg_listen_closed(
    ngx_http_monetize_pg_pool_t *pool);
void ngx_http_monetize_pg_notifies(ngx_http_monetize_pg_conn_t *pc);


#endif /* _NGX_HTTP_MONETIZE_PG_CONN_H_INCLUDED_ */
