
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_socket.h"
#include "ngx_http_monetize_redis_conn.h"


/*
 * The worker's one connection to Redis: hiredis's async API on nginx's
 * events. hiredis says through ac->ev when it wants to read or write; we
 * keep that interest on an ngx_connection_t around its socket and call
 * back into hiredis when epoll reports the socket ready. hiredis owns the
 * socket and closes it; we only unhook it.
 *
 * A connection opens with AUTH, SELECT and SCRIPT LOAD, queued at once and
 * answered in order under one timer (hiredis 0.14 has none for connect);
 * it is ready once the last of them answers, so a server that accepts
 * connections but does not answer is never taken for a working one. A
 * failure is logged once per outage, and the next attempt comes at most a
 * second after the last one, whatever the requests do.
 */


static void ngx_http_monetize_redis_connect(ngx_http_monetize_redis_t *redis);
static ngx_int_t ngx_http_monetize_redis_handshake_send(
    ngx_http_monetize_redis_t *redis);
static void ngx_http_monetize_redis_event_handler(ngx_event_t *ev);
static void ngx_http_monetize_redis_add_read(void *data);
static void ngx_http_monetize_redis_del_read(void *data);
static void ngx_http_monetize_redis_add_write(void *data);
static void ngx_http_monetize_redis_del_write(void *data);
static void ngx_http_monetize_redis_watch(ngx_http_monetize_redis_t *redis,
    ngx_uint_t write, ngx_uint_t on);
static void ngx_http_monetize_redis_cleanup(void *data);
static void ngx_http_monetize_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_monetize_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_monetize_redis_auth_done(redisAsyncContext *ac,
    void *reply, void *data);
static void ngx_http_monetize_redis_select_done(redisAsyncContext *ac,
    void *reply, void *data);
static void ngx_http_monetize_redis_loaded(redisAsyncContext *ac,
    void *reply, void *data);
static void ngx_http_monetize_redis_reloaded(redisAsyncContext *ac,
    void *reply, void *data);
static ngx_int_t ngx_http_monetize_redis_refused(
    ngx_http_monetize_redis_t *redis, redisReply *reply, const char *what);
static void ngx_http_monetize_redis_handshake_timeout(ngx_event_t *ev);
static void ngx_http_monetize_redis_retry(ngx_event_t *ev);
static void ngx_http_monetize_redis_schedule(ngx_http_monetize_redis_t *redis);


void
ngx_http_monetize_redis_init_process(ngx_http_monetize_redis_t *redis)
{
    if (redis->initialized) {
        return;
    }

    ngx_queue_init(&redis->spare);

    if (ngx_http_monetize_redis_batch_init(redis) != NGX_OK) {
        return;
    }

    redis->handshake.handler = ngx_http_monetize_redis_handshake_timeout;
    redis->handshake.data = redis;
    redis->handshake.log = ngx_cycle->log;
    redis->handshake.cancelable = 1;

    redis->retry.handler = ngx_http_monetize_redis_retry;
    redis->retry.data = redis;
    redis->retry.log = ngx_cycle->log;
    redis->retry.cancelable = 1;

    redis->initialized = 1;

    ngx_http_monetize_redis_connect(redis);
}


void
ngx_http_monetize_redis_exit_process(ngx_http_monetize_redis_t *redis)
{
    if (!redis->initialized) {
        return;
    }

    redis->exiting = 1;

    if (redis->retry.timer_set) {
        ngx_del_timer(&redis->retry);
    }

    ngx_http_monetize_redis_close(redis);
    ngx_http_monetize_redis_batch_exit(redis);
    ngx_http_monetize_redis_free_spare(redis);
}


/*
 * Whether a command may be sent now. While a worker's first connection is
 * being made, commands queue behind its handshake; once Redis was found
 * unreachable, callers are told at once until it answers again.
 */

ngx_int_t
ngx_http_monetize_redis_usable(ngx_http_monetize_redis_t *redis)
{
    if (!redis->initialized) {
        ngx_http_monetize_redis_init_process(redis);
    }

    switch (redis->state) {

    case NGX_HTTP_MONETIZE_REDIS_READY:
        return NGX_OK;

    case NGX_HTTP_MONETIZE_REDIS_CONNECTING:
        return redis->down ? NGX_DECLINED : NGX_OK;

    default:
        return NGX_DECLINED;
    }
}


static void
ngx_http_monetize_redis_connect(ngx_http_monetize_redis_t *redis)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    redis->started = ngx_current_msec;

    /* a numeric address (resolved at configuration): no DNS here */

    if (redis->port) {
        ac = redisAsyncConnect(redis->host, redis->port);

    } else {
        ac = redisAsyncConnectUnix(redis->host);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "monetize: redisAsyncConnect() failed");
        ngx_http_monetize_redis_schedule(redis);
        return;
    }

    if (ac->err) {
        ngx_http_monetize_redis_unreachable(redis, "%s", ac->errstr);
        redisAsyncFree(ac);
        ngx_http_monetize_redis_schedule(redis);
        return;
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_monetize_redis_schedule(redis);
        return;
    }

    c->data = redis;
    c->read->handler = ngx_http_monetize_redis_event_handler;
    c->write->handler = ngx_http_monetize_redis_event_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    redis->ac = ac;
    redis->connection = c;
    redis->state = NGX_HTTP_MONETIZE_REDIS_CONNECTING;

    ac->ev.data = redis;
    ac->ev.addRead = ngx_http_monetize_redis_add_read;
    ac->ev.delRead = ngx_http_monetize_redis_del_read;
    ac->ev.addWrite = ngx_http_monetize_redis_add_write;
    ac->ev.delWrite = ngx_http_monetize_redis_del_write;
    ac->ev.cleanup = ngx_http_monetize_redis_cleanup;

    /* asks for writability: the connect's outcome */
    (void) redisAsyncSetConnectCallback(ac,
                                        ngx_http_monetize_redis_connected);
    (void) redisAsyncSetDisconnectCallback(ac,
                                       ngx_http_monetize_redis_disconnected);

    ngx_add_timer(&redis->handshake, redis->timeout);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize redis: connecting to %V", &redis->name);

    if (ngx_http_monetize_redis_handshake_send(redis) != NGX_OK) {
        ngx_http_monetize_redis_unreachable(redis, "cannot queue the "
                                            "handshake");
        ngx_http_monetize_redis_close(redis);
    }
}


/* Queued before the connect completes; hiredis sends them once it does. */

static ngx_int_t
ngx_http_monetize_redis_handshake_send(ngx_http_monetize_redis_t *redis)
{
    u_char       db[NGX_INT_T_LEN];
    size_t       len[2];
    const char  *argv[2];

    if (redis->password.len) {
        argv[0] = "AUTH";
        len[0] = sizeof("AUTH") - 1;
        argv[1] = (const char *) redis->password.data;
        len[1] = redis->password.len;

        if (redisAsyncCommandArgv(redis->ac,
                                  ngx_http_monetize_redis_auth_done, redis,
                                  2, argv, len)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }
    }

    if (redis->db >= 0) {
        argv[0] = "SELECT";
        len[0] = sizeof("SELECT") - 1;
        argv[1] = (const char *) db;
        len[1] = ngx_sprintf(db, "%i", redis->db) - db;

        if (redisAsyncCommandArgv(redis->ac,
                                  ngx_http_monetize_redis_select_done, redis,
                                  2, argv, len)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_monetize_redis_load_script(redis, 1);
}


/*
 * The script is loaded on every new connection (Redis may have restarted
 * with an empty script cache) and again after a NOSCRIPT answer.
 */

ngx_int_t
ngx_http_monetize_redis_load_script(ngx_http_monetize_redis_t *redis,
    ngx_uint_t handshake)
{
    size_t       len[3];
    const char  *argv[3];

    if (!handshake && redis->loading) {
        return NGX_OK;
    }

    argv[0] = "SCRIPT";
    len[0] = sizeof("SCRIPT") - 1;
    argv[1] = "LOAD";
    len[1] = sizeof("LOAD") - 1;
    argv[2] = (const char *) ngx_http_monetize_redis_script.data;
    len[2] = ngx_http_monetize_redis_script.len;

    if (redisAsyncCommandArgv(redis->ac,
                              handshake ? ngx_http_monetize_redis_loaded
                                        : ngx_http_monetize_redis_reloaded,
                              redis, 3, argv, len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    redis->loading = 1;

    return NGX_OK;
}


static void
ngx_http_monetize_redis_event_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_monetize_redis_t  *redis;

    c = ev->data;
    redis = c->data;

    /* either may free the context, and with it this connection */

    if (ev->write) {
        redisAsyncHandleWrite(redis->ac);

    } else {
        redisAsyncHandleRead(redis->ac);
    }
}


static void
ngx_http_monetize_redis_add_read(void *data)
{
    ngx_http_monetize_redis_watch(data, 0, 1);
}


static void
ngx_http_monetize_redis_del_read(void *data)
{
    ngx_http_monetize_redis_watch(data, 0, 0);
}


static void
ngx_http_monetize_redis_add_write(void *data)
{
    ngx_http_monetize_redis_watch(data, 1, 1);
}


static void
ngx_http_monetize_redis_del_write(void *data)
{
    ngx_http_monetize_redis_watch(data, 1, 0);
}


/*
 * Level-triggered: hiredis reads at most one buffer per call, so with
 * edge-triggered events the rest of a long answer, or an EOF behind it,
 * would never be reported again. hiredis keeps read interest on for the
 * connection's life and write interest only while it has something to
 * send.
 */

static void
ngx_http_monetize_redis_watch(ngx_http_monetize_redis_t *redis,
    ngx_uint_t write, ngx_uint_t on)
{
    ngx_int_t     event;
    ngx_event_t  *ev;

    if (redis->connection == NULL) {
        return;
    }

    ev = write ? redis->connection->write : redis->connection->read;
    event = write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        if (ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
            /* the handshake's or the commands' timers end the wait */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: cannot watch the socket of redis %V",
                          &redis->name);
        }

        return;
    }

    if (!on && ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


/*
 * hiredis is freeing its context: every command still waiting has been
 * told (with no reply). Unhook the socket, which hiredis closes next, and
 * plan the next connection.
 */

static void
ngx_http_monetize_redis_cleanup(void *data)
{
    ngx_http_monetize_redis_t *redis = data;

    ngx_connection_t  *c;

    c = redis->connection;

    if (c == NULL) {
        return;
    }

    ngx_http_monetize_socket_release(c);

    redis->connection = NULL;
    redis->ac = NULL;
    redis->state = NGX_HTTP_MONETIZE_REDIS_CLOSED;
    redis->closing = 0;
    redis->loading = 0;

    if (redis->handshake.timer_set) {
        ngx_del_timer(&redis->handshake);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize redis: connection to %V closed", &redis->name);

    ngx_http_monetize_redis_schedule(redis);
}


/* Drops the connection; every command waiting on it fails at once. */

void
ngx_http_monetize_redis_close(ngx_http_monetize_redis_t *redis)
{
    if (redis->ac == NULL || redis->closing) {
        return;
    }

    redis->closing = 1;
    redis->state = NGX_HTTP_MONETIZE_REDIS_CLOSED;

    /* from within a hiredis callback, hiredis frees it once that returns */
    redisAsyncFree(redis->ac);
}


static void
ngx_http_monetize_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_monetize_redis_t *redis = ac->ev.data;

    if (status != REDIS_OK) {
        ngx_http_monetize_redis_unreachable(redis, "%s", ac->errstr);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize redis: connected to %V", &redis->name);
}


/* REDIS_OK: we closed it, and said why */

static void
ngx_http_monetize_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_http_monetize_redis_t *redis = ac->ev.data;

    if (status != REDIS_OK) {
        ngx_http_monetize_redis_unreachable(redis, "%s", ac->errstr);
    }
}


static void
ngx_http_monetize_redis_auth_done(redisAsyncContext *ac, void *reply,
    void *data)
{
    (void) ngx_http_monetize_redis_refused(data, reply, "AUTH");
}


static void
ngx_http_monetize_redis_select_done(redisAsyncContext *ac, void *reply,
    void *data)
{
    (void) ngx_http_monetize_redis_refused(data, reply, "SELECT");
}


/* The handshake's last answer: the connection is ready. */

static void
ngx_http_monetize_redis_loaded(redisAsyncContext *ac, void *reply,
    void *data)
{
    ngx_http_monetize_redis_t *redis = data;

    if (ngx_http_monetize_redis_refused(redis, reply, "SCRIPT LOAD")
        != NGX_OK)
    {
        return;
    }

    redis->loading = 0;

    if (redis->state != NGX_HTTP_MONETIZE_REDIS_CONNECTING) {
        return;
    }

    if (redis->handshake.timer_set) {
        ngx_del_timer(&redis->handshake);
    }

    redis->state = NGX_HTTP_MONETIZE_REDIS_READY;

    if (redis->down) {
        redis->down = 0;
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "monetize: redis %V is reachable again", &redis->name);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize redis: %V ready", &redis->name);
}


/* After a NOSCRIPT the calls go on by EVAL meanwhile: no need to close. */

static void
ngx_http_monetize_redis_reloaded(redisAsyncContext *ac, void *reply,
    void *data)
{
    ngx_http_monetize_redis_t *redis = data;

    redisReply  *r = reply;

    if (r == NULL) {
        return;
    }

    redis->loading = 0;

    if (r->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V refused SCRIPT LOAD: %*s",
                      &redis->name, (size_t) r->len, r->str);
    }
}


/* A handshake step's answer: NGX_OK, or the connection is being closed. */

static ngx_int_t
ngx_http_monetize_redis_refused(ngx_http_monetize_redis_t *redis,
    redisReply *reply, const char *what)
{
    if (reply == NULL) {
        /* the context is being freed; its cleanup does the rest */
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ERROR) {
        return NGX_OK;
    }

    ngx_http_monetize_redis_unreachable(redis, "%s: %*s", what,
                                        (size_t) reply->len, reply->str);
    ngx_http_monetize_redis_close(redis);

    return NGX_ERROR;
}


static void
ngx_http_monetize_redis_handshake_timeout(ngx_event_t *ev)
{
    ngx_http_monetize_redis_t *redis = ev->data;

    if (redis->ac && !(redis->ac->c.flags & REDIS_CONNECTED)) {
        ngx_http_monetize_redis_unreachable(redis, "connect timed out "
                                            "after %Mms", redis->timeout);

    } else {
        ngx_http_monetize_redis_unreachable(redis, "no answer within %Mms",
                                            redis->timeout);
    }

    ngx_http_monetize_redis_close(redis);
}


static void
ngx_http_monetize_redis_retry(ngx_event_t *ev)
{
    ngx_http_monetize_redis_t *redis = ev->data;

    if (redis->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_http_monetize_redis_connect(redis);
}


/*
 * At most one attempt a second: a connection that worked for a while is
 * replaced at once, a failing one a second after its last attempt.
 */

static void
ngx_http_monetize_redis_schedule(ngx_http_monetize_redis_t *redis)
{
    ngx_msec_t  elapsed;

    if (redis->exiting || ngx_exiting || ngx_terminate || ngx_quit
        || redis->retry.timer_set)
    {
        return;
    }

    elapsed = ngx_current_msec - redis->started;

    ngx_add_timer(&redis->retry, elapsed >= 1000 ? 0 : 1000 - elapsed);
}


/* Logged once per outage; "is reachable again" closes it. */

void
ngx_http_monetize_redis_unreachable(ngx_http_monetize_redis_t *redis,
    const char *fmt, ...)
{
    u_char   *p, msg[NGX_MAX_ERROR_STR];
    va_list   args;

    if (redis->down) {
        return;
    }

    redis->down = 1;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "monetize: redis %V is unreachable: %*s",
                  &redis->name, (size_t) (p - msg), msg);
}
