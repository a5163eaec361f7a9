
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_WEBHOOKS_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_WEBHOOKS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* Stripe sends events of at most this size; we take no more */
#define NGX_HTTP_MONETIZE_WEBHOOK_MAX_BODY  (1024 * 1024)

#define NGX_HTTP_MONETIZE_WEBHOOK_TOLERANCE  300


char *ngx_http_monetize_stripe_webhook_secret(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


#endif /* _NGX_HTTP_MONETIZE_WEBHOOKS_H_INCLUDED_ */
