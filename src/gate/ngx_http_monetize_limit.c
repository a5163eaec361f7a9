
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_limit.h"


/*
 * Rate limits by GCRA (the generic cell rate algorithm): one number a key,
 * the theoretical arrival time (TAT) of its next call, in microseconds.
 * A call may pass while it is no earlier than TAT - tau, where tau lets
 * "burst" calls come at once; each call passing pushes TAT on by the
 * emission interval T (1s / rate). The Redis store runs the same arithmetic
 * in a script (ngx_http_monetize_redis.c), on Redis's clock.
 */


void
ngx_http_monetize_gcra(int64_t *tat, int64_t now, int64_t interval,
    ngx_uint_t burst, ngx_http_monetize_limit_t *lim)
{
    int64_t  t, tau, at, next;

    t = interval;
    tau = (int64_t) (burst - 1) * t;
    at = ngx_max(*tat, now);

    lim->limit = burst;

    if (now < at - tau) {
        lim->allowed = 0;
        lim->remaining = 0;
        lim->reset = (ngx_msec_t) ((at - now + 999) / 1000);
        lim->retry_after = (ngx_msec_t) ((at - tau - now + 999) / 1000);
        return;
    }

    next = at + t;
    *tat = next;

    /* now + tau - at >= 0 here: the division floors, as it must */

    lim->allowed = 1;
    lim->remaining = (ngx_uint_t) ((now + tau - at) / t);
    lim->reset = (ngx_msec_t) ((next - now + 999) / 1000);
    lim->retry_after = 0;
}


/*
 * The node-local store: one shared-memory table for all workers. A limit
 * that the arithmetic cannot keep (an interval under 1us: a rate above
 * 1000000 a second; no burst), whatever set it, is NGX_ERROR.
 */

ngx_int_t
ngx_http_monetize_limit_local(ngx_http_monetize_shm_t *zone, ngx_str_t *key,
    int64_t interval, ngx_uint_t burst, ngx_http_monetize_limit_t *lim)
{
    int64_t                         now, *tat;
    ngx_time_t                     *tp;
    ngx_http_monetize_shm_entry_t  *e;

    static time_t                   logged;

    if (interval < 1 || burst == 0) {
        if (ngx_time() - logged >= 60) {
            logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "monetize: the rate limit of \"%V\" (a call "
                          "every %Lus, a burst of %ui) cannot be kept: a rate "
                          "must be at most 1000000 calls a second, a burst "
                          "at least 1; its calls are refused", key, interval,
                          burst);
        }

        return NGX_ERROR;
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000000 + (int64_t) tp->msec * 1000;

    ngx_http_monetize_shm_lock(zone);

    e = ngx_http_monetize_shm_find(zone, key->data, key->len);

    if (e) {
        ngx_http_monetize_shm_touch(zone, e);

    } else {
        e = ngx_http_monetize_shm_insert(zone, key->data, key->len);

        if (e == NULL) {
            ngx_http_monetize_shm_unlock(zone);
            return NGX_ERROR;
        }
    }

    tat = ngx_http_monetize_shm_value(e);
    ngx_http_monetize_gcra(tat, now, interval, burst, lim);

    ngx_http_monetize_shm_unlock(zone);

    return NGX_OK;
}
