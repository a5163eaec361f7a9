
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_JSON_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize_limit.h"


/* statuses of the contract that nginx has no name for */
#define NGX_HTTP_MONETIZE_PAYMENT_REQUIRED  402
#define NGX_HTTP_MONETIZE_UNPROCESSABLE     422


/* the mistakes a caller can make with an API key, the API's and the gate's */
typedef enum {
    NGX_HTTP_MONETIZE_KEY_MISSING = 0,
    NGX_HTTP_MONETIZE_KEY_MALFORMED,
    NGX_HTTP_MONETIZE_KEY_AMBIGUOUS,
    NGX_HTTP_MONETIZE_KEY_NOT_OURS,
    NGX_HTTP_MONETIZE_KEY_UNKNOWN,
    NGX_HTTP_MONETIZE_KEY_REVOKED,
    NGX_HTTP_MONETIZE_KEY_EXPIRED,
    NGX_HTTP_MONETIZE_KEY_SUSPENDED,
    NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID,        /* session tokens (JWT) */
    NGX_HTTP_MONETIZE_KEY_TOKEN_EXPIRED,
    NGX_HTTP_MONETIZE_KEY_NOT_VERIFIED
} ngx_http_monetize_key_error_e;


typedef struct {
    ngx_uint_t                       status;
    const char                      *code;
    const char                      *message;   /* NULL: the reason given */
    ngx_str_t                        authenticate;  /* WWW-Authenticate */
} ngx_http_monetize_key_error_t;


extern ngx_http_monetize_key_error_t  ngx_http_monetize_key_errors[];



ngx_int_t ngx_http_monetize_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
/* messages are formatted by libc's printf, not nginx's */
json_t *ngx_http_monetize_error_body(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ngx_int_t ngx_http_monetize_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ngx_buf_t *ngx_http_monetize_json_buf(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
json_t *ngx_http_monetize_key_error_body(ngx_uint_t err, const char *why);
ngx_int_t ngx_http_monetize_key_error_headers(ngx_http_request_t *r,
    ngx_uint_t err);
ngx_int_t ngx_http_monetize_send_key_error(ngx_http_request_t *r,
    ngx_uint_t err, const char *why);
json_t *ngx_http_monetize_insufficient_body(ngx_http_request_t *r,
    int64_t cost, int64_t balance, time_t quota_resets_at);
ngx_int_t ngx_http_monetize_send_insufficient(ngx_http_request_t *r,
    int64_t cost, int64_t balance);
ngx_int_t ngx_http_monetize_rate_limited_headers(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim);
json_t *ngx_http_monetize_rate_limited_body(ngx_http_monetize_limit_t *lim);
ngx_int_t ngx_http_monetize_send_rate_limited(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim);
ngx_int_t ngx_http_monetize_quota_exceeded_headers(ngx_http_request_t *r,
    time_t period_end);
json_t *ngx_http_monetize_quota_exceeded_body(time_t period_end);
ngx_int_t ngx_http_monetize_rate_limit_headers(ngx_http_request_t *r,
    ngx_http_monetize_limit_t *lim);
ngx_int_t ngx_http_monetize_set_number(ngx_http_request_t *r,
    const char *name, int64_t n);
ngx_int_t ngx_http_monetize_set_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);

json_t *ngx_http_monetize_json_parse(ngx_http_request_t *r, ngx_str_t *text,
    json_error_t *error);
json_t *ngx_http_monetize_json_str(ngx_str_t *s);


#endif /* _NGX_HTTP_MONETIZE_JSON_H_INCLUDED_ */
