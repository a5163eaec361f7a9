
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JWTSTORE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JWTSTORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_cache.h"
#include "ngx_http_monetize_keystore.h"


ngx_int_t ngx_http_monetize_jwtstore_find(ngx_http_request_t *r,
    ngx_str_t *user_id, u_char *hash, ngx_http_monetize_key_info_t *info,
    ngx_http_monetize_keystore_pt handler);


#endif /* _NGX_HTTP_MONETIZE_JWTSTORE_H_INCLUDED_ */
