
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_KEYSTORE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_KEYSTORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_cache.h"


/* rc: NGX_OK, the info is filled (found or not); NGX_ERROR, no answer */
typedef void (*ngx_http_monetize_keystore_pt)(ngx_http_request_t *r,
    ngx_int_t rc);


ngx_int_t ngx_http_monetize_keystore_find(ngx_http_request_t *r,
    u_char *hash, ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler);
ngx_int_t ngx_http_monetize_keystore_find_session(ngx_http_request_t *r,
    ngx_str_t *user_id, u_char *hash, ngx_http_monetize_key_info_t *info,
    ngx_msec_t deadline, ngx_http_monetize_keystore_pt handler);
ngx_int_t ngx_http_monetize_keystore_find_identity(ngx_http_request_t *r,
    ngx_str_t *issuer, ngx_str_t *subject, ngx_str_t *email, u_char *hash,
    ngx_http_monetize_key_info_t *info, ngx_msec_t deadline,
    ngx_http_monetize_keystore_pt handler);
void ngx_http_monetize_keystore_listen(ngx_http_monetize_main_conf_t *mcf);


#endif /* _NGX_HTTP_MONETIZE_KEYSTORE_H_INCLUDED_ */
