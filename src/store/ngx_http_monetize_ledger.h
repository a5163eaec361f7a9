
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_LEDGER_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_LEDGER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_give_back.h"


typedef struct ngx_http_monetize_ledger_s  ngx_http_monetize_ledger_t;
typedef struct ngx_http_monetize_debit_s   ngx_http_monetize_debit_t;
typedef struct ngx_http_monetize_batch_s   ngx_http_monetize_batch_t;

typedef void (*ngx_http_monetize_debit_pt)(ngx_http_monetize_debit_t *d);


typedef enum {
    NGX_HTTP_MONETIZE_DEBIT_ADMITTED = 0,   /* paid with credits */
    NGX_HTTP_MONETIZE_DEBIT_INCLUDED,       /* covered by the plan's quota */
    NGX_HTTP_MONETIZE_DEBIT_OVERAGE,        /* past the quota of a plan that
                                               bills it (sql/015): no
                                               credits, reported to Stripe */
    NGX_HTTP_MONETIZE_DEBIT_REFUSED,        /* the balance cannot pay (the
                                               quota, if any, is used up) */
    NGX_HTTP_MONETIZE_DEBIT_QUOTA_EXCEEDED, /* a free call past the quota:
                                               nothing else can pay */
    NGX_HTTP_MONETIZE_DEBIT_KEY_REVOKED,    /* found so at the debit */
    NGX_HTTP_MONETIZE_DEBIT_KEY_EXPIRED,
    NGX_HTTP_MONETIZE_DEBIT_SUSPENDED,      /* the account is suspended */
    NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE     /* not debited, and never will
                                               be: voided if it was sent */
} ngx_http_monetize_debit_status_e;


/*
 * One call to debit. It lives in its owner's pool (the request's); the
 * handler is called once, with status and balance set. Should the owner go
 * away first, the call is dropped from the queue or its answer discarded.
 */

struct ngx_http_monetize_debit_s {
    ngx_str_t                          user_id;
    ngx_str_t                          key_id;
    ngx_str_t                          reference;
    int64_t                            cost;
    ngx_uint_t                         quota;     /* the plan's calls first */
    ngx_msec_t                         deadline;  /* answered by then
                                                     (ngx_current_msec's);
                                                     0, or later than the
                                                     ledger's own: its own */
    ngx_http_monetize_debit_pt         handler;
    void                              *data;

    ngx_http_monetize_debit_status_e   status;
    int64_t                            balance;
    int64_t                            quota_left;    /* -1: unlimited */
    time_t                             period_end;    /* of the quota */

    /* private to the ledger */
    ngx_queue_t                        queue;
    ngx_http_monetize_debit_t        **slot;     /* in the batch in flight */
    unsigned                           queued:1;
    unsigned                           done:1;
};


ngx_http_monetize_ledger_t *ngx_http_monetize_ledger_create(ngx_conf_t *cf,
    ngx_http_monetize_pg_pool_t *pg);
void ngx_http_monetize_ledger_exit(ngx_http_monetize_ledger_t *ledger);

ngx_http_monetize_debit_t *ngx_http_monetize_debit_create(ngx_pool_t *owner);
void ngx_http_monetize_debit(ngx_http_monetize_ledger_t *ledger,
    ngx_http_monetize_debit_t *d);
void ngx_http_monetize_refund(ngx_http_monetize_ledger_t *ledger,
    ngx_str_t *debit_reference);


#endif /* _NGX_HTTP_MONETIZE_LEDGER_H_INCLUDED_ */
