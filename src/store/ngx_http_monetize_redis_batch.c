
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_redis_conn.h"


/*
 * The limiter's calls, decided in batches: one EVALSHA a worker decides
 * every call that came since the last one was sent, for all their keys,
 * as the ledger batches debits. A call that finds nothing in flight is
 * sent at the end of the event loop's pass (a posted event: the calls of
 * the same pass go with it, and none waits for a timer); while a batch is
 * in flight, the calls that come gather, and go as one batch when its
 * answer comes. The gathering window is thus the round trip itself. A batch
 * that reaches batch= calls goes at once, behind the one in flight.
 *
 * A batch is under one timer, its first call's: Redis's timeout from when
 * that call came, so no call of it waits longer, even one that gathered
 * behind a slow batch. A batch that times out is a Redis stuck or gone:
 * its calls get the fail mode's answer, and the connection is dropped, so
 * every batch behind it fails at once too.
 *
 * hiredis holds a batch (its privdata) until it answers or the connection
 * goes. A caller that goes away meanwhile is detached: a call not sent yet
 * leaves its batch; a call sent stays in it, answered to no one, since the
 * answer's places follow the order of the keys sent.
 */


#define NGX_HTTP_MONETIZE_REDIS_BATCH_SPARE  16


struct ngx_http_monetize_redis_batch_s {
    ngx_queue_t                         queue;     /* in spare_batches */
    ngx_http_monetize_redis_t          *redis;
    ngx_queue_t                         calls;     /* in the keys' order */
    ngx_uint_t                          ncalls;
    ngx_msec_t                          start;     /* its first call came */
    ngx_event_t                         timer;
    unsigned                            sent:1;
    unsigned                            eval:1;    /* sent whole */
    unsigned                            answered:1;
};


static ngx_http_monetize_redis_batch_t *ngx_http_monetize_redis_batch_new(
    ngx_http_monetize_redis_t *redis);
static void ngx_http_monetize_redis_batch_post(ngx_event_t *ev);
static void ngx_http_monetize_redis_batch_send(
    ngx_http_monetize_redis_t *redis);
static ngx_int_t ngx_http_monetize_redis_batch_write(
    ngx_http_monetize_redis_batch_t *b);
static void ngx_http_monetize_redis_batch_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_uint_t ngx_http_monetize_redis_noscript(redisReply *reply);
static void ngx_http_monetize_redis_batch_compact(
    ngx_http_monetize_redis_batch_t *b);
static void ngx_http_monetize_redis_batch_decide(
    ngx_http_monetize_redis_batch_t *b, redisReply *reply);
static ngx_int_t ngx_http_monetize_redis_batch_result(
    ngx_http_monetize_redis_cmd_t *cmd, redisReply **element);
static void ngx_http_monetize_redis_batch_fail(
    ngx_http_monetize_redis_batch_t *b);
static void ngx_http_monetize_redis_batch_timeout(ngx_event_t *ev);
static void ngx_http_monetize_redis_batch_release(
    ngx_http_monetize_redis_batch_t *b);


/*
 * ngx_http_monetize_gcra() on Redis's clock, so that every node shares one,
 * for each call of a batch in turn, at one instant (the batch's TIME):
 * KEYS[i] holds the TAT in microseconds, ARGV[2i-1] and ARGV[2i] are the
 * call's rate and burst; the answer is, for each call, allowed, remaining,
 * reset (ms), retry_after (ms). A key's TAT is read once and written once a
 * batch. Lua 5.1 has only doubles, exact up to 2^53 (microseconds since
 * 1970 get there in 2255); C's division truncates toward zero, Lua's floor
 * does not, hence the negative case by hand. '%.0f' keeps a TAT from
 * turning into "1.7e+15".
 */

ngx_str_t  ngx_http_monetize_redis_script = ngx_string(
    "local time = redis.call('TIME')\n"
    "local now = tonumber(time[1]) * 1000000 + tonumber(time[2])\n"
    "local tats, seen, changed, out = {}, {}, {}, {}\n"
    "for i = 1, #KEYS do\n"
    "  local key = KEYS[i]\n"
    "  local t = math.floor(1000000 / tonumber(ARGV[2 * i - 1]))\n"
    "  local tau = (tonumber(ARGV[2 * i]) - 1) * t\n"
    "  local at = tats[key]\n"
    "  if at == nil then\n"
    "    at = tonumber(redis.call('GET', key)) or 0\n"
    "  end\n"
    "  at = math.max(at, now)\n"
    "  tats[key] = at\n"
    "  local n = #out\n"
    "  if now < at - tau then\n"
    "    out[n + 1] = 0\n"
    "    out[n + 2] = 0\n"
    "    out[n + 3] = math.floor((at - now + 999) / 1000)\n"
    "    out[n + 4] = math.floor((at - tau - now + 999) / 1000)\n"
    "  else\n"
    "    local tat = at + t\n"
    "    local d = now + tau - tat\n"
    "    local q\n"
    "    if d >= 0 then q = math.floor(d / t) else q = -math.floor(-d / t)"
    " end\n"
    "    tats[key] = tat\n"
    "    if not seen[key] then\n"
    "      seen[key] = true\n"
    "      changed[#changed + 1] = key\n"
    "    end\n"
    "    out[n + 1] = 1\n"
    "    out[n + 2] = q + 1\n"
    "    out[n + 3] = math.floor((tat - now + 999) / 1000)\n"
    "    out[n + 4] = 0\n"
    "  end\n"
    "end\n"
    "for i = 1, #changed do\n"
    "  local tat = tats[changed[i]]\n"
    "  redis.call('SET', changed[i], string.format('%.0f', tat), 'PX',\n"
    "             string.format('%.0f',\n"
    "                           math.floor((tat - now + 999) / 1000) + 1000))\n"
    "end\n"
    "return out\n");


ngx_int_t
ngx_http_monetize_redis_batch_init(ngx_http_monetize_redis_t *redis)
{
    ngx_uint_t  n;

    ngx_queue_init(&redis->spare_batches);

    redis->send.handler = ngx_http_monetize_redis_batch_post;
    redis->send.data = redis;
    redis->send.log = ngx_cycle->log;

    /* EVALSHA sha numkeys, then a key and two numbers a call */

    n = 3 + 3 * redis->batch_max;

    redis->argv = ngx_alloc(n * sizeof(const char *), ngx_cycle->log);
    if (redis->argv == NULL) {
        return NGX_ERROR;
    }

    redis->argvlen = ngx_alloc(n * sizeof(size_t), ngx_cycle->log);
    if (redis->argvlen == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_AGAIN: the call is in a batch and will be answered from an event;
 * NGX_ERROR: out of memory (the call is released).
 */

ngx_int_t
ngx_http_monetize_redis_batch_add(ngx_http_monetize_redis_cmd_t *cmd)
{
    ngx_http_monetize_redis_t        *redis;
    ngx_http_monetize_redis_batch_t  *b;

    redis = cmd->redis;
    b = redis->gathering;

    if (b == NULL) {
        b = ngx_http_monetize_redis_batch_new(redis);
        if (b == NULL) {
            ngx_http_monetize_redis_release(cmd);
            return NGX_ERROR;
        }

        b->start = ngx_current_msec;
        redis->gathering = b;
    }

    ngx_queue_insert_tail(&b->calls, &cmd->queue);
    b->ncalls++;

    cmd->batch = b;
    cmd->pending = 1;
    cmd->waiting = 1;

    if (b->ncalls >= redis->batch_max) {
        ngx_http_monetize_redis_batch_send(redis);

    } else if (redis->inflight == 0 && !redis->send.posted) {
        ngx_post_event(&redis->send, &ngx_posted_events);
    }

    return NGX_AGAIN;
}


/* The call's owner went away (its pool cleanup); it is not answered. */

void
ngx_http_monetize_redis_batch_detach(ngx_http_monetize_redis_cmd_t *cmd)
{
    ngx_http_monetize_redis_t        *redis;
    ngx_http_monetize_redis_batch_t  *b;

    b = cmd->batch;

    if (b == NULL || b->sent) {
        /* hiredis has the key already: the batch frees the call */
        return;
    }

    redis = b->redis;

    ngx_queue_remove(&cmd->queue);
    b->ncalls--;

    cmd->batch = NULL;
    cmd->pending = 0;

    if (b->ncalls == 0) {
        if (redis->send.posted) {
            ngx_delete_posted_event(&redis->send);
        }

        redis->gathering = NULL;
        ngx_http_monetize_redis_batch_release(b);
    }
}


void
ngx_http_monetize_redis_batch_exit(ngx_http_monetize_redis_t *redis)
{
    ngx_queue_t                      *q;
    ngx_http_monetize_redis_batch_t  *b;

    if (redis->send.posted) {
        ngx_delete_posted_event(&redis->send);
    }

    if (redis->gathering) {
        b = redis->gathering;
        redis->gathering = NULL;
        ngx_http_monetize_redis_batch_fail(b);
    }

    while (!ngx_queue_empty(&redis->spare_batches)) {
        q = ngx_queue_head(&redis->spare_batches);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_monetize_redis_batch_t, queue));
    }

    redis->nspare_batches = 0;

    ngx_free(redis->argv);
    ngx_free(redis->argvlen);
    redis->argv = NULL;
    redis->argvlen = NULL;
}


static ngx_http_monetize_redis_batch_t *
ngx_http_monetize_redis_batch_new(ngx_http_monetize_redis_t *redis)
{
    ngx_queue_t                      *q;
    ngx_http_monetize_redis_batch_t  *b;

    if (!ngx_queue_empty(&redis->spare_batches)) {
        q = ngx_queue_head(&redis->spare_batches);
        ngx_queue_remove(q);

        redis->nspare_batches--;

        b = ngx_queue_data(q, ngx_http_monetize_redis_batch_t, queue);

    } else {
        b = ngx_alloc(sizeof(ngx_http_monetize_redis_batch_t),
                      ngx_cycle->log);
        if (b == NULL) {
            return NULL;
        }
    }

    ngx_memzero(b, sizeof(ngx_http_monetize_redis_batch_t));

    b->redis = redis;
    ngx_queue_init(&b->calls);

    b->timer.handler = ngx_http_monetize_redis_batch_timeout;
    b->timer.data = b;
    b->timer.log = ngx_cycle->log;

    return b;
}


static void
ngx_http_monetize_redis_batch_post(ngx_event_t *ev)
{
    ngx_http_monetize_redis_batch_send(ev->data);
}


/* Sends the gathering batch; its calls are answered whatever happens. */

static void
ngx_http_monetize_redis_batch_send(ngx_http_monetize_redis_t *redis)
{
    ngx_msec_t                        left;
    ngx_msec_int_t                    elapsed;
    ngx_http_monetize_redis_batch_t  *b;

    if (redis->send.posted) {
        ngx_delete_posted_event(&redis->send);
    }

    b = redis->gathering;

    if (b == NULL) {
        return;
    }

    redis->gathering = NULL;

    elapsed = (ngx_msec_int_t) (ngx_current_msec - b->start);
    left = (elapsed >= (ngx_msec_int_t) redis->timeout)
           ? 0 : redis->timeout - (ngx_msec_t) elapsed;

    /* the connection went since these calls came, or their time is up */

    if (left == 0
        || ngx_http_monetize_redis_usable(redis) != NGX_OK
        || redis->ac == NULL
        || ngx_http_monetize_redis_batch_write(b) != NGX_OK)
    {
        ngx_http_monetize_redis_batch_fail(b);
        return;
    }

    b->sent = 1;
    redis->inflight++;

    ngx_add_timer(&b->timer, left);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize redis: a batch of %ui calls sent, %ui in flight",
                   b->ncalls, redis->inflight);
}


/* EVALSHA, or after a NOSCRIPT the script itself */

static ngx_int_t
ngx_http_monetize_redis_batch_write(ngx_http_monetize_redis_batch_t *b)
{
    u_char                          numkeys[NGX_INT_T_LEN];
    size_t                         *len;
    ngx_uint_t                      i, k;
    ngx_queue_t                    *q;
    const char                    **argv;
    ngx_http_monetize_redis_t      *redis;
    ngx_http_monetize_redis_cmd_t  *cmd;

    redis = b->redis;
    argv = redis->argv;
    len = redis->argvlen;

    if (b->eval) {
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

    argv[2] = (const char *) numkeys;
    len[2] = ngx_sprintf(numkeys, "%ui", b->ncalls) - numkeys;

    i = 3;
    k = 3 + b->ncalls;

    for (q = ngx_queue_head(&b->calls);
         q != ngx_queue_sentinel(&b->calls);
         q = ngx_queue_next(q))
    {
        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);

        argv[i] = (const char *) cmd->key.data;
        len[i++] = cmd->key.len;

        argv[k] = (const char *) cmd->rate.data;
        len[k++] = cmd->rate.len;
        argv[k] = (const char *) cmd->burst.data;
        len[k++] = cmd->burst.len;
    }

    /* hiredis copies the arguments into its output buffer */

    if (redisAsyncCommandArgv(redis->ac, ngx_http_monetize_redis_batch_reply,
                              b, (int) k, argv, len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* hiredis's callback: a reply, or NULL when the connection goes away */

static void
ngx_http_monetize_redis_batch_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                       *reply = r;
    ngx_http_monetize_redis_batch_t  *b = privdata;

    ngx_uint_t                  gone;
    ngx_http_monetize_redis_t  *redis;

    redis = b->redis;
    gone = (reply == NULL);

    if (!gone && !b->eval && !b->answered
        && ngx_http_monetize_redis_noscript(reply))
    {
        /*
         * Redis lost its script cache (SCRIPT FLUSH, a restart behind a
         * proxy), and ran nothing of the batch: it goes again whole, still
         * one round trip of its callers', without the calls no one waits
         * for now; the cache is filled again for the next.
         */

        ngx_http_monetize_redis_batch_compact(b);

        if (b->ncalls > 0) {
            b->eval = 1;

            if (ngx_http_monetize_redis_batch_write(b) == NGX_OK) {
                (void) ngx_http_monetize_redis_load_script(redis, 0);
                return;
            }

            /* the connection is going: its calls fail as below */
            gone = 1;
        }

        reply = NULL;
    }

    redis->inflight--;

    if (b->timer.timer_set) {
        ngx_del_timer(&b->timer);
    }

    if (!b->answered) {
        ngx_http_monetize_redis_batch_decide(b, reply);
    }

    ngx_http_monetize_redis_batch_release(b);

    if (redis->gathering == NULL) {
        return;
    }

    if (gone) {
        /* the connection is gone, or going: nothing may be sent on it */
        b = redis->gathering;
        redis->gathering = NULL;

        if (redis->send.posted) {
            ngx_delete_posted_event(&redis->send);
        }

        ngx_http_monetize_redis_batch_fail(b);
        return;
    }

    /* what gathered during this round trip */

    ngx_http_monetize_redis_batch_send(redis);
}


static ngx_uint_t
ngx_http_monetize_redis_noscript(redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR
           && reply->len >= sizeof("NOSCRIPT") - 1
           && ngx_strncmp(reply->str, "NOSCRIPT", sizeof("NOSCRIPT") - 1)
              == 0;
}


/* Drops the calls whose owners went away: their keys may be gone too. */

static void
ngx_http_monetize_redis_batch_compact(ngx_http_monetize_redis_batch_t *b)
{
    ngx_queue_t                    *q, *next;
    ngx_http_monetize_redis_cmd_t  *cmd;

    for (q = ngx_queue_head(&b->calls);
         q != ngx_queue_sentinel(&b->calls);
         q = next)
    {
        next = ngx_queue_next(q);
        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);

        if (cmd->waiting) {
            continue;
        }

        ngx_queue_remove(q);
        b->ncalls--;

        cmd->batch = NULL;
        cmd->pending = 0;
        ngx_http_monetize_redis_release(cmd);
    }
}


/* Each waiting call gets its place of the answer, or NGX_ERROR. */

static void
ngx_http_monetize_redis_batch_decide(ngx_http_monetize_redis_batch_t *b,
    redisReply *reply)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_queue_t                    *q;
    ngx_http_monetize_redis_cmd_t  *cmd;

    if (reply == NULL) {
        /* the connection is gone; its loss is logged where it happened */
        ngx_http_monetize_redis_batch_fail(b);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V refused the rate limit script: "
                      "%*s", &b->redis->name, (size_t) reply->len,
                      reply->str);
        ngx_http_monetize_redis_batch_fail(b);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4 * b->ncalls)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "monetize: redis %V gave an unexpected answer to the "
                      "rate limit script (type %d, %uz elements for %ui "
                      "calls)", &b->redis->name, reply->type,
                      reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0,
                      b->ncalls);
        ngx_http_monetize_redis_batch_fail(b);
        return;
    }

    i = 0;

    for (q = ngx_queue_head(&b->calls);
         q != ngx_queue_sentinel(&b->calls);
         q = ngx_queue_next(q))
    {
        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);

        rc = ngx_http_monetize_redis_batch_result(cmd, &reply->element[i]);
        i += 4;

        if (cmd->waiting && !cmd->answered) {
            ngx_http_monetize_redis_answer(cmd, rc);
        }
    }
}


static ngx_int_t
ngx_http_monetize_redis_batch_result(ngx_http_monetize_redis_cmd_t *cmd,
    redisReply **element)
{
    ngx_uint_t                  i;
    ngx_http_monetize_limit_t  *lim;

    for (i = 0; i < 4; i++) {
        if (element[i]->type != REDIS_REPLY_INTEGER
            || element[i]->integer < 0)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: redis %V gave an unexpected answer to "
                          "the rate limit script (type %d)",
                          &cmd->redis->name, element[i]->type);
            return NGX_ERROR;
        }
    }

    lim = &cmd->lim;

    lim->allowed = element[0]->integer ? 1 : 0;
    lim->limit = cmd->limit_n;
    lim->remaining = (ngx_uint_t) element[1]->integer;
    lim->reset = (ngx_msec_t) element[2]->integer;
    lim->retry_after = (ngx_msec_t) element[3]->integer;

    return NGX_OK;
}


/* Every call still waiting gets NGX_ERROR: the fail mode's answer. */

static void
ngx_http_monetize_redis_batch_fail(ngx_http_monetize_redis_batch_t *b)
{
    ngx_queue_t                    *q;
    ngx_http_monetize_redis_cmd_t  *cmd;

    for (q = ngx_queue_head(&b->calls);
         q != ngx_queue_sentinel(&b->calls);
         q = ngx_queue_next(q))
    {
        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);

        if (cmd->waiting && !cmd->answered) {
            ngx_http_monetize_redis_answer(cmd, NGX_ERROR);
        }
    }

    b->answered = 1;

    if (!b->sent) {
        ngx_http_monetize_redis_batch_release(b);
    }
}


static void
ngx_http_monetize_redis_batch_timeout(ngx_event_t *ev)
{
    ngx_http_monetize_redis_t        *redis;
    ngx_http_monetize_redis_batch_t  *b;

    b = ev->data;
    redis = b->redis;

    /* hiredis still holds the batch: it is released by its callback */
    ngx_http_monetize_redis_batch_fail(b);

    /*
     * Redis runs one command at a time: one that takes this long means it
     * is stuck or gone, and every batch behind this one would wait as
     * long. Drop the connection; callers are told at once until a new one
     * answers its handshake.
     */

    ngx_http_monetize_redis_unreachable(redis, "no answer within %Mms",
                                        redis->timeout);
    ngx_http_monetize_redis_close(redis);
}


/*
 * The calls leave the batch: those answered or waiting for their delivery
 * are freed by it, those whose owner went are freed now.
 */

static void
ngx_http_monetize_redis_batch_release(ngx_http_monetize_redis_batch_t *b)
{
    ngx_queue_t                    *q;
    ngx_http_monetize_redis_t      *redis;
    ngx_http_monetize_redis_cmd_t  *cmd;

    redis = b->redis;

    while (!ngx_queue_empty(&b->calls)) {
        q = ngx_queue_head(&b->calls);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_http_monetize_redis_cmd_t, queue);
        cmd->batch = NULL;
        cmd->pending = 0;

        if (!cmd->waiting) {
            ngx_http_monetize_redis_release(cmd);
        }
    }

    if (b->timer.timer_set) {
        ngx_del_timer(&b->timer);
    }

    if (redis->exiting
        || redis->nspare_batches >= NGX_HTTP_MONETIZE_REDIS_BATCH_SPARE)
    {
        ngx_free(b);
        return;
    }

    ngx_queue_insert_head(&redis->spare_batches, &b->queue);
    redis->nspare_batches++;
}
