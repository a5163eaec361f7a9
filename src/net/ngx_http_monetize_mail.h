
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_MAIL_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_MAIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_curl.h"


/* monetize_smtp: where and how mail is sent */
typedef struct {
    ngx_str_t                          url;        /* NUL-terminated */
    ngx_str_t                          from;       /* NUL-terminated */
    ngx_str_t                          user;       /* or empty */
    ngx_str_t                          password;
    ngx_flag_t                         starttls;
    ngx_msec_t                         timeout;
} ngx_http_monetize_smtp_t;


typedef struct {
    ngx_str_t                          to;
    ngx_str_t                          subject;    /* ASCII */
    ngx_str_t                          text;       /* UTF-8, LF lines */
    ngx_str_t                          html;
} ngx_http_monetize_mail_t;


char *ngx_http_monetize_smtp_conf(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t n, ngx_http_monetize_smtp_t **out);
ngx_str_t *ngx_http_monetize_mail_compose(ngx_pool_t *pool,
    ngx_http_monetize_smtp_t *smtp, ngx_http_monetize_mail_t *mail);
ngx_http_monetize_curl_t *ngx_http_monetize_mail_send(ngx_pool_t *owner,
    ngx_log_t *log, ngx_http_monetize_smtp_t *smtp,
    ngx_http_monetize_mail_t *mail, ngx_http_monetize_curl_done_pt handler,
    void *data);


#endif /* _NGX_HTTP_MONETIZE_MAIL_H_INCLUDED_ */
