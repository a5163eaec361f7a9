
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_cache.h"


/*
 * The key cache: a shared-memory zone all workers read, keyed by the
 * keyed hash of an API key, in the way of limit_req: a slab pool, a red-black
 * tree for lookups, an LRU queue for eviction when the zone is full.
 * Entries live for the zone's ttl; "no such key" is cached too, for at most
 * 10s. Changes in PostgreSQL reach it through LISTEN/NOTIFY, not the ttl.
 */


#define NGX_HTTP_MONETIZE_CACHE_NEGATIVE_TTL  10


typedef struct {
    ngx_rbtree_node_t                node;      /* key: the hash's first word */
    ngx_queue_t                      queue;     /* most recent first */
    u_char                           hash[NGX_HTTP_MONETIZE_HASH_SIZE];
    time_t                           expires;
    ngx_http_monetize_key_info_t     info;
} ngx_http_monetize_cache_node_t;


typedef struct {
    ngx_rbtree_t                     rbtree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      queue;
} ngx_http_monetize_cache_sh_t;


struct ngx_http_monetize_cache_s {
    ngx_http_monetize_cache_sh_t    *sh;
    ngx_slab_pool_t                 *shpool;
    time_t                           ttl;
};


static ngx_http_monetize_cache_node_t *ngx_http_monetize_cache_lookup(
    ngx_http_monetize_cache_t *cache, u_char *hash);
static void ngx_http_monetize_cache_remove(ngx_http_monetize_cache_t *cache,
    ngx_http_monetize_cache_node_t *cn);
static ngx_http_monetize_cache_node_t *ngx_http_monetize_cache_alloc(
    ngx_http_monetize_cache_t *cache);
static void ngx_http_monetize_cache_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_monetize_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


ngx_int_t
ngx_http_monetize_cache_get(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info)
{
    ngx_int_t                        rc;
    ngx_http_monetize_cache_node_t  *cn;

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_monetize_cache_lookup(cache, hash);

    if (cn) {
        if (cn->expires > ngx_time()) {
            *info = cn->info;

            ngx_queue_remove(&cn->queue);
            ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

            rc = NGX_OK;

        } else {
            ngx_http_monetize_cache_remove(cache, cn);
        }
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return rc;
}


void
ngx_http_monetize_cache_put(ngx_http_monetize_cache_t *cache, u_char *hash,
    ngx_http_monetize_key_info_t *info)
{
    ngx_http_monetize_cache_node_t  *cn;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_monetize_cache_lookup(cache, hash);

    if (cn) {
        ngx_queue_remove(&cn->queue);

    } else {
        cn = ngx_http_monetize_cache_alloc(cache);

        if (cn == NULL) {
            ngx_shmtx_unlock(&cache->shpool->mutex);
            return;
        }

        ngx_memcpy(cn->hash, hash, NGX_HTTP_MONETIZE_HASH_SIZE);
        ngx_memcpy(&cn->node.key, hash, sizeof(uint32_t));
        ngx_rbtree_insert(&cache->sh->rbtree, &cn->node);
    }

    cn->info = *info;
    cn->expires = ngx_time()
                  + (info->found ? cache->ttl
                                 : ngx_min(cache->ttl,
                                       NGX_HTTP_MONETIZE_CACHE_NEGATIVE_TTL));

    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


void
ngx_http_monetize_cache_set_balance(ngx_http_monetize_cache_t *cache,
    u_char *hash, int64_t balance)
{
    ngx_http_monetize_cache_node_t  *cn;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_monetize_cache_lookup(cache, hash);

    if (cn) {
        cn->info.balance = balance;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


void
ngx_http_monetize_cache_delete(ngx_http_monetize_cache_t *cache,
    u_char *hash)
{
    ngx_http_monetize_cache_node_t  *cn;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_monetize_cache_lookup(cache, hash);

    if (cn) {
        ngx_http_monetize_cache_remove(cache, cn);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/* An account changed (suspended, say): every key of it goes. */

void
ngx_http_monetize_cache_delete_user(ngx_http_monetize_cache_t *cache,
    u_char *user_id)
{
    ngx_queue_t                     *q, *next;
    ngx_http_monetize_cache_node_t  *cn;

    ngx_shmtx_lock(&cache->shpool->mutex);

    for (q = ngx_queue_head(&cache->sh->queue);
         q != ngx_queue_sentinel(&cache->sh->queue);
         q = next)
    {
        next = ngx_queue_next(q);
        cn = ngx_queue_data(q, ngx_http_monetize_cache_node_t, queue);

        if (cn->info.found
            && ngx_memcmp(cn->info.user_id, user_id,
                          NGX_HTTP_MONETIZE_UUID_LEN) == 0)
        {
            ngx_http_monetize_cache_remove(cache, cn);
        }
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


void
ngx_http_monetize_cache_flush(ngx_http_monetize_cache_t *cache)
{
    ngx_queue_t                     *q;
    ngx_http_monetize_cache_node_t  *cn;

    ngx_shmtx_lock(&cache->shpool->mutex);

    while (!ngx_queue_empty(&cache->sh->queue)) {
        q = ngx_queue_head(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_http_monetize_cache_node_t, queue);
        ngx_http_monetize_cache_remove(cache, cn);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


static ngx_http_monetize_cache_node_t *
ngx_http_monetize_cache_lookup(ngx_http_monetize_cache_t *cache, u_char *hash)
{
    ngx_int_t                        rc;
    uint32_t                         key;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_monetize_cache_node_t  *cn;

    ngx_memcpy(&key, hash, sizeof(uint32_t));

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_monetize_cache_node_t *) node;

        rc = ngx_memcmp(hash, cn->hash, NGX_HTTP_MONETIZE_HASH_SIZE);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_monetize_cache_remove(ngx_http_monetize_cache_t *cache,
    ngx_http_monetize_cache_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &cn->node);
    ngx_slab_free_locked(cache->shpool, cn);
}


/* Under the lock; when the zone is full, the least recently used go. */

static ngx_http_monetize_cache_node_t *
ngx_http_monetize_cache_alloc(ngx_http_monetize_cache_t *cache)
{
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_http_monetize_cache_node_t  *cn;

    for ( ;; ) {
        cn = ngx_slab_alloc_locked(cache->shpool,
                                   sizeof(ngx_http_monetize_cache_node_t));
        if (cn) {
            return cn;
        }

        if (ngx_queue_empty(&cache->sh->queue)) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: the monetize_cache zone is too small "
                          "for a single key");
            return NULL;
        }

        for (n = 0; n < 16 && !ngx_queue_empty(&cache->sh->queue); n++) {
            q = ngx_queue_last(&cache->sh->queue);
            ngx_http_monetize_cache_remove(cache,
                ngx_queue_data(q, ngx_http_monetize_cache_node_t, queue));
        }
    }
}


static void
ngx_http_monetize_cache_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_monetize_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_monetize_cache_node_t *) node;
            cnt = (ngx_http_monetize_cache_node_t *) temp;

            p = (ngx_memcmp(cn->hash, cnt->hash, NGX_HTTP_MONETIZE_HASH_SIZE)
                 < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_monetize_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_monetize_cache_t *ocache = data;

    size_t                      len;
    ngx_http_monetize_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        /* a reload keeps what the workers cached */
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_monetize_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_monetize_cache_rbtree_insert_value);
    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in monetize_cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in monetize_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is the normal case: we evict, no need to log it */
    cache->shpool->log_nomem = 0;

    return NGX_OK;
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
    ngx_shm_zone_t             *shm_zone;
    ngx_http_monetize_cache_t  *cache;

    ngx_str_null(&name);
    size = 0;
    ttl = 60000;

    for (i = 1; i < nargs; i++) {

        if (ngx_strncmp(args[i].data, "zone=", 5) == 0) {
            name.data = args[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

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

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_cache: zone \"%V\" is too "
                                   "small, give at least %uzk", &name,
                                   8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
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

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_monetize_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_cache: zone \"%V\" is already used",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_monetize_cache_init_zone;
    shm_zone->data = cache;

    *cachep = cache;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_cache: invalid parameter \"%V\", give "
                       "zone=NAME:SIZE [ttl=TIME]", &args[i]);
    return NGX_CONF_ERROR;
}
