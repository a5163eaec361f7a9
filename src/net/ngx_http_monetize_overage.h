
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_OVERAGE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_OVERAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_jobs.h"


/*
 * Overage billed through Stripe's meters (sql/015_overage.sql): each
 * worker's sweep queues what is past the quota and unreported as
 * "meter_event" jobs, whose handler sends each to Stripe.
 */

ngx_int_t ngx_http_monetize_overage_init_process(ngx_cycle_t *cycle);
void ngx_http_monetize_overage_exit(void);

/* the "meter_event" job of the jobs outbox */
void ngx_http_monetize_overage_job(ngx_http_monetize_job_t *job);

/* monetize_overage_interval TIME: mcf->overage_interval */
char *ngx_http_monetize_overage_interval(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_MONETIZE_OVERAGE_H_INCLUDED_ */
