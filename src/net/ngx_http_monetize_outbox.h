
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_OUTBOX_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_OUTBOX_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_mail.h"


ngx_int_t ngx_http_monetize_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_pg_pool_t *pg, ngx_http_monetize_smtp_t *smtp);
void ngx_http_monetize_outbox_wake(void);
void ngx_http_monetize_outbox_exit(void);


#endif /* _NGX_HTTP_MONETIZE_OUTBOX_H_INCLUDED_ */
