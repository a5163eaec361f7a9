
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_PORTAL_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_PORTAL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_http_monetize_portal_s  ngx_http_monetize_portal_t;


/* monetize_portal [title=TEXT] [api=PATH]: the location's content handler */
char *ngx_http_monetize_portal(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_MONETIZE_PORTAL_H_INCLUDED_ */
