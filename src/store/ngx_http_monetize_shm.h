
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_SHM_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_SHM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_MONETIZE_SHM_KEY_MAX  48


/*
 * A table in shared memory, in the way of limit_req: keys of up to 48 bytes,
 * values of one fixed size, a red-black tree to find them, a queue to evict
 * the least recently used when the zone is full; and, for its user, one
 * area of the zone's own (zeroed when the zone is made, kept on reload).
 * Every call but lock/unlock and data is made under the lock.
 */

typedef struct ngx_http_monetize_shm_s  ngx_http_monetize_shm_t;


typedef struct {
    ngx_rbtree_node_t                node;     /* key: crc32 of the key */
    ngx_queue_t                      queue;    /* most recent first */
    u_char                           len;
    u_char                           key[1];   /* "len" bytes */
} ngx_http_monetize_shm_entry_t;


/*
 * The value follows the key, aligned as nginx aligns its own allocations
 * (for a pointer, an int64_t, a time_t), as limit_req lays out its nodes.
 */
#define ngx_http_monetize_shm_value(e)                                       \
    ((void *) ngx_align_ptr((e)->key + (e)->len, NGX_ALIGNMENT))


ngx_http_monetize_shm_t *ngx_http_monetize_shm_add(ngx_conf_t *cf,
    ngx_str_t *name, size_t size, size_t value_size, const char *directive);
void ngx_http_monetize_shm_add_data(ngx_http_monetize_shm_t *shm,
    size_t size);
void *ngx_http_monetize_shm_data(ngx_http_monetize_shm_t *shm);

void ngx_http_monetize_shm_lock(ngx_http_monetize_shm_t *shm);
void ngx_http_monetize_shm_unlock(ngx_http_monetize_shm_t *shm);

ngx_http_monetize_shm_entry_t *ngx_http_monetize_shm_find(
    ngx_http_monetize_shm_t *shm, u_char *key, size_t len);
ngx_http_monetize_shm_entry_t *ngx_http_monetize_shm_insert(
    ngx_http_monetize_shm_t *shm, u_char *key, size_t len);
void ngx_http_monetize_shm_touch(ngx_http_monetize_shm_t *shm,
    ngx_http_monetize_shm_entry_t *e);
void ngx_http_monetize_shm_remove(ngx_http_monetize_shm_t *shm,
    ngx_http_monetize_shm_entry_t *e);


#endif /* _NGX_HTTP_MONETIZE_SHM_H_INCLUDED_ */
