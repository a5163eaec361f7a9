
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
 *
 * A change is one step under the lock, whatever the cache holds: the zone's
 * generation moves on, and the change records it in the slot that the key's
 * hash falls in, or in the one the account's id falls in (two tables, so a
 * key and an account never share a slot), or, for all, in "flushed". Each
 * entry carries the generation at which its lookup began; an entry older
 * than a change that concerns it is stale, and so is a lookup that began
 * before it: a row read before a revocation committed is never stored after
 * the revocation was heard. Two keys, or two accounts, that share a slot
 * only cost each other a lookup.
 */


#define NGX_HTTP_MONETIZE_CACHE_NEGATIVE_TTL  10
#define NGX_HTTP_MONETIZE_CACHE_SLOTS         1024


#define ngx_http_monetize_cached(e)                                          \
    ((ngx_http_monetize_cached_t *) ngx_http_monetize_shm_value(e))

#define ngx_http_monetize_cache_slot(p, len)                                 \
    (ngx_crc32_short(p, len) % NGX_HTTP_MONETIZE_CACHE_SLOTS)


typedef struct {
    uint64_t                         generation;
    uint64_t                         flushed;
    uint64_t                         keys[NGX_HTTP_MONETIZE_CACHE_SLOTS];
    uint64_t                         accounts[NGX_HTTP_MONETIZE_CACHE_SLOTS];
} ngx_http_monetize_cache_sh_t;


typedef struct {
    uint64_t                         generation;   /* its lookup's start */
    time_t                           expires;
    ngx_http_monetize_key_info_t     info;
} ngx_http_monetize_cached_t;


struct ngx_http_monetize_cache_s {
    ngx_http_monetize_shm_t         *shm;
    time_t                           ttl;
};


static ngx_uint_t ngx_http_monetize_cache_fresh(
    ngx_http_monetize_cache_sh_t *sh, u_char *hash,
    ngx_http_monetize_key_info_t *info, uint64_t generation);


/*
 * NGX_OK: info is filled from the cache. NGX_DECLINED: look the key up,
 * and give the generation returned here to the put of what was found.
 */

ngx_int_t
ngx_http_monetize_cache_get(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info, uint64_t *generation)
{
    ngx_int_t                       rc;
    ngx_http_monetize_cached_t     *c;
    ngx_http_monetize_cache_sh_t   *sh;
    ngx_http_monetize_shm_entry_t  *e;

    rc = NGX_DECLINED;
    sh = ngx_http_monetize_shm_data(cache->shm);

    ngx_http_monetize_shm_lock(cache->shm);

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);

    if (e) {
        c = ngx_http_monetize_cached(e);

        if (c->expires > ngx_time()
            && ngx_http_monetize_cache_fresh(sh, hash, &c->info,
                                             c->generation))
        {
            *info = c->info;
            ngx_http_monetize_shm_touch(cache->shm, e);
            rc = NGX_OK;

        } else {
            ngx_http_monetize_shm_remove(cache->shm, e);
        }
    }

    *generation = sh->generation;

    ngx_http_monetize_shm_unlock(cache->shm);

    return rc;
}


/* What a lookup that began at "generation" found, unless it is stale. */

void
ngx_http_monetize_cache_put(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info, uint64_t generation)
{
    ngx_http_monetize_cached_t     *c;
    ngx_http_monetize_cache_sh_t   *sh;
    ngx_http_monetize_shm_entry_t  *e;

    sh = ngx_http_monetize_shm_data(cache->shm);

    ngx_http_monetize_shm_lock(cache->shm);

    if (!ngx_http_monetize_cache_fresh(sh, hash, info, generation)) {
        ngx_http_monetize_shm_unlock(cache->shm);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "monetize cache: a lookup begun at generation %uL "
                       "was overtaken by a change; not stored", generation);
        return;
    }

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);

    if (e) {
        ngx_http_monetize_shm_touch(cache->shm, e);

    } else {
        e = ngx_http_monetize_shm_insert(cache->shm, hash,
                                         NGX_HTTP_MONETIZE_HASH_SIZE);
    }

    if (e) {
        c = ngx_http_monetize_cached(e);
        c->generation = generation;
        c->info = *info;
        c->expires = ngx_time()
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


/* A key changed: its entry goes, and lookups of it under way are stale. */

void
ngx_http_monetize_cache_delete(ngx_http_monetize_cache_t *cache,
    u_char *hash)
{
    ngx_http_monetize_cache_sh_t   *sh;
    ngx_http_monetize_shm_entry_t  *e;

    sh = ngx_http_monetize_shm_data(cache->shm);

    ngx_http_monetize_shm_lock(cache->shm);

    sh->keys[ngx_http_monetize_cache_slot(hash, NGX_HTTP_MONETIZE_HASH_SIZE)]
        = ++sh->generation;

    e = ngx_http_monetize_shm_find(cache->shm, hash,
                                   NGX_HTTP_MONETIZE_HASH_SIZE);
    if (e) {
        ngx_http_monetize_shm_remove(cache->shm, e);
    }

    ngx_http_monetize_shm_unlock(cache->shm);
}


/*
 * An account changed (suspended, another plan): every key of it is stale.
 * The entries stay until they are looked up or evicted.
 */

void
ngx_http_monetize_cache_delete_user(ngx_http_monetize_cache_t *cache,
    u_char *user_id)
{
    uint64_t                       generation;
    ngx_http_monetize_cache_sh_t  *sh;

    sh = ngx_http_monetize_shm_data(cache->shm);

    ngx_http_monetize_shm_lock(cache->shm);

    generation = ++sh->generation;
    sh->accounts[ngx_http_monetize_cache_slot(user_id,
                                              NGX_HTTP_MONETIZE_UUID_LEN)]
        = generation;

    ngx_http_monetize_shm_unlock(cache->shm);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize cache: account %*s changed: stale below "
                   "generation %uL", (size_t) NGX_HTTP_MONETIZE_UUID_LEN,
                   user_id, generation);
}


void
ngx_http_monetize_cache_flush(ngx_http_monetize_cache_t *cache)
{
    uint64_t                       generation;
    ngx_http_monetize_cache_sh_t  *sh;

    sh = ngx_http_monetize_shm_data(cache->shm);

    ngx_http_monetize_shm_lock(cache->shm);

    generation = ++sh->generation;
    sh->flushed = generation;

    ngx_http_monetize_shm_unlock(cache->shm);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "monetize cache: every entry stale below generation %uL",
                   generation);
}


/* Under the lock: has nothing that concerns this key changed since? */

static ngx_uint_t
ngx_http_monetize_cache_fresh(ngx_http_monetize_cache_sh_t *sh, u_char *hash,
    ngx_http_monetize_key_info_t *info, uint64_t generation)
{
    if (generation < sh->flushed
        || generation < sh->keys[ngx_http_monetize_cache_slot(hash,
                                           NGX_HTTP_MONETIZE_HASH_SIZE)])
    {
        return 0;
    }

    return !info->found
           || generation >= sh->accounts[ngx_http_monetize_cache_slot(
                                 info->user_id, NGX_HTTP_MONETIZE_UUID_LEN)];
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

    ngx_http_monetize_shm_add_data(cache->shm,
                                   sizeof(ngx_http_monetize_cache_sh_t));

    *cachep = cache;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_cache: invalid parameter \"%V\", give "
                       "zone=NAME:SIZE [ttl=TIME]", &args[i]);
    return NGX_CONF_ERROR;
}
