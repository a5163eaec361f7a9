
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_API_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_json.h"
#include "ngx_http_monetize_pg.h"
#include "ngx_http_monetize_limit.h"


typedef struct ngx_http_monetize_api_ctx_s  ngx_http_monetize_api_ctx_t;

/*
 * A route handler answers at once (the rc of ngx_http_monetize_send_json())
 * or starts asynchronous work and returns NGX_DONE; that work later ends the
 * request with ngx_http_monetize_api_finish().
 */
typedef ngx_int_t (*ngx_http_monetize_api_handler_pt)(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);

typedef ngx_int_t (*ngx_http_monetize_api_result_pt)(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);


typedef struct {
    ngx_str_t                          user_id;
    ngx_str_t                          key_id;
    int64_t                            balance;
    ngx_uint_t                         is_admin;
} ngx_http_monetize_caller_t;


struct ngx_http_monetize_api_ctx_s {
    ngx_str_t                          path;     /* below the location */
    ngx_str_t                          id;       /* the {id} of the path */
    json_t                            *body;     /* a JSON object, or NULL */
    ngx_http_monetize_caller_t         caller;   /* once authenticated */
    ngx_http_monetize_api_handler_pt   next;     /* the route's handler */
    ngx_http_monetize_api_result_pt    result;   /* of the query in flight */
    void                              *data;     /* the handler's own state */
    unsigned                           authenticate:1;
};


ngx_int_t ngx_http_monetize_api_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_monetize_api_query(ngx_http_request_t *r,
    const char *sql, ngx_str_t *params, int nparams,
    ngx_http_monetize_api_result_pt result);
ngx_int_t ngx_http_monetize_api_backend_failed(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q);
ngx_int_t ngx_http_monetize_api_unavailable(ngx_http_request_t *r,
    const char *what);
void ngx_http_monetize_api_finish(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_http_monetize_api_send_pg_json(ngx_http_request_t *r,
    ngx_http_monetize_pg_query_t *q, ngx_uint_t status);
ngx_int_t ngx_http_monetize_send_no_content(ngx_http_request_t *r);
ngx_uint_t ngx_http_monetize_is_uuid(ngx_str_t *s);

ngx_int_t ngx_http_monetize_cors(ngx_http_request_t *r);
char *ngx_http_monetize_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* route handlers, one file per concern */

ngx_int_t ngx_http_monetize_authenticate(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_register_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_plans_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_balance_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_use_credit_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_keys_list_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_keys_create_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_keys_revoke_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_keys_rotate_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_usage_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_health_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_me_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_me_update_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_me_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_credits_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_user_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_users_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_audit_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_login_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_refresh_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_logout_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_logout_all_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_verify_email_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_verify_email_get_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_resend_verification_handler(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_webhook_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_purchase_credits_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_billing_checkout_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_billing_portal_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_billing_status_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_aws_credentials_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_downloads_list_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_download_token_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
char *ngx_http_monetize_billing_return_url(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_monetize_billing_init_conf(ngx_conf_t *cf,
    ngx_http_monetize_main_conf_t *mcf);
ngx_int_t ngx_http_monetize_verify_mail(ngx_http_request_t *r,
    ngx_str_t *token_hash, ngx_str_t *subject, ngx_str_t *text,
    ngx_str_t *html);

/* one-use tokens of mails (verification, reset), see verify.c */
#define NGX_HTTP_MONETIZE_TOKEN_RANDOM  32
#define NGX_HTTP_MONETIZE_TOKEN_LEN     43      /* base64url, no padding */

ngx_int_t ngx_http_monetize_email_token(ngx_http_request_t *r, u_char *buf,
    ngx_str_t *token, ngx_str_t *token_hash);
ngx_int_t ngx_http_monetize_email_token_hash(ngx_http_request_t *r,
    ngx_str_t *token, ngx_str_t *hash);
ngx_int_t ngx_http_monetize_forgot_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_reset_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_webhook_events_handler(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_revenue_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx);
ngx_int_t ngx_http_monetize_admin_top_accounts_handler(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx);


#endif /* _NGX_HTTP_MONETIZE_API_H_INCLUDED_ */
