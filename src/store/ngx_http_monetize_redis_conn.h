
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_


/* The Redis store's insides, shared by its four files and no one else. */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_monetize_redis.h"


#define NGX_HTTP_MONETIZE_REDIS_SHA_LEN  40
#define NGX_HTTP_MONETIZE_REDIS_BATCH    100    /* batch= by default */
#define NGX_HTTP_MONETIZE_REDIS_BATCH_MAX  1000


typedef struct ngx_http_monetize_redis_batch_s
    ngx_http_monetize_redis_batch_t;


typedef enum {
    NGX_HTTP_MONETIZE_REDIS_CLOSED = 0,
    NGX_HTTP_MONETIZE_REDIS_CONNECTING,    /* TCP, AUTH, SELECT, LOAD */
    NGX_HTTP_MONETIZE_REDIS_READY
} ngx_http_monetize_redis_state_e;


struct ngx_http_monetize_redis_s {
    /* configuration */
    ngx_str_t                          name;       /* as given, for the log */
    char                              *host;       /* numeric, or a path */
    int                                port;       /* 0: a unix socket */
    ngx_str_t                          password;
    ngx_int_t                          db;         /* -1: no SELECT */
    ngx_msec_t                         timeout;
    ngx_str_t                          prefix;
    ngx_uint_t                         batch_max;  /* calls an EVALSHA */
    u_char                             sha[NGX_HTTP_MONETIZE_REDIS_SHA_LEN];

    /* the worker's connection */
    redisAsyncContext                 *ac;
    ngx_connection_t                  *connection;
    ngx_http_monetize_redis_state_e    state;
    ngx_event_t                        handshake;  /* its timer */
    ngx_event_t                        retry;      /* the next connect */
    ngx_msec_t                         started;    /* the last connect */
    ngx_queue_t                        spare;      /* command records */
    ngx_uint_t                         nspare;

    /* the limiter's batches (ngx_http_monetize_redis_batch.c) */
    ngx_http_monetize_redis_batch_t   *gathering;  /* not sent yet */
    ngx_uint_t                         inflight;   /* sent, unanswered */
    ngx_event_t                        send;       /* posted: send it */
    ngx_queue_t                        spare_batches;
    ngx_uint_t                         nspare_batches;
    const char                       **argv;       /* for the EVALSHA */
    size_t                            *argvlen;
    unsigned                           initialized:1;
    unsigned                           down:1;     /* logged unreachable */
    unsigned                           closing:1;
    unsigned                           loading:1;  /* a SCRIPT LOAD sent */
    unsigned                           exiting:1;
};


/*
 * A command of a caller's: a call of the limiter, decided in a batch, or a
 * PING, sent alone. hiredis (or a batch) may hold it after its owner went
 * away, so it is a record of our own, not the owner's memory: the owner's
 * pool cleanup detaches it, and it is reused only once both are done.
 */

typedef struct {
    ngx_queue_t                         queue;     /* in a batch, or spare */
    ngx_http_monetize_redis_t          *redis;
    ngx_http_monetize_redis_batch_t    *batch;     /* the one it is in */
    ngx_event_t                         event;     /* a PING's timer, then
                                                      delivery */
    ngx_pool_cleanup_t                 *cleanup;   /* in the owner's pool */
    ngx_http_monetize_redis_limit_pt    limit;     /* one of the two */
    ngx_http_monetize_redis_ping_pt     ping;
    void                               *data;
    ngx_str_t                           key;       /* with the prefix */
    ngx_str_t                           rate;      /* as text, for ARGV */
    ngx_str_t                           burst;
    ngx_uint_t                          limit_n;   /* the burst */
    u_char                              text[2 * NGX_INT_T_LEN];
    ngx_int_t                           rc;
    ngx_http_monetize_limit_t           lim;
    unsigned                            pending:1; /* hiredis or a batch
                                                      holds it */
    unsigned                            waiting:1; /* the owner waits */
    unsigned                            answered:1;
} ngx_http_monetize_redis_cmd_t;


extern ngx_str_t  ngx_http_monetize_redis_script;


ngx_int_t ngx_http_monetize_redis_usable(ngx_http_monetize_redis_t *redis);
ngx_int_t ngx_http_monetize_redis_load_script(
    ngx_http_monetize_redis_t *redis, ngx_uint_t handshake);
void ngx_http_monetize_redis_unreachable(ngx_http_monetize_redis_t *redis,
    const char *fmt, ...);
void ngx_http_monetize_redis_close(ngx_http_monetize_redis_t *redis);
void ngx_http_monetize_redis_free_spare(ngx_http_monetize_redis_t *redis);

void ngx_http_monetize_redis_answer(ngx_http_monetize_redis_cmd_t *cmd,
    ngx_int_t rc);
void ngx_http_monetize_redis_release(ngx_http_monetize_redis_cmd_t *cmd);

ngx_int_t ngx_http_monetize_redis_batch_init(
    ngx_http_monetize_redis_t *redis);
ngx_int_t ngx_http_monetize_redis_batch_add(
    ngx_http_monetize_redis_cmd_t *cmd);
void ngx_http_monetize_redis_batch_detach(
    ngx_http_monetize_redis_cmd_t *cmd);
void ngx_http_monetize_redis_batch_exit(ngx_http_monetize_redis_t *redis);


#endif /* _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_ */
