
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_


/* The Redis store's insides, shared by its three files and no one else. */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_monetize_redis.h"


#define NGX_HTTP_MONETIZE_REDIS_SHA_LEN  40


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
    unsigned                           initialized:1;
    unsigned                           down:1;     /* logged unreachable */
    unsigned                           closing:1;
    unsigned                           loading:1;  /* a SCRIPT LOAD sent */
    unsigned                           exiting:1;
};


extern ngx_str_t  ngx_http_monetize_redis_script;


ngx_int_t ngx_http_monetize_redis_usable(ngx_http_monetize_redis_t *redis);
ngx_int_t ngx_http_monetize_redis_load_script(
    ngx_http_monetize_redis_t *redis, ngx_uint_t handshake);
void ngx_http_monetize_redis_unreachable(ngx_http_monetize_redis_t *redis,
    const char *fmt, ...);
void ngx_http_monetize_redis_close(ngx_http_monetize_redis_t *redis);
void ngx_http_monetize_redis_free_spare(ngx_http_monetize_redis_t *redis);


#endif /* _NGX_HTTP_MONETIZE_REDIS_CONN_H_INCLUDED_ */
