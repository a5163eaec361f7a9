
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_json.h"
#include "ngx_http_monetize_validate.h"


/*
 * Checks of the optional fields of request bodies. Every failing field is
 * collected before answering, so a client learns all its mistakes from one
 * 422 validation_failed.
 */


#define NGX_HTTP_MONETIZE_REASON_LEN  128


static ngx_int_t ngx_http_monetize_field_string(json_t *body, json_t *fields,
    const char *name, size_t max, ngx_str_t *value);


ngx_int_t
ngx_http_monetize_field_int(json_t *body, json_t *fields, const char *name,
    int64_t min, int64_t max, int64_t *value)
{
    json_t      *v;
    json_int_t   n;

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    /* 1.0 and 1e3 are reals to jansson: an integer field takes neither */

    if (!json_is_integer(v)) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be an integer");
    }

    n = json_integer_value(v);

    if (n < min || n > max) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be from %lld to %lld",
                                               (long long) min,
                                               (long long) max);
    }

    *value = n;

    return NGX_OK;
}


/* UTF-8 (jansson checked it) without C0 or C1 control characters */

ngx_int_t
ngx_http_monetize_field_text(json_t *body, json_t *fields, const char *name,
    size_t max, ngx_str_t *value)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   s;

    rc = ngx_http_monetize_field_string(body, fields, name, max, &s);

    if (rc != NGX_OK || s.data == NULL) {
        return rc;
    }

    last = s.data + s.len;

    for (p = s.data; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f
            || (*p == 0xc2 && p + 1 < last && p[1] >= 0x80 && p[1] <= 0x9f))
        {
            return ngx_http_monetize_field_invalid(fields, name,
                                                   "must not contain "
                                                   "control characters");
        }
    }

    *value = s;

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_field_ascii(json_t *body, json_t *fields, const char *name,
    size_t max, ngx_str_t *value)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   s;

    rc = ngx_http_monetize_field_string(body, fields, name, max, &s);

    if (rc != NGX_OK || s.data == NULL) {
        return rc;
    }

    last = s.data + s.len;

    for (p = s.data; p < last; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            return ngx_http_monetize_field_invalid(fields, name,
                                                   "must be printable "
                                                   "ASCII");
        }
    }

    *value = s;

    return NGX_OK;
}


/* s->data is NULL when the field is absent or null */

static ngx_int_t
ngx_http_monetize_field_string(json_t *body, json_t *fields,
    const char *name, size_t max, ngx_str_t *s)
{
    json_t  *v;

    ngx_str_null(s);

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_string(v)) {
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must be a string");
    }

    s->data = (u_char *) json_string_value(v);
    s->len = json_string_length(v);

    if (s->len == 0 || s->len > max) {
        ngx_str_null(s);
        return ngx_http_monetize_field_invalid(fields, name,
                                               "must have 1 to %zu bytes",
                                               max);
    }

    return NGX_OK;
}


/* Records why a field is not valid; NGX_DECLINED, or NGX_ERROR */

ngx_int_t
ngx_http_monetize_field_invalid(json_t *fields, const char *name,
    const char *fmt, ...)
{
    char     reason[NGX_HTTP_MONETIZE_REASON_LEN];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(reason, sizeof(reason), fmt, args);
    va_end(args);

    if (json_object_set_new(fields, name, json_string(reason)) != 0) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/* 422 validation_failed with the fields; takes the reference to "fields" */

ngx_int_t
ngx_http_monetize_send_invalid(ngx_http_request_t *r, json_t *fields)
{
    json_t  *body;

    body = ngx_http_monetize_error_body("validation_failed",
                                        "some fields are not valid");
    if (body == NULL) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* json_object_set_new() releases "fields" even when it fails */

    if (json_object_set_new(json_object_get(body, "error"), "fields",
                            fields))
    {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_MONETIZE_UNPROCESSABLE,
                                       body);
}
