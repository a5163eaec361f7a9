
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_DOWNLOAD_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_DOWNLOAD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_download_log.h"


#define NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN      32   /* HMAC-SHA256 */
#define NGX_HTTP_MONETIZE_PRODUCT_MAX           64
#define NGX_HTTP_MONETIZE_DOWNLOAD_TOKEN_MAX    512

#define NGX_HTTP_MONETIZE_DOWNLOAD_OK           0
#define NGX_HTTP_MONETIZE_DOWNLOAD_INVALID      1
#define NGX_HTTP_MONETIZE_DOWNLOAD_EXPIRED      2


/*
 * Download tokens: the core module's directives and phase handlers
 * (download.c), the tokens (core/download_token.c), the batched writer of
 * download_logs (store/download_log.c).
 */

typedef struct ngx_http_monetize_download_conf_s {
    time_t                           ttl;
    ngx_http_complex_value_t        *url;       /* the download location */
    u_char                           key[NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN];
    unsigned                         key_set:1;
    unsigned                         used:1;    /* a location checks */
} ngx_http_monetize_download_conf_t;


/* what a token says, once its signature is checked */

typedef struct {
    u_char                           user_id[NGX_HTTP_MONETIZE_UUID_LEN];
    ngx_str_t                        product;
    time_t                           expires;
} ngx_http_monetize_download_claims_t;


ngx_int_t ngx_http_monetize_download_token_key(ngx_str_t *secret,
    u_char *key);
ngx_int_t ngx_http_monetize_download_token_make(ngx_pool_t *pool,
    u_char *key, ngx_str_t *user_id, ngx_str_t *product, time_t expires,
    ngx_str_t *token);
ngx_int_t ngx_http_monetize_download_token_check(ngx_pool_t *pool,
    u_char *key, ngx_str_t *token, ngx_http_monetize_download_claims_t *dc,
    const char **why);


/* the core module's hooks: its tables call these */
char *ngx_http_monetize_download(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_download_ttl(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_monetize_download_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_monetize_download_add_variables(ngx_conf_t *cf);
char *ngx_http_monetize_download_init_conf(ngx_conf_t *cf,
    ngx_http_monetize_main_conf_t *mcf);
char *ngx_http_monetize_download_merge_loc_conf(ngx_conf_t *cf,
    ngx_http_monetize_loc_conf_t *prev, ngx_http_monetize_loc_conf_t *conf);
ngx_int_t ngx_http_monetize_download_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_MONETIZE_DOWNLOAD_H_INCLUDED_ */
