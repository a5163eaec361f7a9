
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_DOWNLOAD_LOG_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_DOWNLOAD_LOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"


void ngx_http_monetize_download_log_add(ngx_http_monetize_pg_pool_t *pg,
    u_char *user_id, ngx_str_t *product, ngx_str_t *address, off_t bytes,
    ngx_uint_t status);
void ngx_http_monetize_download_log_exit(void);


#endif /* _NGX_HTTP_MONETIZE_DOWNLOAD_LOG_H_INCLUDED_ */
