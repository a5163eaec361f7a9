
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_ALERTS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_ALERTS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"


/* how often each worker tries a sweep; one runs at a time */
#define NGX_HTTP_MONETIZE_ALERTS_SWEEP  2000


ngx_int_t ngx_http_monetize_alerts_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_main_conf_t *mcf);
void ngx_http_monetize_alerts_exit(void);


#endif /* _NGX_HTTP_MONETIZE_ALERTS_H_INCLUDED_ */
