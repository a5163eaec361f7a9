
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_LIMIT_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_LIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_shm.h"


/*
 * A rate limit's decision, with what the RateLimit-* headers say: "limit"
 * calls may come at once (the burst), "remaining" more could pass right
 * now, in "reset" ms the limit is whole again; a refused call may pass in
 * "retry_after" ms.
 */

typedef struct {
    ngx_uint_t                  allowed;
    ngx_uint_t                  limit;
    ngx_uint_t                  remaining;
    ngx_msec_t                  reset;
    ngx_msec_t                  retry_after;
} ngx_http_monetize_limit_t;


/* "interval": microseconds between calls at the limit's rate */
void ngx_http_monetize_gcra(int64_t *tat, int64_t now, int64_t interval,
    ngx_uint_t burst, ngx_http_monetize_limit_t *lim);
ngx_int_t ngx_http_monetize_limit_local(ngx_http_monetize_shm_t *zone,
    ngx_str_t *key, int64_t interval, ngx_uint_t burst,
    ngx_http_monetize_limit_t *lim);


#endif /* _NGX_HTTP_MONETIZE_LIMIT_H_INCLUDED_ */
