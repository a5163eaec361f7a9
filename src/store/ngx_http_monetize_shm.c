
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_shm.h"


/*
 * The shared-memory tables of the key cache and of the rate limiter: one
 * mechanism, in the way of limit_req. A reload keeps a zone's contents.
 */


typedef struct {
    ngx_rbtree_t                     rbtree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      queue;
    void                            *data;
} ngx_http_monetize_shm_sh_t;


struct ngx_http_monetize_shm_s {
    ngx_http_monetize_shm_sh_t      *sh;
    ngx_slab_pool_t                 *shpool;
    size_t                           value_size;
    size_t                           data_size;
    const char                      *directive;
};


static int ngx_http_monetize_shm_cmp(u_char *key, size_t len,
    ngx_http_monetize_shm_entry_t *e);
static void ngx_http_monetize_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_monetize_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


void
ngx_http_monetize_shm_lock(ngx_http_monetize_shm_t *shm)
{
    ngx_shmtx_lock(&shm->shpool->mutex);
}


void
ngx_http_monetize_shm_unlock(ngx_http_monetize_shm_t *shm)
{
    ngx_shmtx_unlock(&shm->shpool->mutex);
}


ngx_http_monetize_shm_entry_t *
ngx_http_monetize_shm_find(ngx_http_monetize_shm_t *shm, u_char *key,
    size_t len)
{
    int                             rc;
    uint32_t                        hash;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_monetize_shm_entry_t  *e;

    hash = ngx_crc32_short(key, len);

    node = shm->sh->rbtree.root;
    sentinel = shm->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        e = (ngx_http_monetize_shm_entry_t *) node;
        rc = ngx_http_monetize_shm_cmp(key, len, e);

        if (rc == 0) {
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* A new entry, its value zeroed; when the zone is full, the oldest go. */

ngx_http_monetize_shm_entry_t *
ngx_http_monetize_shm_insert(ngx_http_monetize_shm_t *shm, u_char *key,
    size_t len)
{
    size_t                          size;
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_monetize_shm_entry_t  *e;

    if (len > NGX_HTTP_MONETIZE_SHM_KEY_MAX) {
        return NULL;
    }

    size = ngx_align(offsetof(ngx_http_monetize_shm_entry_t, key) + len,
                     NGX_ALIGNMENT)
           + shm->value_size;

    for ( ;; ) {
        e = ngx_slab_alloc_locked(shm->shpool, size);
        if (e) {
            break;
        }

        if (ngx_queue_empty(&shm->sh->queue)) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: the %s zone is too small for a single "
                          "entry", shm->directive);
            return NULL;
        }

        for (n = 0; n < 16 && !ngx_queue_empty(&shm->sh->queue); n++) {
            q = ngx_queue_last(&shm->sh->queue);
            ngx_http_monetize_shm_remove(shm,
                ngx_queue_data(q, ngx_http_monetize_shm_entry_t, queue));
        }
    }

    ngx_memcpy(e->key, key, len);
    e->len = (u_char) len;
    ngx_memzero(ngx_http_monetize_shm_value(e), shm->value_size);
    e->node.key = ngx_crc32_short(key, len);

    ngx_rbtree_insert(&shm->sh->rbtree, &e->node);
    ngx_queue_insert_head(&shm->sh->queue, &e->queue);

    return e;
}


void
ngx_http_monetize_shm_touch(ngx_http_monetize_shm_t *shm,
    ngx_http_monetize_shm_entry_t *e)
{
    ngx_queue_remove(&e->queue);
    ngx_queue_insert_head(&shm->sh->queue, &e->queue);
}


void
ngx_http_monetize_shm_remove(ngx_http_monetize_shm_t *shm,
    ngx_http_monetize_shm_entry_t *e)
{
    ngx_queue_remove(&e->queue);
    ngx_rbtree_delete(&shm->sh->rbtree, &e->node);
    ngx_slab_free_locked(shm->shpool, e);
}


/* The zone's own area; set once when the zone is made, read without lock. */

void *
ngx_http_monetize_shm_data(ngx_http_monetize_shm_t *shm)
{
    return shm->sh->data;
}


static int
ngx_http_monetize_shm_cmp(u_char *key, size_t len,
    ngx_http_monetize_shm_entry_t *e)
{
    if (len != e->len) {
        return (len < e->len) ? -1 : 1;
    }

    return ngx_memcmp(key, e->key, len);
}


static void
ngx_http_monetize_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_monetize_shm_entry_t   *e;

    e = (ngx_http_monetize_shm_entry_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_http_monetize_shm_cmp(e->key, e->len,
                     (ngx_http_monetize_shm_entry_t *) temp) < 0)
                ? &temp->left : &temp->right;
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
ngx_http_monetize_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_monetize_shm_t *oshm = data;

    size_t                    len;
    ngx_http_monetize_shm_t  *shm;

    shm = shm_zone->data;

    if (oshm) {
        if (oshm->value_size != shm->value_size
            || oshm->data_size != shm->data_size)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "%s zone \"%V\" was made for other entries; "
                          "rename it or restart nginx", shm->directive,
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        /* a reload keeps what the workers stored */
        shm->sh = oshm->sh;
        shm->shpool = oshm->shpool;
        return NGX_OK;
    }

    shm->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm->sh = shm->shpool->data;
        return NGX_OK;
    }

    shm->sh = ngx_slab_alloc(shm->shpool, sizeof(ngx_http_monetize_shm_sh_t));
    if (shm->sh == NULL) {
        return NGX_ERROR;
    }

    shm->shpool->data = shm->sh;

    if (shm->data_size) {
        shm->sh->data = ngx_slab_calloc(shm->shpool, shm->data_size);
        if (shm->sh->data == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_rbtree_init(&shm->sh->rbtree, &shm->sh->sentinel,
                    ngx_http_monetize_shm_rbtree_insert_value);
    ngx_queue_init(&shm->sh->queue);

    len = sizeof(" in  zone \"\"") + ngx_strlen(shm->directive)
          + shm_zone->shm.name.len;

    shm->shpool->log_ctx = ngx_slab_alloc(shm->shpool, len);
    if (shm->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shm->shpool->log_ctx, " in %s zone \"%V\"%Z", shm->directive,
                &shm_zone->shm.name);

    /* a full zone is the normal case: the oldest entries go */
    shm->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_http_monetize_shm_t *
ngx_http_monetize_shm_add(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    size_t value_size, const char *directive)
{
    ngx_shm_zone_t           *shm_zone;
    ngx_http_monetize_shm_t  *shm;

    if (size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: zone \"%V\" is too small, give at least "
                           "%uzk", directive, name, 8 * ngx_pagesize / 1024);
        return NULL;
    }

    shm = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_shm_t));
    if (shm == NULL) {
        return NULL;
    }

    shm->value_size = value_size;
    shm->directive = directive;

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_http_monetize_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: zone \"%V\" is already used", directive,
                           name);
        return NULL;
    }

    shm_zone->init = ngx_http_monetize_shm_init_zone;
    shm_zone->data = shm;

    return shm;
}


/* At configuration time: the zone gets an area of "size" bytes, zeroed. */

void
ngx_http_monetize_shm_add_data(ngx_http_monetize_shm_t *shm, size_t size)
{
    shm->data_size = size;
}
