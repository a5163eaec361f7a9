
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_cache.h"
#include "ngx_http_monetize_shm.h"


/*
 * The key cache: a shared-memory table all workers read, keyed by the keyed
 * hash of an API key. Entries live for the zone's ttl; "no such key" is
 * cached too, for at most 10s. Changes in PostgreSQL reach it through
 * LISTEN/NOTIFY (ngx_http_monetize_keystore.c), not the ttl.
 */


#define NGX_HTTP_MONETIZE_CACHE_NEGATIVE_TTL  10


typedef struct {
    time_t                           expires;
    ngx_http_monetize_key_info_t     info;
} ngx_http_monetize_cached_t;


struct ngx_http_monetize_cache_s {
    ngx_http_monetize_shm_t         *shm;
    time_t                           ttl;
};


#define ngx_http_monetize_cached(e)                                          \
    ((ngx_http_monetize_cached_t *) ngx_http_monetize_shm_value(e))


ngx_int_t
ngx_http_monetize_cache_get(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info)
{
    ngx_int_t                       rc;
    ngx_http_monetize_shm_entry_t  *e;

    rc = NGX_DECLINED;

    ngx_http_monetize_shm_lock(cache->shm);

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);

    if (e) {
        if (ngx_http_monetize_cached(e)->expires > ngx_time()) {
            *info = ngx_http_monetize_cached(e)->info;
            ngx_http_monetize_shm_touch(cache->shm, e);
            rc = NGX_OK;

        } else {
            ngx_http_monetize_shm_remove(cache->shm, e);
        }
    }

    ngx_http_monetize_shm_unlock(cache->shm);

    return rc;
}


void
ngx_http_monetize_cache_put(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info)
{
    ngx_http_monetize_shm_entry_t  *e;

    ngx_http_monetize_shm_lock(cache->shm);

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);

    if (e) {
        ngx_http_monetize_shm_touch(cache->shm, e);

    } else {
        e = ngx_http_monetize_shm_insert(cache->shm, hash,
                                         NGX_HTTP_MONETIZE_HASH_SIZE);
    }

    if (e) {
        ngx_http_monetize_cached(e)->info = *info;
        ngx_http_monetize_cached(e)->expires = ngx_time()
            + (info->found ? cache->ttl
                           : ngx_min(cache->ttl,
                                     NGX_HTTP_MONETIZE_CACHE_NEGATIVE_TTL));
    }

    ngx_http_monetize_shm_unlock(cache->shm);
}


void
ngx_http_monetize_cache_set_balance(ngx_http_monetize_cache_t *cache,
    u_char *hash, int64_t balance)
{
    ngx_http_monetize_shm_entry_t  *e;

    ngx_http_monetize_shm_lock(cache->shm);

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);
    if (e) {
        ngx_http_monetize_cached(e)->info.balance = balance;
    }

    ngx_http_monetize_shm_unlock(cache->shm);
}


void
ngx_http_monetize_cache_delete(ngx_http_monetize_cache_t *cache,
    u_char *hash)
{
    ngx_http_monetize_shm_entry_t  *e;

    ngx_http_monetize_shm_lock(cache->shm);

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);
    if (e) {
        ngx_http_monetize_shm_remove(cache->shm, e);
    }

    ngx_http_monetize_shm_unlock(cache->shm);
}


/*
 * An account changed (suspended, another plan): every key of it goes; and
 * with a NULL account, every key.
 */

void
ngx_http_monetize_cache_delete_user(ngx_http_monetize_cache_t *cache,
    u_char *user_id)
{
    ngx_queue_t                    *q, *next, *queue;
    ngx_http_monetize_cached_t     *c;
    ngx_http_monetize_shm_entry_t  *e;

    ngx_http_monetize_shm_lock(cache->shm);

    queue = ngx_http_monetize_shm_queue(cache->shm);

    for (q = ngx_queue_head(queue); q != ngx_queue_sentinel(queue); q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_http_monetize_shm_entry_t, queue);
        c = ngx_http_monetize_cached(e);

        if (user_id == NULL
            || (c->info.found
                && ngx_memcmp(c->info.user_id, user_id,
                              NGX_HTTP_MONETIZE_UUID_LEN) == 0))
        {
            ngx_http_monetize_shm_remove(cache->shm, e);
        }
    }

    ngx_http_monetize_shm_unlock(cache->shm);
}


void
ngx_http_monetize_cache_flush(ngx_http_monetize_cache_t *cache)
{
    ngx_http_monetize_cache_delete_user(cache, NULL);
}


/* monetize_cache zone=NAME:SIZE [ttl=T] */

char *
ngx_http_monetize_cache_conf(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_http_monetize_cache_t **cachep)
{
    u_char                     *p;
    ssize_t                     size;
    ngx_str_t                   name, s;
    ngx_uint_t                  i;
    ngx_msec_t                  ttl;
    ngx_http_monetize_cache_t  *cache;

    ngx_str_null(&name);
    size = 0;
    ttl = 60000;

    for (i = 1; i < nargs; i++) {

        if (ngx_strncmp(args[i].data, "zone=", 5) == 0) {
            name.data = args[i].data + 5;
            p = ngx_strlchr(name.data, args[i].data + args[i].len, ':');

            if (p == NULL) {
                goto invalid;
            }

            name.len = p - name.data;
            s.data = p + 1;
            s.len = args[i].data + args[i].len - s.data;

            size = ngx_parse_size(&s);

            if (name.len == 0 || size == NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(args[i].data, "ttl=", 4) == 0) {
            s.data = args[i].data + 4;
            s.len = args[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl == (ngx_msec_t) NGX_ERROR || ttl < 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_cache: invalid \"%V\", give a "
                                   "time of at least 1s", &args[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_cache: give zone=NAME:SIZE");
        return NGX_CONF_ERROR;
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->ttl = ttl / 1000;

    cache->shm = ngx_http_monetize_shm_add(cf, &name, size,
                                           sizeof(ngx_http_monetize_cached_t),
                                           "monetize_cache");
    if (cache->shm == NULL) {
        return NGX_CONF_ERROR;
    }

    *cachep = cache;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_cache: invalid parameter \"%V\", give "
                       "zone=NAME:SIZE [ttl=TIME]", &args[i]);
    return NGX_CONF_ERROR;
}
