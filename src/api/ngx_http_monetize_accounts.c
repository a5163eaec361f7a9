
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_password.h"
#include "ngx_http_monetize_outbox.h"
#include "ngx_http_monetize_jobs.h"


/*
 * Accounts: POST /register validates the body, hashes the password in the
 * thread pool, then creates the user, a first API key, a balance and the
 * signup grant in one statement (monetize_register() in SQL).
 */


#define NGX_HTTP_MONETIZE_EMAIL_MAX  254
#define NGX_HTTP_MONETIZE_NAME_MAX   200


typedef struct {
    ngx_str_t                     email;
    ngx_str_t                     name;
    ngx_http_monetize_new_key_t   key;
    ngx_str_t                     mail[4];   /* token hash, subject, text,
                                                html: see verify.c */
} ngx_http_monetize_register_t;


static const char *ngx_http_monetize_check_email(json_t *value,
    ngx_str_t *email);
static const char *ngx_http_monetize_check_password(json_t *value,
    ngx_str_t *password);
static const char *ngx_http_monetize_check_name(json_t *value,
    ngx_str_t *name);
static void ngx_http_monetize_register_hashed(ngx_http_request_t *r,
    ngx_str_t *hash);
static ngx_int_t ngx_http_monetize_register_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);


static const char  ngx_http_monetize_register_sql[] =
    "SELECT user_id, api_key_id, balance"
    "  FROM monetize_register($1, $2, $3, $4, $5, $6)";

/* with monetize_smtp: the verification mail, committed with the account */
static const char  ngx_http_monetize_register_mail_sql[] =
    "SELECT user_id, api_key_id, balance"
    "  FROM monetize_register($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";


ngx_int_t
ngx_http_monetize_register_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                         *fields, *body;
    ngx_str_t                       password;
    const char                     *why;
    ngx_http_monetize_main_conf_t  *mcf;
    ngx_http_monetize_register_t   *reg;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    reg = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_register_t));
    if (reg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = reg;

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    why = ngx_http_monetize_check_email(json_object_get(ctx->body, "email"),
                                        &reg->email);
    if (why) {
        json_object_set_new(fields, "email", json_string(why));
    }

    why = ngx_http_monetize_check_password(
              json_object_get(ctx->body, "password"), &password);
    if (why) {
        json_object_set_new(fields, "password", json_string(why));
    }

    why = ngx_http_monetize_check_name(json_object_get(ctx->body, "name"),
                                       &reg->name);
    if (why) {
        json_object_set_new(fields, "name", json_string(why));
    }

    if (json_object_size(fields)) {
        body = ngx_http_monetize_error_body("validation_failed",
                                            "some fields are not valid");
        if (body == NULL
            || json_object_set_new(json_object_get(body, "error"), "fields",
                                   fields))
        {
            json_decref(body);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_json(r,
                                           NGX_HTTP_MONETIZE_UNPROCESSABLE,
                                           body);
    }

    json_decref(fields);

    /* the email is stored lowercased: one account per mailbox */
    reg->email.data = ngx_pstrdup(r->pool, &reg->email);
    if (reg->email.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_strlow(reg->email.data, reg->email.data, reg->email.len);

    if (reg->name.data) {
        reg->name.data = ngx_pstrdup(r->pool, &reg->name);
        if (reg->name.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (mcf->smtp
        && ngx_http_monetize_verify_mail(r, &reg->mail[0], &reg->mail[1],
                                         &reg->mail[2], &reg->mail[3])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_key_generate(r->pool, &mcf->key_secret,
                                       &mcf->key_prefix, &reg->key)
        != NGX_OK
        || ngx_http_monetize_password_hash(r, &password,
                                           ngx_http_monetize_register_hashed)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_register_hashed(ngx_http_request_t *r, ngx_str_t *hash)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_str_t                       params[10];
    ngx_http_monetize_api_ctx_t    *ctx;
    ngx_http_monetize_main_conf_t  *mcf;
    ngx_http_monetize_register_t   *reg;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    reg = ctx->data;

    if (hash == NULL) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = reg->email;
    params[1] = *hash;
    params[2] = reg->name;
    params[3] = reg->key.hash;
    params[4] = reg->key.prefix;
    params[5].data = p;
    params[5].len = ngx_sprintf(p, "%i", mcf->signup_credits) - p;

    if (mcf->smtp) {
        ngx_memcpy(&params[6], reg->mail, sizeof(reg->mail));

        rc = ngx_http_monetize_api_query(r,
                                         ngx_http_monetize_register_mail_sql,
                                         params, 10,
                                         ngx_http_monetize_register_result);

    } else {
        rc = ngx_http_monetize_api_query(r, ngx_http_monetize_register_sql,
                                         params, 6,
                                         ngx_http_monetize_register_result);
    }

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


static ngx_int_t
ngx_http_monetize_register_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int64_t                        balance;
    ngx_str_t                      user_id, key_id;
    ngx_http_monetize_register_t  *reg;

    reg = ctx->data;

    if (q->status == NGX_HTTP_MONETIZE_PG_ERROR
        && ngx_strcmp(ngx_http_monetize_pg_sqlstate(q), "23505") == 0
        && ngx_strcmp(ngx_http_monetize_pg_constraint(q), "users_email_key")
           == 0)
    {
        return ngx_http_monetize_send_error(r, NGX_HTTP_CONFLICT,
                                            "email_taken",
                                            "an account with this email "
                                            "exists");
    }

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &user_id) != NGX_OK
        || ngx_http_monetize_pg_get_str(q, 0, 1, &key_id) != NGX_OK
        || ngx_http_monetize_pg_get_int(q, 0, 2, &balance) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    ngx_http_monetize_outbox_wake();
    ngx_http_monetize_jobs_wake();

    return ngx_http_monetize_send_json(r, NGX_HTTP_CREATED,
               json_pack("{s:{s:s%,s:s%,s:b},s:s%,s:s%,s:I}",
                         "user",
                         "id", user_id.data, user_id.len,
                         "email", reg->email.data, reg->email.len,
                         "email_verified", 0,
                         "api_key", reg->key.key.data, reg->key.key.len,
                         "api_key_id", key_id.data, key_id.len,
                         "credits", (json_int_t) balance));
}


static const char *
ngx_http_monetize_check_email(json_t *value, ngx_str_t *email)
{
    u_char      *p, *last, *at, *dot;
    ngx_uint_t   ats;

    if (value == NULL) {
        return "is required";
    }

    if (!json_is_string(value)) {
        return "must be a string";
    }

    email->data = (u_char *) json_string_value(value);
    email->len = json_string_length(value);

    if (email->len < 3 || email->len > NGX_HTTP_MONETIZE_EMAIL_MAX) {
        return "must be an email address of at most 254 characters";
    }

    last = email->data + email->len;
    at = NULL;
    dot = NULL;
    ats = 0;

    for (p = email->data; p < last; p++) {

        if (*p <= 0x20 || *p >= 0x7f
            || ngx_strchr("\"(),:;<>[\\]", *p) != NULL)
        {
            return "must be a plain email address (ASCII, no spaces)";
        }

        if (*p == '@') {
            at = p;
            ats++;

        } else if (*p == '.' && at) {
            dot = p;
        }
    }

    if (ats != 1 || at == email->data || at - email->data > 64
        || dot == NULL || dot == at + 1 || dot == last - 1)
    {
        return "must look like name@example.com";
    }

    return NULL;
}


static const char *
ngx_http_monetize_check_password(json_t *value, ngx_str_t *password)
{
    if (value == NULL) {
        return "is required";
    }

    if (!json_is_string(value)) {
        return "must be a string";
    }

    password->data = (u_char *) json_string_value(value);
    password->len = json_string_length(value);

    if (password->len < NGX_HTTP_MONETIZE_PASSWORD_MIN) {
        return "must have at least 8 characters";
    }

    /* no NUL inside: the JSON parser refuses "\u0000" */

    if (password->len > NGX_HTTP_MONETIZE_PASSWORD_MAX) {
        return "must have at most 72 bytes";
    }

    return NULL;
}


static const char *
ngx_http_monetize_check_name(json_t *value, ngx_str_t *name)
{
    u_char  *p, *last;

    ngx_str_null(name);

    if (value == NULL || json_is_null(value)) {
        return NULL;
    }

    if (!json_is_string(value)) {
        return "must be a string";
    }

    name->data = (u_char *) json_string_value(value);
    name->len = json_string_length(value);

    if (name->len == 0 || name->len > NGX_HTTP_MONETIZE_NAME_MAX) {
        return "must have 1 to 200 bytes";
    }

    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return "must not contain control characters";
        }
    }

    return NULL;
}
