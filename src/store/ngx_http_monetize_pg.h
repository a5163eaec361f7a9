
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_PG_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>


typedef struct ngx_http_monetize_pg_pool_s   ngx_http_monetize_pg_pool_t;
typedef struct ngx_http_monetize_pg_conn_s   ngx_http_monetize_pg_conn_t;
typedef struct ngx_http_monetize_pg_query_s  ngx_http_monetize_pg_query_t;

/* libpq's connection parameters, ready for PQconnectStartParams() */
typedef struct {
    const char                       **keywords;
    const char                       **values;
    ngx_str_t                          name;       /* for the log */
} ngx_http_monetize_pg_conninfo_t;

typedef void (*ngx_http_monetize_pg_handler_pt)(
    ngx_http_monetize_pg_query_t *q);

/* channel and payload are NULL when a subscription (re)starts */
typedef void (*ngx_http_monetize_pg_notify_pt)(void *data,
    const char *channel, const char *payload);


typedef enum {
    NGX_HTTP_MONETIZE_PG_OK = 0,        /* result holds the rows */
    NGX_HTTP_MONETIZE_PG_ERROR,         /* the server refused the statement;
                                           result holds its error */
    NGX_HTTP_MONETIZE_PG_UNAVAILABLE    /* no answer: down, lost, timed out */
} ngx_http_monetize_pg_status_e;


/*
 * A query lives in its owner's pool (usually the request's). The handler is
 * called once, from a posted event, never from within
 * ngx_http_monetize_pg_send(); the result is valid only until the handler
 * returns. When the owner's pool goes away
 * first, the query is detached: a queued one is dropped, an in-flight one
 * finishes on its connection and its answer is discarded.
 *
 * A deadline, when given, cuts the caller's wait, queued or sent, with
 * UNAVAILABLE; a sent statement is then detached the same way. Only for
 * statements whose outcome need not be known (reads): a money statement
 * keeps its full bound, so that "no answer" stays rare and is resolved.
 */

struct ngx_http_monetize_pg_query_s {
    const char                        *sql;
    int                                nparams;
    const char                       **params;
    ngx_http_monetize_pg_handler_pt    handler;
    void                              *data;
    ngx_msec_t                         deadline;   /* ngx_current_msec's;
                                                      0: the pool's bound */

    ngx_http_monetize_pg_status_e      status;
    PGresult                          *result;

    /* private to the pool */
    ngx_http_monetize_pg_pool_t       *pool;
    ngx_http_monetize_pg_conn_t       *conn;
    ngx_queue_t                        queue;
    ngx_event_t                        event;      /* timer, then delivery */
    ngx_msec_t                         expires;    /* the pool's bound on a
                                                      sent statement */
    unsigned                           queued:1;
    unsigned                           done:1;
    unsigned                           sent:1;     /* the server may have it */
};


ngx_http_monetize_pg_pool_t *ngx_http_monetize_pg_pool_create(ngx_conf_t *cf,
    ngx_str_t *conninfo, ngx_uint_t size, ngx_msec_t timeout);
void ngx_http_monetize_pg_pool_close(ngx_http_monetize_pg_pool_t *pool);
ngx_str_t *ngx_http_monetize_pg_name(ngx_http_monetize_pg_pool_t *pool);
ngx_msec_t ngx_http_monetize_pg_timeout(ngx_http_monetize_pg_pool_t *pool);
ngx_int_t ngx_http_monetize_pg_listen(ngx_http_monetize_pg_pool_t *pool,
    const char *sql, ngx_http_monetize_pg_notify_pt handler, void *data);
ngx_uint_t ngx_http_monetize_pg_listening(ngx_http_monetize_pg_pool_t *pool);
ngx_int_t ngx_http_monetize_pg_conninfo_parse(ngx_conf_t *cf,
    ngx_str_t *conninfo, ngx_msec_t timeout,
    ngx_http_monetize_pg_conninfo_t *ci);

ngx_http_monetize_pg_query_t *ngx_http_monetize_pg_query_create(
    ngx_pool_t *owner, int nparams);
ngx_int_t ngx_http_monetize_pg_send(ngx_http_monetize_pg_pool_t *pool,
    ngx_http_monetize_pg_query_t *q);

ngx_int_t ngx_http_monetize_pg_get_str(ngx_http_monetize_pg_query_t *q,
    int row, int col, ngx_str_t *value);
ngx_int_t ngx_http_monetize_pg_get_int(ngx_http_monetize_pg_query_t *q,
    int row, int col, int64_t *value);
const char *ngx_http_monetize_pg_sqlstate(ngx_http_monetize_pg_query_t *q);
ngx_uint_t ngx_http_monetize_pg_transient(ngx_http_monetize_pg_query_t *q);
void ngx_http_monetize_pg_log_refused(ngx_log_t *log,
    ngx_http_monetize_pg_query_t *q);
size_t ngx_http_monetize_pg_one_line(const char *text, u_char *buf,
    size_t size);
u_char *ngx_http_monetize_pg_array(ngx_pool_t *pool, ngx_str_t *values,
    ngx_uint_t n, ngx_uint_t quote);
const char *ngx_http_monetize_pg_constraint(ngx_http_monetize_pg_query_t *q);


#endif /* _NGX_HTTP_MONETIZE_PG_H_INCLUDED_ */
