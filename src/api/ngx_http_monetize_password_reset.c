
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_validate.h"
#include "ngx_http_monetize_password.h"
#include "ngx_http_monetize_outbox.h"
#include "ngx_http_monetize_portal_api.h"


/*
 * A forgotten password: POST /auth/forgot-password {"email"} queues a mail
 * with a one-use token (valid one hour, only its keyed hash stored, as for
 * verification) whose link opens the portal's reset page; POST
 * /auth/reset-password {"token","password"} sets the password (bcrypt in
 * the thread pool), spends the token and revokes every session of the
 * account (sql/017). Also monetize_portal_url, the base of the links that
 * land on the portal.
 */


typedef struct {
    ngx_str_t                          token_hash;
    ngx_str_t                          password;
} ngx_http_monetize_reset_t;


static ngx_int_t ngx_http_monetize_forgot_mail(ngx_http_request_t *r,
    ngx_str_t *token_hash, ngx_str_t *text, ngx_str_t *html);
static ngx_int_t ngx_http_monetize_forgot_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_forgot_accepted(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_reset_checked(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_reset_hashed(ngx_http_request_t *r,
    ngx_str_t *hash);
static ngx_int_t ngx_http_monetize_reset_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_reset_invalid_token(ngx_http_request_t *r);


static ngx_str_t  ngx_http_monetize_reset_subject =
    ngx_string("Reset your password");


static const char  ngx_http_monetize_forgot_sql[] =
    "SELECT monetize_forgot_password($1, $2, $3, $4, $5)";

static const char  ngx_http_monetize_reset_check_sql[] =
    "SELECT monetize_reset_token_valid($1)";

static const char  ngx_http_monetize_reset_sql[] =
    "SELECT monetize_reset_password($1, $2, $3)";


/* POST /auth/forgot-password {"email"}: 202 whatever happens next */

ngx_int_t
ngx_http_monetize_forgot_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                         *fields;
    ngx_int_t                       rc;
    ngx_str_t                       params[5], email;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&email);

    rc = ngx_http_monetize_field_ascii(ctx->body, fields, "email", 254,
                                       &email);
    if (rc == NGX_ERROR) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK && email.len == 0) {
        rc = ngx_http_monetize_field_invalid(fields, "email", "is required");
    }

    if (rc != NGX_OK) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    if (mcf->smtp == NULL) {
        /* nothing would send it: no row, and the same answer */
        return ngx_http_monetize_forgot_accepted(r);
    }

    email.data = ngx_pstrdup(r->pool, &email);
    if (email.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_strlow(email.data, email.data, email.len);

    if (ngx_http_monetize_forgot_mail(r, &params[1], &params[3], &params[4])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = email;
    params[2] = ngx_http_monetize_reset_subject;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_forgot_sql,
                                       params, 5,
                                       ngx_http_monetize_forgot_result);
}


/*
 * The reset mail. Its token exists only in the mail's text (and in its
 * outbox row until the mail is sent); it is never logged.
 */

static ngx_int_t
ngx_http_monetize_forgot_mail(ngx_http_request_t *r, ngx_str_t *token_hash,
    ngx_str_t *text, ngx_str_t *html)
{
    u_char      *buf;
    ngx_str_t    token, base;
    const char  *suffix;

    buf = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_TOKEN_LEN + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_monetize_email_token(r, buf, &token, token_hash) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_monetize_portal_link(r, &base, &suffix);

    text->len = sizeof("Hello,\n\n"
                       "someone, we hope you, asked to reset the password "
                       "of your account. Choose a new one on this page:\n\n"
                       "#reset?token=\n\n"
                       "The link works once, for one hour. If you did not "
                       "ask, ignore this mail: your password stays as it "
                       "is.\n")
                + base.len + ngx_strlen(suffix) + token.len;

    text->data = ngx_pnalloc(r->pool, text->len);
    if (text->data == NULL) {
        return NGX_ERROR;
    }

    text->len = ngx_sprintf(text->data,
                            "Hello,\n\n"
                            "someone, we hope you, asked to reset the "
                            "password of your account. Choose a new one on "
                            "this page:\n\n"
                            "%V%s#reset?token=%V\n\n"
                            "The link works once, for one hour. If you did "
                            "not ask, ignore this mail: your password stays "
                            "as it is.\n",
                            &base, suffix, &token)
                - text->data;

    html->len = sizeof("<!DOCTYPE html>\n<html><body>\n"
                       "<p>Hello,</p>\n"
                       "<p>someone, we hope you, asked to reset the password "
                       "of your account.</p>\n"
                       "<p><a href=\"#reset?token=\">"
                       "Choose a new password</a></p>\n"
                       "<p>The link works once, for one hour. If you did not "
                       "ask, ignore this mail: your password stays as it "
                       "is.</p>\n"
                       "</body></html>\n")
                + base.len + ngx_strlen(suffix) + token.len;

    html->data = ngx_pnalloc(r->pool, html->len);
    if (html->data == NULL) {
        return NGX_ERROR;
    }

    /* the URLs were checked at configuration: nothing needs escaping */

    html->len = ngx_sprintf(html->data,
                            "<!DOCTYPE html>\n<html><body>\n"
                            "<p>Hello,</p>\n"
                            "<p>someone, we hope you, asked to reset the "
                            "password of your account.</p>\n"
                            "<p><a href=\"%V%s#reset?token=%V\">"
                            "Choose a new password</a></p>\n"
                            "<p>The link works once, for one hour. If you "
                            "did not ask, ignore this mail: your password "
                            "stays as it is.</p>\n"
                            "</body></html>\n",
                            &base, suffix, &token)
                - html->data;

    ngx_explicit_memzero(buf, NGX_HTTP_MONETIZE_TOKEN_LEN + 1);

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_forgot_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  queued;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &queued) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (queued.len == 1 && queued.data[0] == 't') {
        ngx_http_monetize_outbox_wake();
    }

    return ngx_http_monetize_forgot_accepted(r);
}


static ngx_int_t
ngx_http_monetize_forgot_accepted(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_json(r, NGX_HTTP_ACCEPTED,
               json_pack("{s:s}", "status",
                         "if the address has an account, a mail is on its "
                         "way"));
}


/*
 * POST /auth/reset-password {"token","password"}. The token is looked up
 * before the password is hashed, so that guessing tokens costs no bcrypt;
 * it is spent after, in the statement that sets the password.
 */

ngx_int_t
ngx_http_monetize_reset_password_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                     *value, *fields;
    ngx_int_t                   rc;
    ngx_str_t                   token;
    const char                 *why;
    ngx_http_monetize_reset_t  *rs;

    rs = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_reset_t));
    if (rs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = rs;

    value = json_object_get(ctx->body, "token");

    if (!json_is_string(value)) {
        return ngx_http_monetize_reset_invalid_token(r);
    }

    token.data = (u_char *) json_string_value(value);
    token.len = json_string_length(value);

    rc = ngx_http_monetize_email_token_hash(r, &token, &rs->token_hash);

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_reset_invalid_token(r);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the rules of /register */

    value = json_object_get(ctx->body, "password");
    why = NULL;

    if (value == NULL || json_is_null(value)) {
        why = "is required";

    } else if (!json_is_string(value)) {
        why = "must be a string";

    } else {
        rs->password.data = (u_char *) json_string_value(value);
        rs->password.len = json_string_length(value);

        if (rs->password.len < NGX_HTTP_MONETIZE_PASSWORD_MIN) {
            why = "must have at least 8 characters";

        } else if (rs->password.len > NGX_HTTP_MONETIZE_PASSWORD_MAX) {
            why = "must have at most 72 bytes";
        }
    }

    if (why) {
        fields = json_pack("{s:s}", "password", why);
        if (fields == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_invalid(r, fields);
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_reset_check_sql,
                                       &rs->token_hash, 1,
                                       ngx_http_monetize_reset_checked);
}


static ngx_int_t
ngx_http_monetize_reset_checked(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                   valid;
    ngx_http_monetize_reset_t  *rs;

    rs = ctx->data;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &valid) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (valid.len != 1 || valid.data[0] != 't') {
        return ngx_http_monetize_reset_invalid_token(r);
    }

    if (ngx_http_monetize_password_hash(r, &rs->password,
                                        ngx_http_monetize_reset_hashed)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_reset_hashed(ngx_http_request_t *r, ngx_str_t *hash)
{
    ngx_int_t                     rc;
    ngx_str_t                     params[3];
    ngx_http_monetize_reset_t    *rs;
    ngx_http_monetize_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    rs = ctx->data;

    if (hash == NULL) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = rs->token_hash;
    params[1] = *hash;
    params[2] = r->connection->addr_text;

    rc = ngx_http_monetize_api_query(r, ngx_http_monetize_reset_sql,
                                     params, 3,
                                     ngx_http_monetize_reset_result);

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


static ngx_int_t
ngx_http_monetize_reset_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  done;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &done) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    /* "f": a reset with the same token was quicker */

    if (done.len != 1 || done.data[0] != 't') {
        return ngx_http_monetize_reset_invalid_token(r);
    }

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
                                       json_pack("{s:b}", "password_reset",
                                                 1));
}


static ngx_int_t
ngx_http_monetize_reset_invalid_token(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_token",
                                        "the token is unknown, used or "
                                        "expired; ask for a new mail");
}


/*
 * The base of a link into the portal: monetize_portal_url, or by default
 * <monetize_public_url>/portal/.
 */

void
ngx_http_monetize_portal_link(ngx_http_request_t *r, ngx_str_t *base,
    const char **suffix)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (mcf->portal_url.len) {
        *base = mcf->portal_url;
        *suffix = "";
        return;
    }

    *base = mcf->public_url;
    *suffix = "/portal/";
}


/* monetize_portal_url URL: where the mails' links open the portal */

char *
ngx_http_monetize_portal_url_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    u_char     *p, *last;
    ngx_str_t  *value, url;

    if (mcf->portal_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = value[1];
    last = url.data + url.len;

    /* it goes into mails' HTML as it is: nothing that needs escaping */

    for (p = url.data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || ngx_strchr("\"'<>&\\`#", *p)) {
            break;
        }
    }

    if (p != last
        || !((url.len > 7 && ngx_strncmp(url.data, "http://", 7) == 0)
             || (url.len > 8 && ngx_strncmp(url.data, "https://", 8) == 0)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_portal_url: invalid URL \"%V\", give "
                           "http(s)://host[:port]/path/ without quotes, "
                           "\"#\", \"<\", \">\" or \"&\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->portal_url = url;

    return NGX_CONF_OK;
}
