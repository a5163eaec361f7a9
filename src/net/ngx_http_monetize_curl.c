
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_monetize_curl.h"
#include "ngx_http_monetize_socket.h"


/*
 * The one outbound client: libcurl's multi socket interface on the
 * worker's event loop. libcurl owns its sockets and tells us which to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION);
 * nginx watches them through connections of its own, level-triggered, as
 * libcurl expects, and hands readiness back with curl_multi_socket_action().
 * Names resolve in libcurl's resolver thread (AsynchDNS), never here.
 */


typedef struct {
    CURLM                            *multi;
    ngx_event_t                       timer;
    ngx_queue_t                       running;
    ngx_log_t                        *log;
} ngx_http_monetize_curl_multi_t;


static ngx_http_monetize_curl_multi_t *ngx_http_monetize_curl_multi(
    ngx_log_t *log);
static int ngx_http_monetize_curl_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_monetize_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_monetize_curl_event(ngx_event_t *ev);
static void ngx_http_monetize_curl_timeout(ngx_event_t *ev);
static void ngx_http_monetize_curl_done(ngx_http_monetize_curl_multi_t *m);
static void ngx_http_monetize_curl_cleanup(void *data);


/* per worker: made by the first transfer */
static ngx_http_monetize_curl_multi_t  *ngx_http_monetize_curl_m;
static ngx_uint_t                       ngx_http_monetize_curl_inited;


/*
 * At configuration: libcurl's global state, made once in the master before
 * any thread, and the refusal of a libcurl that would resolve names on the
 * event loop.
 */

ngx_int_t
ngx_http_monetize_curl_check(ngx_conf_t *cf)
{
    curl_version_info_data  *vi;

    if (!ngx_http_monetize_curl_inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize: curl_global_init() failed");
            return NGX_ERROR;
        }

        ngx_http_monetize_curl_inited = 1;
    }

    vi = curl_version_info(CURLVERSION_NOW);

    if (!(vi->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize: libcurl %s resolves names blocking "
                           "(no AsynchDNS); install a libcurl built with "
                           "the threaded resolver", vi->version);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_http_monetize_curl_t *
ngx_http_monetize_curl_create(ngx_pool_t *owner, ngx_log_t *log)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_monetize_curl_t  *t;

    t = ngx_pcalloc(owner, sizeof(ngx_http_monetize_curl_t));
    if (t == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(owner, 0);
    if (cln == NULL) {
        return NULL;
    }

    t->easy = curl_easy_init();
    if (t->easy == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_easy_init() "
                      "failed");
        return NULL;
    }

    cln->handler = ngx_http_monetize_curl_cleanup;
    cln->data = t;

    t->log = log;

    if (curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t) != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->error)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NULL;
    }

    return t;
}


/* A list the transfer keeps until its owner goes (headers, recipients). */

struct curl_slist *
ngx_http_monetize_curl_list(ngx_http_monetize_curl_t *t,
    struct curl_slist *list)
{
    if (list == NULL || t->nlists == sizeof(t->lists) / sizeof(t->lists[0])) {
        curl_slist_free_all(list);
        return NULL;
    }

    t->lists[t->nlists++] = list;

    return list;
}


ngx_int_t
ngx_http_monetize_curl_start(ngx_http_monetize_curl_t *t, ngx_msec_t timeout)
{
    CURLMcode                        mc;
    ngx_http_monetize_curl_multi_t  *m;

    /* libcurl reads 0 as "no timeout": no transfer goes without one */

    if (timeout == 0) {
        ngx_log_error(NGX_LOG_ALERT, t->log, 0,
                      "monetize: a transfer without a timeout");
        return NGX_ERROR;
    }

    m = ngx_http_monetize_curl_multi(t->log);
    if (m == NULL) {
        return NGX_ERROR;
    }

    /* the whole transfer, connecting included, ends by this time */

    if (curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long) timeout)
        != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS,
                            (long) timeout)
           != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, t->log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NGX_ERROR;
    }

    t->error[0] = '\0';

    /* libcurl answers through the timer callback: nothing runs in here */

    mc = curl_multi_add_handle(m->multi, t->easy);
    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, t->log, 0,
                      "monetize: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));
        return NGX_ERROR;
    }

    t->running = 1;
    ngx_queue_insert_tail(&m->running, &t->queue);

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_curl_append(ngx_pool_t *pool, u_char **buf, size_t *len,
    size_t *cap, size_t max, ngx_uint_t wipe, char *data, size_t n)
{
    u_char  *p;
    size_t   size;

    if (*len + n > max) {
        return NGX_ERROR;
    }

    if (*len + n > *cap) {
        size = ngx_max(2 * *cap, *len + n);
        size = ngx_max(size, 4096);

        p = ngx_pnalloc(pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (*len) {
            ngx_memcpy(p, *buf, *len);

            if (wipe) {
                ngx_explicit_memzero(*buf, *len);
            }
        }

        *buf = p;
        *cap = size;
    }

    ngx_memcpy(*buf + *len, data, n);
    *len += n;

    return NGX_OK;
}


/*
 * The worker exits: transfers still running are dropped (their owners'
 * cleanups find them stopped), and every socket libcurl had is given back
 * and closed, so nginx finds no socket left open.
 */

void
ngx_http_monetize_curl_exit(void)
{
    ngx_queue_t                     *q;
    ngx_http_monetize_curl_t        *t;
    ngx_http_monetize_curl_multi_t  *m;

    m = ngx_http_monetize_curl_m;

    if (m == NULL) {
        return;
    }

    if (m->timer.timer_set) {
        ngx_del_timer(&m->timer);
    }

    while (!ngx_queue_empty(&m->running)) {
        q = ngx_queue_head(&m->running);
        t = ngx_queue_data(q, ngx_http_monetize_curl_t, queue);

        ngx_queue_remove(q);
        t->running = 0;

        (void) curl_multi_remove_handle(m->multi, t->easy);
    }

    curl_multi_cleanup(m->multi);
    ngx_http_monetize_curl_m = NULL;
}


static ngx_http_monetize_curl_multi_t *
ngx_http_monetize_curl_multi(ngx_log_t *log)
{
    ngx_http_monetize_curl_multi_t  *m;

    if (ngx_http_monetize_curl_m) {
        return ngx_http_monetize_curl_m;
    }

    m = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_monetize_curl_multi_t));
    if (m == NULL) {
        return NULL;
    }

    m->log = ngx_cycle->log;
    ngx_queue_init(&m->running);

    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_multi_init() "
                      "failed");
        return NULL;
    }

    if (curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION,
                          ngx_http_monetize_curl_socket) != CURLM_OK
        || curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m) != CURLM_OK
        || curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION,
                             ngx_http_monetize_curl_timer) != CURLM_OK
        || curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_multi_setopt() "
                      "failed");
        curl_multi_cleanup(m->multi);
        return NULL;
    }

    m->timer.handler = ngx_http_monetize_curl_timeout;
    m->timer.data = m;
    m->timer.log = m->log;
    m->timer.cancelable = 1;

    ngx_http_monetize_curl_m = m;

    return m;
}


/* libcurl says which of its sockets to watch, and for what */

static int
ngx_http_monetize_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_http_monetize_curl_multi_t *m = userp;

    ngx_event_t       *rev, *wev;
    ngx_connection_t  *c;

    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            (void) curl_multi_assign(m->multi, s, NULL);

            /* still open: unhook it from epoll now, not at its close */

            if (c->read->active) {
                ngx_del_event(c->read, NGX_READ_EVENT, 0);
            }

            if (c->write->active) {
                ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
            }

            ngx_http_monetize_socket_release(c);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, m->log);
        if (c == NULL) {
            return -1;
        }

        c->data = m;
        c->read->handler = ngx_http_monetize_curl_event;
        c->write->handler = ngx_http_monetize_curl_event;
        c->read->log = m->log;
        c->write->log = m->log;

        if (curl_multi_assign(m->multi, s, c) != CURLM_OK) {
            ngx_http_monetize_socket_release(c);
            return -1;
        }
    }

    rev = c->read;
    wev = c->write;

    if ((what & CURL_POLL_IN) && !rev->active) {
        if (ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_IN) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if ((what & CURL_POLL_OUT) && !wev->active) {
        if (ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_OUT) && wev->active) {
        if (ngx_del_event(wev, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


/* libcurl may not be called back from here: the timer runs it later */

static int
ngx_http_monetize_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_monetize_curl_multi_t *m = userp;

    if (timeout_ms < 0) {
        if (m->timer.timer_set) {
            ngx_del_timer(&m->timer);
        }

        return 0;
    }

    ngx_add_timer(&m->timer, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_http_monetize_curl_event(ngx_event_t *ev)
{
    int                              running;
    ngx_socket_t                     fd;
    ngx_connection_t                *c;
    ngx_http_monetize_curl_multi_t  *m;

    c = ev->data;
    m = c->data;
    fd = c->fd;

    /* c may be released within: not used after this call */

    (void) curl_multi_socket_action(m->multi, fd,
                                    ev->write ? CURL_CSELECT_OUT
                                              : CURL_CSELECT_IN,
                                    &running);

    ngx_http_monetize_curl_done(m);
}


static void
ngx_http_monetize_curl_timeout(ngx_event_t *ev)
{
    int                              running;
    ngx_http_monetize_curl_multi_t  *m;

    m = ev->data;

    (void) curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running);

    ngx_http_monetize_curl_done(m);
}


static void
ngx_http_monetize_curl_done(ngx_http_monetize_curl_multi_t *m)
{
    int                        left;
    CURL                      *easy;
    CURLMsg                   *msg;
    CURLcode                   rc;
    ngx_http_monetize_curl_t  *t;

    while ((msg = curl_multi_info_read(m->multi, &left))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg goes with the handle's removal */

        easy = msg->easy_handle;
        rc = msg->data.result;

        t = NULL;
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);

        (void) curl_multi_remove_handle(m->multi, easy);

        if (t == NULL) {
            continue;
        }

        t->running = 0;
        ngx_queue_remove(&t->queue);

        t->handler(t, rc);
    }
}


static void
ngx_http_monetize_curl_cleanup(void *data)
{
    ngx_http_monetize_curl_t *t = data;

    ngx_uint_t  i;

    if (t->running) {
        ngx_queue_remove(&t->queue);
        (void) curl_multi_remove_handle(ngx_http_monetize_curl_m->multi,
                                        t->easy);
    }

    curl_easy_cleanup(t->easy);

    for (i = 0; i < t->nlists; i++) {
        curl_slist_free_all(t->lists[i]);
    }
}
