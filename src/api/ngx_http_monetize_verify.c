
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_validate.h"
#include "ngx_http_monetize_outbox.h"


/*
 * Email verification: the mail with its token (made here, for registration
 * and for a resend), POST and GET /auth/verify-email, POST
 * /auth/resend-verification. A token is 32 random bytes in base64url; only
 * its keyed hash is stored, as for API keys.
 */


typedef struct {
    ngx_str_t                          token_hash;
    ngx_str_t                          subject;
    ngx_str_t                          text;
    ngx_str_t                          html;
} ngx_http_monetize_verify_mail_t;


static ngx_int_t ngx_http_monetize_verify_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *token);
static ngx_int_t ngx_http_monetize_verify_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_verify_answer(ngx_http_request_t *r,
    ngx_uint_t verified);
static ngx_int_t ngx_http_monetize_send_html(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *title, ngx_str_t *text);
static ngx_int_t ngx_http_monetize_resend_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_accepted(ngx_http_request_t *r);


static const char  ngx_http_monetize_verify_sql[] =
    "SELECT monetize_verify_email($1)";

static const char  ngx_http_monetize_resend_sql[] =
    "SELECT monetize_resend_verification($1, $2, $3, $4, $5)";


/*
 * A new one-use token for a mail (43 base64url characters, in "buf" of
 * NGX_HTTP_MONETIZE_TOKEN_LEN + 1 bytes) and its keyed hash, which is all
 * that is stored.
 */

ngx_int_t
ngx_http_monetize_email_token(ngx_http_request_t *r, u_char *buf,
    ngx_str_t *token, ngx_str_t *token_hash)
{
    u_char                          rnd[NGX_HTTP_MONETIZE_TOKEN_RANDOM];
    ngx_str_t                       raw;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "monetize: RAND_bytes() failed");
        return NGX_ERROR;
    }

    raw.data = rnd;
    raw.len = sizeof(rnd);
    token->data = buf;

    ngx_encode_base64url(token, &raw);

    ngx_explicit_memzero(rnd, sizeof(rnd));

    token_hash->data = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_KEY_HASH_LEN);
    if (token_hash->data == NULL) {
        return NGX_ERROR;
    }

    token_hash->len = NGX_HTTP_MONETIZE_KEY_HASH_LEN;

    return ngx_http_monetize_key_hash(&mcf->key_secret, token,
                                      token_hash->data);
}


/*
 * The keyed hash of a token given back by a client. NGX_DECLINED: it
 * cannot be one of ours (length, alphabet), and nothing is looked up.
 */

ngx_int_t
ngx_http_monetize_email_token_hash(ngx_http_request_t *r, ngx_str_t *token,
    ngx_str_t *hash)
{
    u_char                         *p, *last;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (token->len != NGX_HTTP_MONETIZE_TOKEN_LEN) {
        return NGX_DECLINED;
    }

    last = token->data + token->len;

    for (p = token->data; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
        {
            return NGX_DECLINED;
        }
    }

    hash->data = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_KEY_HASH_LEN);
    if (hash->data == NULL) {
        return NGX_ERROR;
    }

    hash->len = NGX_HTTP_MONETIZE_KEY_HASH_LEN;

    return ngx_http_monetize_key_hash(&mcf->key_secret, token, hash->data);
}


/*
 * A new token for "email", its hash, and the mail that carries it. The
 * token exists only in this mail's text (and so in its outbox row until
 * the mail is sent); it is never logged. The link opens the API's own
 * page, or the portal's where monetize_portal_url is set (the portal
 * posts the token to POST /auth/verify-email).
 */

ngx_int_t
ngx_http_monetize_verify_mail(ngx_http_request_t *r, ngx_str_t *token_hash,
    ngx_str_t *subject, ngx_str_t *text, ngx_str_t *html)
{
    u_char                         *buf;
    ngx_str_t                       token, link;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    buf = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_TOKEN_LEN + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_monetize_email_token(r, buf, &token, token_hash) != NGX_OK) {
        return NGX_ERROR;
    }

    link.len = sizeof("/v1/auth/verify-email?token=") - 1
               + ngx_max(mcf->public_url.len, mcf->portal_url.len)
               + token.len;
    link.data = ngx_pnalloc(r->pool, link.len);
    if (link.data == NULL) {
        return NGX_ERROR;
    }

    if (mcf->portal_url.len) {
        link.len = ngx_sprintf(link.data, "%V#verify?token=%V",
                               &mcf->portal_url, &token)
                   - link.data;

    } else {
        link.len = ngx_sprintf(link.data, "%V/v1/auth/verify-email?token=%V",
                               &mcf->public_url, &token)
                   - link.data;
    }

    ngx_str_set(subject, "Confirm your email address");

    text->len = sizeof("Hello,\n\n"
                       "please confirm the email address of your account "
                       "by opening this link:\n\n"
                       "\n\n"
                       "or by sending this token to POST "
                       "/v1/auth/verify-email:\n\n"
                       "\n\n"
                       "The link works once, for 24 hours. If you did not "
                       "make an account, ignore this mail.\n")
                + link.len + token.len;

    text->data = ngx_pnalloc(r->pool, text->len);
    if (text->data == NULL) {
        return NGX_ERROR;
    }

    text->len = ngx_sprintf(text->data,
                            "Hello,\n\n"
                            "please confirm the email address of your "
                            "account by opening this link:\n\n"
                            "%V\n\n"
                            "or by sending this token to POST "
                            "/v1/auth/verify-email:\n\n"
                            "%V\n\n"
                            "The link works once, for 24 hours. If you did "
                            "not make an account, ignore this mail.\n",
                            &link, &token)
                - text->data;

    html->len = sizeof("<!DOCTYPE html>\n<html><body>\n"
                       "<p>Hello,</p>\n"
                       "<p>please confirm the email address of your account "
                       "by opening this link:</p>\n"
                       "<p><a href=\"\">"
                       "Confirm my address</a></p>\n"
                       "<p>or by sending this token to POST "
                       "/v1/auth/verify-email:</p>\n"
                       "<p><code></code></p>\n"
                       "<p>The link works once, for 24 hours. If you did not "
                       "make an account, ignore this mail.</p>\n"
                       "</body></html>\n")
                + link.len + token.len;

    html->data = ngx_pnalloc(r->pool, html->len);
    if (html->data == NULL) {
        return NGX_ERROR;
    }

    /* the URLs were checked at configuration: nothing needs escaping */

    html->len = ngx_sprintf(html->data,
                            "<!DOCTYPE html>\n<html><body>\n"
                            "<p>Hello,</p>\n"
                            "<p>please confirm the email address of your "
                            "account by opening this link:</p>\n"
                            "<p><a href=\"%V\">"
                            "Confirm my address</a></p>\n"
                            "<p>or by sending this token to POST "
                            "/v1/auth/verify-email:</p>\n"
                            "<p><code>%V</code></p>\n"
                            "<p>The link works once, for 24 hours. If you "
                            "did not make an account, ignore this "
                            "mail.</p>\n"
                            "</body></html>\n",
                            &link, &token)
                - html->data;

    ngx_explicit_memzero(buf, NGX_HTTP_MONETIZE_TOKEN_LEN + 1);

    return NGX_OK;
}


/* POST /auth/verify-email {"token"} */

ngx_int_t
ngx_http_monetize_verify_email_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t     *value;
    ngx_str_t   token;

    value = json_object_get(ctx->body, "token");

    if (!json_is_string(value)) {
        return ngx_http_monetize_verify_answer(r, 0);
    }

    token.data = (u_char *) json_string_value(value);
    token.len = json_string_length(value);

    return ngx_http_monetize_verify_token(r, ctx, &token);
}


/* GET /auth/verify-email?token=, the link of the mail */

ngx_int_t
ngx_http_monetize_verify_email_get_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_str_t  token;

    if (ngx_http_arg(r, (u_char *) "token", 5, &token) != NGX_OK) {
        return ngx_http_monetize_verify_answer(r, 0);
    }

    /* a base64url token needs no unescaping; anything else is refused */

    return ngx_http_monetize_verify_token(r, ctx, &token);
}


static ngx_int_t
ngx_http_monetize_verify_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *token)
{
    ngx_int_t  rc;
    ngx_str_t  hash;

    rc = ngx_http_monetize_email_token_hash(r, token, &hash);

    if (rc == NGX_DECLINED) {
        return ngx_http_monetize_verify_answer(r, 0);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_verify_sql,
                                       &hash, 1,
                                       ngx_http_monetize_verify_result);
}


static ngx_int_t
ngx_http_monetize_verify_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t  verified;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &verified) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    return ngx_http_monetize_verify_answer(r, verified.len == 1
                                              && verified.data[0] == 't');
}


static ngx_int_t
ngx_http_monetize_verify_answer(ngx_http_request_t *r, ngx_uint_t verified)
{
    ngx_str_t  title, text;

    if (r->method != NGX_HTTP_GET) {
        if (verified) {
            return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
                       json_pack("{s:b}", "email_verified", 1));
        }

        return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_token",
                                            "the token is unknown, used or "
                                            "expired");
    }

    if (verified) {
        ngx_str_set(&title, "Address verified");
        ngx_str_set(&text, "Your email address is verified. You may close "
                           "this page.");
        return ngx_http_monetize_send_html(r, NGX_HTTP_OK, &title, &text);
    }

    ngx_str_set(&title, "Invalid link");
    ngx_str_set(&text, "This link is unknown, was used already, or has "
                       "expired. Ask for a new mail to verify your address.");

    return ngx_http_monetize_send_html(r, NGX_HTTP_BAD_REQUEST, &title,
                                       &text);
}


static ngx_int_t
ngx_http_monetize_send_html(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *title, ngx_str_t *text)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, sizeof("<!DOCTYPE html>\n<html><head>"
                                            "<meta charset=\"utf-8\">"
                                            "<title></title></head>\n"
                                            "<body><h1></h1>\n<p></p>\n"
                                            "</body></html>\n")
                                     + 2 * title->len + text->len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->pos, "<!DOCTYPE html>\n<html><head>"
                          "<meta charset=\"utf-8\"><title>%V</title></head>\n"
                          "<body><h1>%V</h1>\n<p>%V</p>\n</body></html>\n",
                          title, title, text);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* POST /auth/resend-verification {"email"}: 202 whatever happens next */

ngx_int_t
ngx_http_monetize_resend_verification_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                           *fields;
    ngx_int_t                         rc;
    ngx_str_t                         params[5], email;
    ngx_http_monetize_main_conf_t    *mcf;
    ngx_http_monetize_verify_mail_t   m;

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
        return ngx_http_monetize_accepted(r);
    }

    email.data = ngx_pstrdup(r->pool, &email);
    if (email.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_strlow(email.data, email.data, email.len);

    if (ngx_http_monetize_verify_mail(r, &m.token_hash, &m.subject, &m.text,
                                      &m.html)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = email;
    params[1] = m.token_hash;
    params[2] = m.subject;
    params[3] = m.text;
    params[4] = m.html;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_resend_sql,
                                       params, 5,
                                       ngx_http_monetize_resend_result);
}


static ngx_int_t
ngx_http_monetize_resend_result(ngx_http_request_t *r,
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

    return ngx_http_monetize_accepted(r);
}


static ngx_int_t
ngx_http_monetize_accepted(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_json(r, NGX_HTTP_ACCEPTED,
               json_pack("{s:s}", "status",
                         "if the address has an account that is not "
                         "verified, a mail is on its way"));
}
