
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_METER_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_METER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_cache.h"


typedef struct ngx_http_monetize_meter_s  ngx_http_monetize_meter_t;


ngx_http_monetize_meter_t *ngx_http_monetize_meter_create(ngx_conf_t *cf,
    ngx_http_monetize_pg_pool_t *pg);
void ngx_http_monetize_meter_count(ngx_http_monetize_meter_t *m,
    u_char *user_id, u_char *key_id, ngx_str_t *location, int64_t credits);
void ngx_http_monetize_meter_exit(ngx_http_monetize_meter_t *m);


#endif /* _NGX_HTTP_MONETIZE_METER_H_INCLUDED_ */
