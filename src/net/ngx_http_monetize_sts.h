
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_STS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_STS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_curl.h"


/* monetize_aws_sts: mcf->sts, NULL without the directive */
typedef struct {
    ngx_str_t                          role_arn;
    ngx_str_t                          region;
    ngx_str_t                          access_key_id;   /* NUL-ended */
    ngx_str_t                          secret;          /* NUL-ended, never
                                                           logged */
    ngx_str_t                          endpoint;        /* NUL-ended */
    ngx_str_t                          sigv4;           /* "aws:amz:R:sts" */
    time_t                             duration;
    ngx_str_t                          policy;          /* compact JSON */
    ngx_str_t                          plans;           /* "{a,b}", or
                                                           empty: any but
                                                           free */
    ngx_uint_t                         limit;           /* an hour */
    ngx_msec_t                         timeout;
} ngx_http_monetize_sts_conf_t;


#define NGX_HTTP_MONETIZE_STS_OK           0  /* credentials */
#define NGX_HTTP_MONETIZE_STS_REFUSED      1  /* STS refused what we sent,
                                                 or its answer was not
                                                 understood */
#define NGX_HTTP_MONETIZE_STS_UNAVAILABLE  2  /* no answer, a timeout, a
                                                 5xx, throttling */


typedef struct ngx_http_monetize_sts_call_s  ngx_http_monetize_sts_call_t;

typedef void (*ngx_http_monetize_sts_done_pt)(
    ngx_http_monetize_sts_call_t *sc);


/*
 * One AssumeRole, in its owner's pool: when the pool goes first, the
 * transfer goes with it and the handler is never called. Otherwise the
 * handler is called once, from an event. The credentials live in the pool
 * and are wiped with it.
 */

struct ngx_http_monetize_sts_call_s {
    ngx_http_monetize_sts_done_pt      handler;
    void                              *data;
    ngx_uint_t                         result;
    ngx_uint_t                         status;        /* HTTP, 0: none */
    ngx_str_t                          code;          /* STS's, for logs */
    ngx_str_t                          access_key_id;
    ngx_str_t                          secret_access_key;
    ngx_str_t                          session_token;
    ngx_str_t                          expiration;

    /* private */
    ngx_pool_t                        *pool;
    ngx_log_t                         *log;
    ngx_http_monetize_sts_conf_t      *conf;
    ngx_http_monetize_curl_t          *curl;
    ngx_str_t                          body;
    u_char                            *answer;
    size_t                             answer_len;
    size_t                             answer_cap;
};


/* NULL: not started, and the handler is not called */
ngx_http_monetize_sts_call_t *ngx_http_monetize_sts_assume_role(
    ngx_http_monetize_sts_conf_t *conf, ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *session_name, ngx_http_monetize_sts_done_pt handler,
    void *data);

/* the directive monetize_aws_sts, setting mcf->sts */
char *ngx_http_monetize_sts_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_MONETIZE_STS_H_INCLUDED_ */
