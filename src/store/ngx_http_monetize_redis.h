
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_REDIS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_limit.h"


/*
 * The Redis store: one pipelined hiredis connection per worker, on the
 * worker's events. hiredis stays inside ngx_http_monetize_redis*.c; callers
 * see this opaque type only.
 */

typedef struct ngx_http_monetize_redis_s  ngx_http_monetize_redis_t;


/*
 * rc NGX_OK: lim is filled in; NGX_ERROR: no answer (Redis down, the
 * connection lost, the timeout passed, or an error reply, logged).
 */
typedef void (*ngx_http_monetize_redis_limit_pt)(void *data, ngx_int_t rc,
    ngx_http_monetize_limit_t *lim);

/* rc NGX_OK: PONG; NGX_ERROR: as above */
typedef void (*ngx_http_monetize_redis_ping_pt)(void *data, ngx_int_t rc);


char *ngx_http_monetize_redis_conf(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_http_monetize_redis_t **redis);

void ngx_http_monetize_redis_init_process(ngx_http_monetize_redis_t *redis);
void ngx_http_monetize_redis_exit_process(ngx_http_monetize_redis_t *redis);

/* connected, and AUTH, SELECT and SCRIPT LOAD answered */

/*
 * One GCRA decision on Redis's clock, exactly ngx_http_monetize_gcra() of
 * the key "<prefix><key>"; rate 1 to 1000000 calls a second, burst >= 1.
 * It is made in a batch with the worker's other calls, within the Redis
 * timeout from this call (else NGX_ERROR).
 *
 * NGX_AGAIN: the handler will be called once, from an event, never inside
 * this call; if the owner pool goes first, it is never called.
 * NGX_DECLINED: Redis is not connected right now: decide without it.
 * NGX_ERROR: out of memory, or rate or burst out of range.
 */
ngx_int_t ngx_http_monetize_redis_limit(ngx_http_monetize_redis_t *redis,
    ngx_pool_t *owner, ngx_str_t *key, ngx_uint_t rate, ngx_uint_t burst,
    ngx_http_monetize_redis_limit_pt handler, void *data);

/* PING, with the same return codes */
ngx_int_t ngx_http_monetize_redis_ping(ngx_http_monetize_redis_t *redis,
    ngx_pool_t *owner, ngx_http_monetize_redis_ping_pt handler, void *data);


#endif /* _NGX_HTTP_MONETIZE_REDIS_H_INCLUDED_ */
