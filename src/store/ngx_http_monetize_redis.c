
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_redis_conn.h"


/*
 * Commands on the worker's Redis connection (ngx_http_monetize_redis_conn.c):
 * pipelined, each under its own timer, each answered from a posted event.
 *
 * hiredis keeps a command's privdata until it calls back, and it may call
 * back long after the request that asked went away (a late reply, or the
 * connection's end). So privdata is a small record of our own, not the
 * request's memory: the request's pool cleanup detaches it, and it is
 * reused only once both hiredis and the request are done with it.
 */


#define NGX_HTTP_MONETIZE_REDIS_SPARE  256


typedef struct {
    ngx_queue_t                         queue;     /* in redis->spare */
    ngx_http_monetize_redis_t          *redis;
    ngx_event_t                         event;     /* timer, then delivery */
    ngx_pool_cleanup_t                 *cleanup;   /* in the owner's pool */
    ngx_http_monetize_redis_limit_pt    limit;     /* one of the two */
    ngx_http_monetize_redis_ping_pt     ping;
    void                               *data;
    ngx_str_t                           key;       /* with the prefix */
    ngx_uint_t                          rate;
    ngx_uint_t                          burst;
    ngx_int_t                           rc;
    ngx_http_monetize_limit_t           lim;
    unsigned                            pending:1; /* hiredis holds it */
    unsigned                            waiting:1; /* the owner waits */
    unsigned                            answered:1;
    unsigned                            eval:1;    /* sent whole */
} ngx_http_monetize_redis_cmd_t;


static ngx_http_monetize_redis_cmd_t *ngx_http_monetize_redis_cmd(
    ngx_http_monetize_redis_t *redis, ngx_pool_t *owner);
static ngx_int_t ngx_http_monetize_redis_gcra_send(
    ngx_http_monetize_redis_cmd_t *cmd);
static ngx_int_t ngx_http_monetize_redis_wait(
    ngx_http_monetize_redis_cmd_t *cmd);
static void ngx_http_monetize_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_uint_t ngx_http_monetize_redis_noscript(redisReply *reply);
static ngx_int_t ngx_http_monetize_redis_gcra_result(
    ngx_http_monetize_redis_cmd_t *cmd, redisReply *reply);
static ngx_int_t ngx_http_monetize_redis_ping_result(
    ngx_http_monetize_redis_cmd_t *cmd, redisReply *reply);
static void ngx_http_monetize_redis_answer(ngx_http_monetize_redis_cmd_t *cmd,
    ngx_int_t rc);
static void ngx_http_monetize_redis_deliver(ngx_event_t *ev);
static void ngx_http_monetize_redis_timeout(ngx_event_t *ev);
static void ngx_http_monetize_redis_cmd_cleanup(void *data);
static void ngx_http_monetize_redis_release(
    ngx_http_monetize_redis_cmd_t *cmd);


/*
 * ngx_http_monetize_gcra() on Redis's clock, so that every node shares one:
 * KEYS[1] holds the TAT in microseconds, ARGV is rate and burst; the answer
 * is allowed, remaining, reset (ms), retry_after (ms). Lua 5.1 has only
 * doubles, exact up to 2^53 (microseconds since 1970 get there in 2255);
 * C's division truncates toward zero, Lua's floor does not, hence the
 * negative case by hand. '%.0f' keeps a TAT from turning into "1.7e+15".
 */

ngx_str_t  ngx_http_monetize_redis_script = ngx_string(
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local time = redis.call('TIME')\n"
    "local now = tonumber(time[1]) * 1000000 + tonumber(time[2])\n"
    "local t = math.floor(1000000 / rate)\n"
    "local tau = (burst - 1) * t\n"
    "local at = math.max(tonumber(redis.call('GET', KEYS[1])) or 0, now)\n"
    "if now < at - tau then\n"
    "  return {0, 0, math.floor((at - now + 999) / 1000),\n"
    "          math.floor((at - tau - now + 999) / 1000)}\n"
    "end\n"
    "local tat = at + t\n"
    "local reset = math.floor((tat - now + 999) / 1000)\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', tat),\n"
    "           'PX', string.format('%.0f', reset + 1000))\n"
    "local d = now + tau - tat\n"
    "local q\n"
    "if d >= 0 then q = math.floor(d / t) else q = -math.floor(-d / t) end\n"
    "return {1, q + 1, reset, 0}\n");


ngx_int_t
ngx_http_monetize_redis_limit(ngx_http_monetize_redis_t *redis,
    ngx_pool_t *owner, ngx_str_t *key, ngx_uint_t rate, ngx_uint_t burst,
    ngx_http_monetize_redis_limit_pt handler, void *data)
{
    u_char                         *p;
    ngx_http_monetize_redis_cmd_t  *cmd;

    /* the arithmetic needs T = 1s / rate of at least 1us */

    if (rate == 0 || rate > 1000000 || burst == 0) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "monetize: a rate limit of %ui/s with a burst of %ui "
                      "cannot be kept", rate, burst);
        return NGX_ERROR;
    }

    if (ngx_http_monetize_redis_usable(redis) != NGX_OK) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(owner, redis->prefix.len + key->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    cmd = ngx_http_monetize_redis_cmd(redis, owner);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->key.data = p;
    cmd->key.len = redis->prefix.len + key->len;

    p = ngx_cpymem(p, redis->prefix.data, redis->prefix.len);
    ngx_memcpy(p, key->data, key->len);

    cmd->limit = handler;
    cmd->data = data;
    cmd->rate = rate;
    cmd->burst = burst;

    if (ngx_http_monetize_redis_gcra_send(cmd) != NGX_OK) {
        ngx_http_monetize_redis_release(cmd);
        return NGX_DECLINED;
    }

    return ngx_http_monetize_redis_wait(cmd);
}


ngx_int_t
ngx_http_monetize_redis_ping(ngx_http_monetize_redis_t *redis,
    ngx_pool_t *owner, ngx_http_monetize_redis_ping_pt handler, void *data)
{
    size_t                          len;
    const char                     *argv;
    ngx_http_monetize_redis_cmd_t  *cmd;

    if (ngx_http_monetize_redis_usable(redis) != NGX_OK) {
        return NGX_DECLINED;
    }

    cmd = ngx_http_monetize_redis_cmd(redis, owner);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->ping = handler;
    cmd->data = data;

    argv = "PING";
    len = sizeof("PING") - 1;

    if (redisAsyncCommandArgv(redis->ac, ngx_http_monetize_redis_reply, cmd,
                              1, &argv, &len)
        != REDIS_OK)
    {
        ngx_http_monetize_redis_release(cmd);
        return NGX_DECLINED;
    }

    return ngx_http_monetize_redis_wait(cmd);
}


static ngx_http_monetize_redis_cmd_t *
ngx_http_monetize_redis_cmd(ngx_http_monetize_redis_t *redis,
    ngx_pool_t *owner)
{
    ngx_queue_t                    *q;
    ngx_pool_cleanup_t             *cln;
    ngx_http_monetize_redis_cmd_t  *cmd;

    /*
     * A pool cleanup, not an http cleanup: it runs however the owner goes
     * away. Its handler is set only once the command is sent.
     */

    cln = ngx_pool_cleanup_add(owner, 0);
    if (cln == NULL) {
        return NULL;
    }

    if (!ngx_queue_empty(&redis->spare)) {
        q = ngx_queue_head(&redis->spare);
        ngx_queue_remove(q);
        redis->nspare--;

        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);

    } else {
        cmd = ngx_alloc(sizeof(ngx_http_monetize_redis_cmd_t),
                        ngx_cycle->log);
        if (cmd == NULL) {
            return NULL;
        }
    }

    ngx_memzero(cmd, sizeof(ngx_http_monetize_redis_cmd_t));

    cmd->redis = redis;
    cmd->cleanup = cln;
    cmd->event.data = cmd;
    cmd->event.log = ngx_cycle->log;

    cln->data = cmd;

    return cmd;
}


/* EVALSHA, or after a NOSCRIPT the script itself */

static ngx_int_t
ngx_http_monetize_redis_gcra_send(ngx_http_monetize_redis_cmd_t *cmd)
{
    u_char                     rate[NGX_INT_T_LEN], burst[NGX_INT_T_LEN];
    size_t                     len[6];
    const char                *argv[6];
    ngx_http_monetize_redis_t  *redis;

    redis = cmd->redis;

    if (cmd->eval) {
        argv[0] = "EVAL";
        len[0] = sizeof("EVAL") - 1;
        argv[1] = (const char *) ngx_http_monetize_redis_script.data;
        len[1] = ngx_http_monetize_redis_script.len;

    } else {
        argv[0] = "EVALSHA";
        len[0] = sizeof("EVALSHA") - 1;
        argv[1] = (const char *) redis->sha;
        len[1] = NGX_HTTP_MONETIZE_REDIS_SHA_LEN;
    }

    argv[2] = "1";
    len[2] = 1;
    argv[3] = (const char *) cmd->key.data;
    len[3] = cmd->key.len;
    argv[4] = (const char *) rate;
    len[4] = ngx_sprintf(rate, "%ui", cmd->rate) - rate;
    argv[5] = (const char *) burst;
    len[5] = ngx_sprintf(burst, "%ui", cmd->burst) - burst;

    /* hiredis copies the arguments into its output buffer */

    if (redisAsyncCommandArgv(redis->ac, ngx_http_monetize_redis_reply, cmd,
                              6, argv, len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_redis_wait(ngx_http_monetize_redis_cmd_t *cmd)
{
    cmd->pending = 1;
    cmd->waiting = 1;

    cmd->cleanup->handler = ngx_http_monetize_redis_cmd_cleanup;

    cmd->event.handler = ngx_http_monetize_redis_timeout;
    ngx_add_timer(&cmd->event, cmd->redis->timeout);

    return NGX_AGAIN;
}


/* hiredis's callback: a reply, or NULL when the connection goes away */

static void
ngx_http_monetize_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                     *reply = r;
    ngx_http_monetize_redis_cmd_t  *cmd = privdata;

    ngx_int_t  rc;

    if (reply != NULL && cmd->limit && !cmd->eval && cmd->waiting
        && !cmd->answered && ngx_http_monetize_redis_noscript(reply))
    {
        /*
         * Redis lost its script cache (SCRIPT FLUSH, a restart behind a
         * proxy): this call sends the script whole, still one round trip
         * of the caller's, and the cache is filled again for the next.
         */

        cmd->eval = 1;

        if (ngx_http_monetize_redis_gcra_send(cmd) == NGX_OK) {
            (void) ngx_http_monetize_redis_load_script(cmd->redis, 0);
            return;
        }
    }

    cmd->pending = 0;

    if (!cmd->waiting) {
        ngx_http_monetize_redis_release(cmd);
        return;
    }

    if (cmd->answered) {
        /* timed out: the delivery, already posted, frees the record */
        return;
    }

    if (reply == NULL) {
        /* the connection is gone; its loss is logged where it happened */
        rc = NGX_ERROR;

    } else if (cmd->limit) {
        rc = ngx_http_monetize_redis_gcra_result(cmd, reply);

    } else {
        rc = ngx_http_monetize_redis_ping_result(cmd, reply);
    }

    ngx_http_monetize_redis_answer(cmd, rc);
}


static ngx_uint_t
ngx_http_monetize_redis_noscript(redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR
           && reply->len >= sizeof("NOSCRIPT") - 1
           && ngx_strncmp(reply->str, "NOSCRIPT", sizeof("NOSCRIPT") - 1)
              == 0;
}


static ngx_int_t
ngx_http_monetize_redis_gcra_result(ngx_http_monetize_redis_cmd_t *cmd,
    redisReply *reply)
{
    ngx_uint_t                  i;
    ngx_http_monetize_limit_t  *lim;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V refused the rate limit script: "
                      "%*s", &cmd->redis->name, (size_t) reply->len,
                      reply->str);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        goto unexpected;
    }

    for (i = 0; i < 4; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < 0)
        {
            goto unexpected;
        }
    }

    lim = &cmd->lim;

    lim->allowed = reply->element[0]->integer ? 1 : 0;
    lim->limit = cmd->burst;
    lim->remaining = (ngx_uint_t) reply->element[1]->integer;
    lim->reset = (ngx_msec_t) reply->element[2]->integer;
    lim->retry_after = (ngx_msec_t) reply->element[3]->integer;

    return NGX_OK;

unexpected:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "monetize: redis %V gave an unexpected answer to the rate "
                  "limit script (type %d)", &cmd->redis->name, reply->type);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_monetize_redis_ping_result(ngx_http_monetize_redis_cmd_t *cmd,
    redisReply *reply)
{
    if (reply->type == REDIS_REPLY_STATUS
        && reply->len == sizeof("PONG") - 1
        && ngx_strncmp(reply->str, "PONG", sizeof("PONG") - 1) == 0)
    {
        return NGX_OK;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V refused PING: %*s",
                      &cmd->redis->name, (size_t) reply->len, reply->str);

    } else {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V gave an unexpected answer to PING "
                      "(type %d)", &cmd->redis->name, reply->type);
    }

    return NGX_ERROR;
}


/*
 * The answer is delivered from a posted event: the handler never runs
 * inside hiredis (which may be freeing its context) nor inside our own
 * bookkeeping, and it may send the next command at once.
 */

static void
ngx_http_monetize_redis_answer(ngx_http_monetize_redis_cmd_t *cmd,
    ngx_int_t rc)
{
    if (cmd->event.timer_set) {
        ngx_del_timer(&cmd->event);
    }

    cmd->answered = 1;
    cmd->rc = rc;

    cmd->event.handler = ngx_http_monetize_redis_deliver;
    ngx_post_event(&cmd->event, &ngx_posted_events);
}


static void
ngx_http_monetize_redis_deliver(ngx_event_t *ev)
{
    void                              *data;
    ngx_int_t                          rc;
    ngx_http_monetize_limit_t          lim;
    ngx_http_monetize_redis_cmd_t     *cmd;
    ngx_http_monetize_redis_ping_pt    ping;
    ngx_http_monetize_redis_limit_pt   limit;

    cmd = ev->data;

    /* the handler may free the owner's pool: the cleanup must not run */
    cmd->cleanup->handler = NULL;
    cmd->waiting = 0;

    rc = cmd->rc;
    lim = cmd->lim;
    data = cmd->data;
    ping = cmd->ping;
    limit = cmd->limit;

    if (!cmd->pending) {
        ngx_http_monetize_redis_release(cmd);
    }

    if (limit) {
        limit(data, rc, &lim);

    } else {
        ping(data, rc);
    }
}


static void
ngx_http_monetize_redis_timeout(ngx_event_t *ev)
{
    ngx_http_monetize_redis_t      *redis;
    ngx_http_monetize_redis_cmd_t  *cmd;

    cmd = ev->data;
    redis = cmd->redis;

    ngx_http_monetize_redis_answer(cmd, NGX_ERROR);

    /*
     * Redis runs one command at a time: one that takes this long means it
     * is stuck or gone, and every command behind this one would wait as
     * long. Drop the connection; callers are told at once until a new one
     * answers its handshake.
     */

    ngx_http_monetize_redis_unreachable(redis, "no answer within %Mms",
                                        redis->timeout);
    ngx_http_monetize_redis_close(redis);
}


/* The owner goes away first: its handler is never called. */

static void
ngx_http_monetize_redis_cmd_cleanup(void *data)
{
    ngx_http_monetize_redis_cmd_t *cmd = data;

    cmd->waiting = 0;

    if (cmd->event.timer_set) {
        ngx_del_timer(&cmd->event);
    }

    if (cmd->event.posted) {
        ngx_delete_posted_event(&cmd->event);
    }

    if (!cmd->pending) {
        ngx_http_monetize_redis_release(cmd);
    }
}


static void
ngx_http_monetize_redis_release(ngx_http_monetize_redis_cmd_t *cmd)
{
    ngx_http_monetize_redis_t  *redis;

    redis = cmd->redis;

    if (redis->exiting || redis->nspare >= NGX_HTTP_MONETIZE_REDIS_SPARE) {
        ngx_free(cmd);
        return;
    }

    ngx_queue_insert_head(&redis->spare, &cmd->queue);
    redis->nspare++;
}


void
ngx_http_monetize_redis_free_spare(ngx_http_monetize_redis_t *redis)
{
    ngx_queue_t                    *q;
    ngx_http_monetize_redis_cmd_t  *cmd;

    while (!ngx_queue_empty(&redis->spare)) {
        q = ngx_queue_head(&redis->spare);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);
        ngx_free(cmd);
    }

    redis->nspare = 0;
}
