
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_VALIDATE_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_VALIDATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>


/*
 * Each check reads one optional field of a JSON body. NGX_OK: the value,
 * or the caller's default left in place when the field is absent or null.
 * NGX_DECLINED: the field is not valid, and why is in "fields" (the
 * "fields" object of a 422). NGX_ERROR: out of memory.
 */

ngx_int_t ngx_http_monetize_field_int(json_t *body, json_t *fields,
    const char *name, int64_t min, int64_t max, int64_t *value);
ngx_int_t ngx_http_monetize_field_text(json_t *body, json_t *fields,
    const char *name, size_t max, ngx_str_t *value);
ngx_int_t ngx_http_monetize_field_ascii(json_t *body, json_t *fields,
    const char *name, size_t max, ngx_str_t *value);
ngx_int_t ngx_http_monetize_field_invalid(json_t *fields, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

ngx_int_t ngx_http_monetize_send_invalid(ngx_http_request_t *r,
    json_t *fields);


#endif /* _NGX_HTTP_MONETIZE_VALIDATE_H_INCLUDED_ */
