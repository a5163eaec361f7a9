
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_GATE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_GATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_limit.h"
#include "ngx_http_monetize_jwks.h"


#define NGX_HTTP_MONETIZE_COST_MAX  1000000000

#define NGX_HTTP_MONETIZE_LIMIT_OFF      0
#define NGX_HTTP_MONETIZE_LIMIT_LOCAL    1
#define NGX_HTTP_MONETIZE_LIMIT_REDIS    2

#define NGX_HTTP_MONETIZE_LIMIT_BY_KEY      0
#define NGX_HTTP_MONETIZE_LIMIT_BY_ACCOUNT  1

#define NGX_HTTP_MONETIZE_FAIL_LOCAL     0
#define NGX_HTTP_MONETIZE_FAIL_CLOSED    1

#define NGX_HTTP_MONETIZE_PAST_DUE_ALLOW  0
#define NGX_HTTP_MONETIZE_PAST_DUE_DENY   1


/* why the gate refuses a call: ngx_http_monetize_gate_deny.c answers it */

typedef enum {
    NGX_HTTP_MONETIZE_DENY_MISSING = 1,
    NGX_HTTP_MONETIZE_DENY_MALFORMED,
    NGX_HTTP_MONETIZE_DENY_AMBIGUOUS,
    NGX_HTTP_MONETIZE_DENY_NOT_OURS,
    NGX_HTTP_MONETIZE_DENY_UNKNOWN,
    NGX_HTTP_MONETIZE_DENY_REVOKED,
    NGX_HTTP_MONETIZE_DENY_EXPIRED,
    NGX_HTTP_MONETIZE_DENY_SUSPENDED,
    NGX_HTTP_MONETIZE_DENY_BAD_COST,
    NGX_HTTP_MONETIZE_DENY_CREDITS,
    NGX_HTTP_MONETIZE_DENY_UNAVAILABLE,
    NGX_HTTP_MONETIZE_DENY_INTERNAL,
    NGX_HTTP_MONETIZE_DENY_RATE_LIMITED,
    NGX_HTTP_MONETIZE_DENY_QUOTA,
    NGX_HTTP_MONETIZE_DENY_BAD_PLAN,
    NGX_HTTP_MONETIZE_DENY_LIMITER_DOWN,
    NGX_HTTP_MONETIZE_DENY_TOKEN_INVALID,
    NGX_HTTP_MONETIZE_DENY_TOKEN_EXPIRED,
    NGX_HTTP_MONETIZE_DENY_NOT_VERIFIED,
    NGX_HTTP_MONETIZE_DENY_PAST_DUE,
    NGX_HTTP_MONETIZE_DENY_SCOPE
} ngx_http_monetize_deny_e;


typedef struct {
    ngx_flag_t                       enable;
    ngx_http_complex_value_t        *cost;          /* NULL: 1 credit */
    uint64_t                         refund[10];    /* statuses 0..639 */
    ngx_flag_t                       refund_set;
    ngx_uint_t                       deny_log_level;
    ngx_uint_t                       rate_limit;     /* off, local, redis */
    ngx_uint_t                       rate_limit_key; /* key, account */
    ngx_uint_t                       fail_mode;      /* local, closed */
    ngx_flag_t                       quota;
    ngx_uint_t                       past_due;       /* allow, deny */
    ngx_str_t                        scope;          /* empty: any */
} ngx_http_monetize_gate_loc_conf_t;


typedef struct {
    ngx_int_t                        request_id;    /* variable index */
} ngx_http_monetize_gate_main_conf_t;


typedef enum {
    NGX_HTTP_MONETIZE_GATE_FINDING = 1,
    NGX_HTTP_MONETIZE_GATE_LIMITING,
    NGX_HTTP_MONETIZE_GATE_DEBITING,
    NGX_HTTP_MONETIZE_GATE_DECIDED
} ngx_http_monetize_gate_state_e;


typedef struct {
    ngx_http_monetize_gate_state_e   state;
    ngx_int_t                        rc;            /* once decided */
    ngx_msec_t                       deadline;      /* of the lookup and
                                                       the debit */
    u_char                           hash[NGX_HTTP_MONETIZE_HASH_SIZE];
    ngx_http_monetize_key_info_t     info;
    int64_t                          cost;
    int64_t                          balance;
    ngx_str_t                        reference;
    ngx_http_monetize_limit_t        limit;
    ngx_str_t                        limit_key;     /* "k:<key id>" ... */
    int64_t                          quota_left;    /* -1: unlimited */
    time_t                           period_end;
    const char                      *why;           /* of a bad credential */
    ngx_uint_t                       uri_changes;   /* when it was denied */
    ngx_buf_t                       *answer;        /* the JSON, to send */
    ngx_http_monetize_jwks_token_t   idp;           /* a provider's token */
    unsigned                         waited:1;      /* resume the phases */
    unsigned                         denied:1;      /* nginx finalizes it */
    unsigned                         deny_headers:1;
    unsigned                         answering:1;   /* ours, not a page's */
    unsigned                         authenticated:1;
    unsigned                         balance_known:1;
    unsigned                         debited:1;
    unsigned                         refunded:1;
    unsigned                         limited:1;     /* limit is known */
    unsigned                         quota_known:1;
    unsigned                         overage:1;     /* past the quota, billed
                                                       by Stripe's meter */
    unsigned                         session:1;     /* a session token */
} ngx_http_monetize_gate_ctx_t;


ngx_int_t ngx_http_monetize_gate_handler(ngx_http_request_t *r);
ngx_http_monetize_gate_ctx_t *ngx_http_monetize_gate_get_ctx(
    ngx_http_request_t *r);
ngx_int_t ngx_http_monetize_gate_deny(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
ngx_uint_t ngx_http_monetize_gate_status(ngx_http_monetize_gate_ctx_t *ctx);
const char *ngx_http_monetize_gate_code(ngx_int_t rc);
json_t *ngx_http_monetize_gate_answer(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
ngx_uint_t ngx_http_monetize_gate_calls_left(
    ngx_http_monetize_gate_ctx_t *ctx, ngx_uint_t limit);


extern ngx_module_t  ngx_http_monetize_gate_module;


#endif /* _NGX_HTTP_MONETIZE_GATE_H_INCLUDED_ */
