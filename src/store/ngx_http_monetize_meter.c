
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_meter.h"


/*
 * Usage, for statistics (money is in the ledger): each worker counts the
 * calls it admits per account, key, location and day in memory, and adds
 * them to the usage table once a second in one statement. Counts that
 * PostgreSQL refused wait for the next second.
 *
 * A worker that a reload or a quit retires writes its counts before it
 * goes: nginx keeps a shutting-down worker while it has timers that are
 * not cancelable, and the flush timer is one whenever counts are pending
 * (the statement's own timer keeps it while one is in flight). While
 * exiting, PostgreSQL gets a bounded number of tries; then the counts are
 * dropped, and the log says how many calls. A worker killed, or stopped
 * with "nginx -s stop", loses what it had not written, at most a second.
 */


#define NGX_HTTP_MONETIZE_METER_FLUSH       1000
#define NGX_HTTP_MONETIZE_METER_MAX         10000      /* rows a statement */
#define NGX_HTTP_MONETIZE_METER_EXIT_TRIES  3
#define NGX_HTTP_MONETIZE_DAY_LEN           (sizeof("2026-11-21") - 1)


typedef struct {
    ngx_rbtree_node_t                node;
    ngx_queue_t                      queue;
    u_char                           user_id[NGX_HTTP_MONETIZE_UUID_LEN];
    u_char                           key_id[NGX_HTTP_MONETIZE_UUID_LEN];
    u_char                           day[NGX_HTTP_MONETIZE_DAY_LEN];
    int64_t                          calls;
    int64_t                          credits;
    size_t                           location_len;
    u_char                           location[1];
} ngx_http_monetize_meter_entry_t;


struct ngx_http_monetize_meter_s {
    ngx_http_monetize_pg_pool_t     *pg;
    ngx_rbtree_t                     rbtree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      entries;
    ngx_uint_t                       n;
    ngx_queue_t                      outbox;     /* taken out to be sent */
    ngx_pool_t                      *sending;    /* a statement in flight */
    ngx_event_t                      flush;
    ngx_uint_t                       exit_tries;  /* failed while exiting */
    unsigned                         initialized:1;
};


static ngx_http_monetize_meter_entry_t *ngx_http_monetize_meter_entry(
    ngx_http_monetize_meter_t *m, u_char *user_id, u_char *key_id,
    ngx_str_t *location, u_char *day);
static void ngx_http_monetize_meter_flush(ngx_event_t *ev);
static void ngx_http_monetize_meter_done(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_meter_return(ngx_http_monetize_meter_t *m);
static void ngx_http_monetize_meter_retry(ngx_http_monetize_meter_t *m);
static void ngx_http_monetize_meter_drop(ngx_http_monetize_meter_t *m,
    const char *why);
static void ngx_http_monetize_meter_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_monetize_meter_cmp(
    ngx_http_monetize_meter_entry_t *a, ngx_http_monetize_meter_entry_t *b);


static const char  ngx_http_monetize_meter_sql[] =
    "SELECT monetize_add_usage($1::uuid[], $2::uuid[], $3::text[],"
    "                          $4::date[], $5::bigint[], $6::bigint[])";


void
ngx_http_monetize_meter_count(ngx_http_monetize_meter_t *m, u_char *user_id,
    u_char *key_id, ngx_str_t *location, int64_t credits)
{
    u_char                            day[NGX_HTTP_MONETIZE_DAY_LEN + 1];
    ngx_tm_t                          tm;
    ngx_http_monetize_meter_entry_t  *e;

    if (!m->initialized) {
        ngx_rbtree_init(&m->rbtree, &m->sentinel,
                        ngx_http_monetize_meter_rbtree_insert_value);
        ngx_queue_init(&m->entries);
        ngx_queue_init(&m->outbox);

        m->flush.handler = ngx_http_monetize_meter_flush;
        m->flush.data = m;
        m->flush.log = ngx_cycle->log;

        /* pending counts keep a worker that is shutting down (see above) */
        m->flush.cancelable = 0;

        m->initialized = 1;
    }

    ngx_gmtime(ngx_time(), &tm);
    ngx_sprintf(day, "%4d-%02d-%02d", tm.ngx_tm_year, tm.ngx_tm_mon,
                tm.ngx_tm_mday);

    e = ngx_http_monetize_meter_entry(m, user_id, key_id, location, day);
    if (e == NULL) {
        return;
    }

    e->calls++;
    e->credits += credits;

    if (!m->flush.timer_set && m->sending == NULL) {
        ngx_add_timer(&m->flush, NGX_HTTP_MONETIZE_METER_FLUSH);
    }
}


static ngx_http_monetize_meter_entry_t *
ngx_http_monetize_meter_entry(ngx_http_monetize_meter_t *m, u_char *user_id,
    u_char *key_id, ngx_str_t *location, u_char *day)
{
    uint32_t                          hash;
    ngx_int_t                         rc;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_monetize_meter_entry_t  *e, *found;

    e = ngx_alloc(sizeof(ngx_http_monetize_meter_entry_t) + location->len,
                  ngx_cycle->log);
    if (e == NULL) {
        return NULL;
    }

    ngx_memcpy(e->user_id, user_id, NGX_HTTP_MONETIZE_UUID_LEN);
    ngx_memcpy(e->key_id, key_id, NGX_HTTP_MONETIZE_UUID_LEN);
    ngx_memcpy(e->day, day, NGX_HTTP_MONETIZE_DAY_LEN);
    ngx_memcpy(e->location, location->data, location->len);
    e->location_len = location->len;

    ngx_crc32_init(hash);
    ngx_crc32_update(&hash, e->key_id, NGX_HTTP_MONETIZE_UUID_LEN);
    ngx_crc32_update(&hash, e->location, e->location_len);
    ngx_crc32_final(hash);

    e->node.key = hash;

    node = m->rbtree.root;
    sentinel = m->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        found = (ngx_http_monetize_meter_entry_t *) node;
        rc = ngx_http_monetize_meter_cmp(e, found);

        if (rc == 0) {
            ngx_free(e);
            return found;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    e->calls = 0;
    e->credits = 0;

    ngx_rbtree_insert(&m->rbtree, &e->node);
    ngx_queue_insert_tail(&m->entries, &e->queue);
    m->n++;

    return e;
}


static void
ngx_http_monetize_meter_flush(ngx_event_t *ev)
{
    ngx_http_monetize_meter_t *m = ev->data;

    u_char                           *p;
    ngx_str_t                        *cols[6];
    ngx_uint_t                        i, n;
    ngx_pool_t                       *pool;
    ngx_queue_t                      *q;
    ngx_http_monetize_pg_query_t     *pq;
    ngx_http_monetize_meter_entry_t  *e;

    if (m->sending || ngx_queue_empty(&m->entries)) {
        return;
    }

    n = ngx_min(m->n, NGX_HTTP_MONETIZE_METER_MAX);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_http_monetize_meter_retry(m);
        return;
    }

    pq = ngx_http_monetize_pg_query_create(pool, 6);
    p = ngx_pnalloc(pool, 2 * n * NGX_INT64_LEN);

    if (pq == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        ngx_http_monetize_meter_retry(m);
        return;
    }

    for (i = 0; i < 6; i++) {
        cols[i] = ngx_palloc(pool, n * sizeof(ngx_str_t));
        if (cols[i] == NULL) {
            ngx_destroy_pool(pool);
            ngx_http_monetize_meter_retry(m);
            return;
        }
    }

    /* counts that come while these are sent start new entries */

    for (i = 0; i < n; i++) {
        q = ngx_queue_head(&m->entries);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&m->outbox, q);
        m->n--;

        e = ngx_queue_data(q, ngx_http_monetize_meter_entry_t, queue);
        ngx_rbtree_delete(&m->rbtree, &e->node);

        cols[0][i].data = e->user_id;
        cols[0][i].len = NGX_HTTP_MONETIZE_UUID_LEN;
        cols[1][i].data = e->key_id;
        cols[1][i].len = NGX_HTTP_MONETIZE_UUID_LEN;
        cols[2][i].data = e->location;
        cols[2][i].len = e->location_len;
        cols[3][i].data = e->day;
        cols[3][i].len = NGX_HTTP_MONETIZE_DAY_LEN;

        cols[4][i].data = p;
        p = ngx_sprintf(p, "%L", e->calls);
        cols[4][i].len = p - cols[4][i].data;

        cols[5][i].data = p;
        p = ngx_sprintf(p, "%L", e->credits);
        cols[5][i].len = p - cols[5][i].data;
    }

    for (i = 0; i < 6; i++) {
        pq->params[i] = (const char *)
                            ngx_http_monetize_pg_array(pool, cols[i], n,
                                                       i == 2);
        if (pq->params[i] == NULL) {
            break;
        }
    }

    pq->sql = ngx_http_monetize_meter_sql;
    pq->handler = ngx_http_monetize_meter_done;
    pq->data = m;

    if (i == 6 && ngx_http_monetize_pg_send(m->pg, pq) == NGX_OK) {
        m->sending = pool;
        return;
    }

    ngx_destroy_pool(pool);
    ngx_http_monetize_meter_return(m);
    ngx_http_monetize_meter_retry(m);
}


static void
ngx_http_monetize_meter_done(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_meter_t *m = q->data;

    ngx_uint_t    written;
    ngx_queue_t  *head;

    written = (q->status == NGX_HTTP_MONETIZE_PG_OK);

    if (written) {
        while (!ngx_queue_empty(&m->outbox)) {
            head = ngx_queue_head(&m->outbox);
            ngx_queue_remove(head);
            ngx_free(ngx_queue_data(head, ngx_http_monetize_meter_entry_t,
                                    queue));
        }

    } else {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
        }

        ngx_http_monetize_meter_return(m);
    }

    /* q is in this pool */
    ngx_destroy_pool(m->sending);
    m->sending = NULL;

    if (!written) {
        ngx_http_monetize_meter_retry(m);

    } else if (!ngx_queue_empty(&m->entries) && !m->flush.timer_set) {
        ngx_add_timer(&m->flush, NGX_HTTP_MONETIZE_METER_FLUSH);
    }
}


/*
 * The counts were not written: again in a second; but a worker that is
 * exiting tries only so often, so that it exits when PostgreSQL is down.
 */

static void
ngx_http_monetize_meter_retry(ngx_http_monetize_meter_t *m)
{
    if (ngx_exiting
        && ++m->exit_tries >= NGX_HTTP_MONETIZE_METER_EXIT_TRIES)
    {
        ngx_http_monetize_meter_drop(m, "postgres did not take it while "
                                        "the worker was exiting");
        return;
    }

    if (!ngx_queue_empty(&m->entries) && !m->flush.timer_set) {
        ngx_add_timer(&m->flush, NGX_HTTP_MONETIZE_METER_FLUSH);
    }
}


static void
ngx_http_monetize_meter_drop(ngx_http_monetize_meter_t *m, const char *why)
{
    int64_t                           calls;
    ngx_uint_t                        n;
    ngx_queue_t                      *head;
    ngx_http_monetize_meter_entry_t  *e;

    calls = 0;
    n = 0;

    while (!ngx_queue_empty(&m->entries)) {
        head = ngx_queue_head(&m->entries);
        ngx_queue_remove(head);

        e = ngx_queue_data(head, ngx_http_monetize_meter_entry_t, queue);
        ngx_rbtree_delete(&m->rbtree, &e->node);

        calls += e->calls;
        n++;

        ngx_free(e);
    }

    m->n = 0;

    if (m->flush.timer_set) {
        ngx_del_timer(&m->flush);
    }

    if (n) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "monetize: usage of %L calls (%ui rows) was not "
                      "written: %s", calls, n, why);
    }
}


/* Counts that were not written go back, added to the next second's. */

static void
ngx_http_monetize_meter_return(ngx_http_monetize_meter_t *m)
{
    ngx_str_t                         location;
    ngx_queue_t                      *head;
    ngx_http_monetize_meter_entry_t  *e, *same;

    while (!ngx_queue_empty(&m->outbox)) {
        head = ngx_queue_head(&m->outbox);
        ngx_queue_remove(head);

        e = ngx_queue_data(head, ngx_http_monetize_meter_entry_t, queue);

        location.data = e->location;
        location.len = e->location_len;

        same = ngx_http_monetize_meter_entry(m, e->user_id, e->key_id,
                                             &location, e->day);
        if (same) {
            same->calls += e->calls;
            same->credits += e->credits;
        }

        ngx_free(e);
    }
}


static ngx_int_t
ngx_http_monetize_meter_cmp(ngx_http_monetize_meter_entry_t *a,
    ngx_http_monetize_meter_entry_t *b)
{
    ngx_int_t  rc;

    rc = ngx_memcmp(a->key_id, b->key_id, NGX_HTTP_MONETIZE_UUID_LEN);
    if (rc) {
        return rc;
    }

    rc = ngx_memcmp(a->day, b->day, NGX_HTTP_MONETIZE_DAY_LEN);
    if (rc) {
        return rc;
    }

    if (a->location_len != b->location_len) {
        return (a->location_len < b->location_len) ? -1 : 1;
    }

    return ngx_memcmp(a->location, b->location, a->location_len);
}


static void
ngx_http_monetize_meter_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_http_monetize_meter_cmp(
                     (ngx_http_monetize_meter_entry_t *) node,
                     (ngx_http_monetize_meter_entry_t *) temp) < 0)
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


ngx_http_monetize_meter_t *
ngx_http_monetize_meter_create(ngx_conf_t *cf, ngx_http_monetize_pg_pool_t *pg)
{
    ngx_http_monetize_meter_t  *m;

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_meter_t));
    if (m == NULL) {
        return NULL;
    }

    m->pg = pg;

    return m;
}


void
ngx_http_monetize_meter_exit(ngx_http_monetize_meter_t *m)
{
    if (!m->initialized) {
        return;
    }

    /* a statement in flight may yet commit: those counts are not "lost" */
    ngx_http_monetize_meter_drop(m, "the worker exited without waiting "
                                    "for it");
}
