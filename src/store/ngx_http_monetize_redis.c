
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_redis_conn.h"


/*
 * Commands on the worker's Redis connection (ngx_http_monetize_redis_conn.c):
 * the limiter's calls, decided in batches (ngx_http_monetize_redis_batch.c),
 * and PING, sent alone under its own timer; each answered from a posted
 * event.
 *
 * hiredis keeps a command's privdata until it calls back, and it may call
 * back long after the request that asked went away (a late reply, or the
 * connection's end). So privdata is a small record of our own, not the
 * request's memory: the request's pool cleanup detaches it, and it is
 * reused only once both hiredis (or the batch) and the request are done
 * with it.
 */


#define NGX_HTTP_MONETIZE_REDIS_SPARE  256


static ngx_http_monetize_redis_cmd_t *ngx_http_monetize_redis_cmd(
    ngx_http_monetize_redis_t *redis, ngx_pool_t *owner);
static ngx_int_t ngx_http_monetize_redis_wait(
    ngx_http_monetize_redis_cmd_t *cmd);
static void ngx_http_monetize_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_http_monetize_redis_ping_result(
    ngx_http_monetize_redis_cmd_t *cmd, redisReply *reply);
static void ngx_http_monetize_redis_deliver(ngx_event_t *ev);
static void ngx_http_monetize_redis_timeout(ngx_event_t *ev);
static void ngx_http_monetize_redis_cmd_cleanup(void *data);


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
    cmd->limit_n = burst;

    cmd->rate.data = cmd->text;
    cmd->rate.len = ngx_sprintf(cmd->text, "%ui", rate) - cmd->text;
    cmd->burst.data = cmd->text + cmd->rate.len;
    cmd->burst.len = ngx_sprintf(cmd->burst.data, "%ui", burst)
                     - cmd->burst.data;

    if (ngx_http_monetize_redis_batch_add(cmd) != NGX_AGAIN) {
        return NGX_ERROR;
    }

    cmd->cleanup->handler = ngx_http_monetize_redis_cmd_cleanup;

    return NGX_AGAIN;
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


/* hiredis's callback for a PING: a reply, or NULL when the connection goes */

static void
ngx_http_monetize_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                     *reply = r;
    ngx_http_monetize_redis_cmd_t  *cmd = privdata;

    ngx_int_t  rc;

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

    } else {
        rc = ngx_http_monetize_redis_ping_result(cmd, reply);
    }

    ngx_http_monetize_redis_answer(cmd, rc);
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

void
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

    if (cmd->batch) {
        ngx_http_monetize_redis_batch_detach(cmd);
    }

    if (!cmd->pending) {
        ngx_http_monetize_redis_release(cmd);
    }
}


void
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
