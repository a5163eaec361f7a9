
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_GIVE_BACK_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_GIVE_BACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"


typedef struct ngx_http_monetize_give_back_s  ngx_http_monetize_give_back_t;


ngx_http_monetize_give_back_t *ngx_http_monetize_give_back_create(
    ngx_conf_t *cf, ngx_http_monetize_pg_pool_t *pg);
void ngx_http_monetize_give_back_exit(ngx_http_monetize_give_back_t *gb);

void ngx_http_monetize_give_back_refund(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *debit_reference);
void ngx_http_monetize_give_back_void(ngx_http_monetize_give_back_t *gb,
    ngx_str_t *user, ngx_str_t *reference);


#endif /* _NGX_HTTP_MONETIZE_GIVE_BACK_H_INCLUDED_ */
