
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JOBS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JOBS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize_pg.h"


/*
 * The jobs outbox (sql/012_jobs_stripe.sql): outbound work that must happen
 * exactly once, queued with monetize_job_enqueue() in the transaction that
 * causes it and run by each worker's runner until its handler says done.
 */

typedef struct ngx_http_monetize_job_s  ngx_http_monetize_job_t;

typedef void (*ngx_http_monetize_job_run_pt)(ngx_http_monetize_job_t *job);


struct ngx_http_monetize_job_s {
    ngx_pool_t                        *pool;      /* the job's own, freed
                                                     after done */
    ngx_log_t                         *log;
    int64_t                            id;
    ngx_str_t                          kind;
    ngx_str_t                          user_id;   /* empty when none;
                                                     NUL-terminated */
    json_t                            *payload;   /* freed with the pool */
    ngx_uint_t                         attempt;   /* 1 on the first try */
    void                              *data;      /* the handler's */

    /* private */
    void                              *runner;
    ngx_str_t                          id_text;   /* for libpq */
    unsigned                           finished:1;
};


/*
 * The handler's end, called once (it may be called from within the run
 * handler): NGX_OK done; NGX_AGAIN due again after a backoff; NGX_DECLINED
 * given up for good (failed_at, logged). "error" goes to last_error.
 */
void ngx_http_monetize_job_done(ngx_http_monetize_job_t *job, ngx_int_t rc,
    const char *error);

ngx_int_t ngx_http_monetize_jobs_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_pg_pool_t *pg);
/* a job was committed by this worker: look for it now, not at the poll */
void ngx_http_monetize_jobs_wake(void);
void ngx_http_monetize_jobs_exit(void);


#endif /* _NGX_HTTP_MONETIZE_JOBS_H_INCLUDED_ */
