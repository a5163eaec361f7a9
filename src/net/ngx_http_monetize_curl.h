
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_CURL_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_CURL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>


typedef struct ngx_http_monetize_curl_s  ngx_http_monetize_curl_t;

typedef void (*ngx_http_monetize_curl_done_pt)(ngx_http_monetize_curl_t *t,
    CURLcode rc);


/*
 * One transfer. It lives in its owner's pool: when that pool goes away
 * first, the transfer leaves the multi handle and its handler is never
 * called. The handler is called once, from an event, never from within
 * ngx_http_monetize_curl_start(); the easy handle stays valid (for
 * curl_easy_getinfo) until the owner's pool goes.
 */

struct ngx_http_monetize_curl_s {
    CURL                             *easy;
    ngx_http_monetize_curl_done_pt    handler;
    void                             *data;
    ngx_log_t                        *log;
    char                              error[CURL_ERROR_SIZE];

    /* private */
    struct curl_slist                *lists[4];
    ngx_uint_t                        nlists;
    ngx_queue_t                       queue;      /* of the running */
    unsigned                          running:1;
};


ngx_int_t ngx_http_monetize_curl_check(ngx_conf_t *cf);
ngx_http_monetize_curl_t *ngx_http_monetize_curl_create(ngx_pool_t *owner,
    ngx_log_t *log);
struct curl_slist *ngx_http_monetize_curl_list(ngx_http_monetize_curl_t *t,
    struct curl_slist *list);
ngx_int_t ngx_http_monetize_curl_start(ngx_http_monetize_curl_t *t,
    ngx_msec_t timeout);
void ngx_http_monetize_curl_exit(void);

/*
 * An answer's bytes, as a write callback gets them, appended to a buffer
 * of the pool that doubles as it fills, up to max bytes (NGX_ERROR
 * beyond, or without memory). With wipe, an outgrown copy is zeroed.
 */
ngx_int_t ngx_http_monetize_curl_append(ngx_pool_t *pool, u_char **buf,
    size_t *len, size_t *cap, size_t max, ngx_uint_t wipe, char *data,
    size_t n);


#endif /* _NGX_HTTP_MONETIZE_CURL_H_INCLUDED_ */
