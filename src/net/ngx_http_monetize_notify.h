
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_NOTIFY_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_NOTIFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_jobs.h"


#define NGX_HTTP_MONETIZE_NOTIFY_SIG_LEN  64    /* hex SHA-256 */


/* monetize_notify: the operator's webhook */
typedef struct ngx_http_monetize_notify_conf_s {
    ngx_str_t                          url;        /* NUL-terminated */
    ngx_str_t                          secret;     /* never logged */
    ngx_msec_t                         timeout;
} ngx_http_monetize_notify_conf_t;


char *ngx_http_monetize_notify_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_monetize_notify_job(ngx_http_monetize_job_t *job);
ngx_int_t ngx_http_monetize_notify_sign(ngx_str_t *secret, time_t t,
    ngx_str_t *body, u_char *hex);


#endif /* _NGX_HTTP_MONETIZE_NOTIFY_H_INCLUDED_ */
