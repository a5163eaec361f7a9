
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_jwt.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_password.h"
#include "ngx_http_monetize_validate.h"
#include "ngx_http_monetize_portal_api.h"


/*
 * Sessions: POST /auth/login, /auth/refresh, /auth/logout and
 * /auth/logout-all. A login answers a short access token (a JWT, see
 * ngx_http_monetize_jwt.c) and a refresh token: "rt_" and 32 random base62
 * characters, of which only the keyed hash (as for API keys) is stored.
 *
 * A login for an unknown address does the same work as one for a known
 * address (a lookup, bcrypt against a hash of the same cost, a failure
 * recorded) and gets the same answer, so neither the answer nor its time
 * says which addresses have accounts.
 */


#define NGX_HTTP_MONETIZE_LOGIN_EMAIL_MAX  254


typedef struct {
    ngx_str_t                     email;
    ngx_str_t                     user_id;       /* none: no such account */
    ngx_str_t                     password;      /* a login's */
    ngx_str_t                     refresh;       /* the token given */
    ngx_http_monetize_new_key_t   next;          /* the refresh token made */
    unsigned                      verified:1;
    unsigned                      suspended:1;
    unsigned                      from_cookie:1; /* refresh: the token's */
} ngx_http_monetize_session_t;


static ngx_http_monetize_session_t *ngx_http_monetize_session_create(
    ngx_http_request_t *r, ngx_http_monetize_api_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_login_lookup(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_login_verified(ngx_http_request_t *r,
    ngx_int_t match);
static ngx_int_t ngx_http_monetize_login_failed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_session_pair(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_refresh_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_session_closed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_refresh_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *hash, ngx_int_t *answer);
static ngx_uint_t ngx_http_monetize_sessions_off(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_sessions_off_answer(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_session_ttl(ngx_http_request_t *r,
    ngx_str_t *ttl);
static ngx_int_t ngx_http_monetize_invalid_credentials(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_invalid_refresh(ngx_http_request_t *r,
    const char *why);


static ngx_str_t  ngx_http_monetize_refresh_prefix = ngx_string("rt_");


static const char  ngx_http_monetize_login_lookup_sql[] =
    "SELECT user_id, password_hash, email_verified, suspended, retry_after"
    "  FROM monetize_login_lookup($1)";

static const char  ngx_http_monetize_login_failed_sql[] =
    "SELECT monetize_login_failed($1)";

static const char  ngx_http_monetize_session_open_sql[] =
    "SELECT monetize_session_open($1, $2, $3, $4)";

static const char  ngx_http_monetize_session_refresh_sql[] =
    "SELECT outcome, user_id FROM monetize_session_refresh($1, $2, $3)";

static const char  ngx_http_monetize_session_close_sql[] =
    "SELECT monetize_session_close($1)";

static const char  ngx_http_monetize_session_close_all_sql[] =
    "SELECT monetize_session_close_all($1)";


ngx_int_t
ngx_http_monetize_login_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    json_t                       *fields;
    ngx_http_monetize_session_t  *s;

    s = ngx_http_monetize_session_create(r, ctx);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fields = json_object();
    if (fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a password too long for bcrypt is only a wrong one: checked below */

    if (ngx_http_monetize_field_text(ctx->body, fields, "email",
                                     NGX_HTTP_MONETIZE_LOGIN_EMAIL_MAX,
                                     &s->email) == NGX_ERROR
        || ngx_http_monetize_field_text(ctx->body, fields, "password",
                                        NGX_HTTP_MONETIZE_CREDENTIAL_MAX,
                                        &s->password) == NGX_ERROR
        || (s->email.data == NULL && json_object_get(fields, "email") == NULL
            && ngx_http_monetize_field_invalid(fields, "email",
                                               "is required") == NGX_ERROR)
        || (s->password.data == NULL
            && json_object_get(fields, "password") == NULL
            && ngx_http_monetize_field_invalid(fields, "password",
                                               "is required") == NGX_ERROR))
    {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_object_size(fields)) {
        return ngx_http_monetize_send_invalid(r, fields);
    }

    json_decref(fields);

    if (ngx_http_monetize_sessions_off(r)) {
        return ngx_http_monetize_sessions_off_answer(r);
    }

    s->email.data = ngx_pstrdup(r->pool, &s->email);
    if (s->email.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_strlow(s->email.data, s->email.data, s->email.len);

    return ngx_http_monetize_api_query(r, ngx_http_monetize_login_lookup_sql,
                                       &s->email, 1,
                                       ngx_http_monetize_login_lookup);
}


static ngx_int_t
ngx_http_monetize_login_lookup(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    int64_t                       retry;
    ngx_str_t                     hash, flag;
    ngx_http_monetize_session_t  *s;

    s = ctx->data;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK || PQntuples(q->result) != 1
        || ngx_http_monetize_pg_get_int(q, 0, 4, &retry) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (retry > 0) {
        if (ngx_http_monetize_set_number(r, "Retry-After", retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                            "rate_limited",
                                            "too many failed logins for "
                                            "this address; try again in %lld "
                                            "s", (long long) retry);
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &s->user_id) == NGX_OK
        && ngx_http_monetize_pg_get_str(q, 0, 1, &hash) == NGX_OK)
    {
        s->user_id.data = ngx_pstrdup(r->pool, &s->user_id);
        hash.data = ngx_pstrdup(r->pool, &hash);

        if (s->user_id.data == NULL || hash.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_http_monetize_pg_get_str(q, 0, 2, &flag);
        s->verified = (flag.len && flag.data[0] == 't');

        (void) ngx_http_monetize_pg_get_str(q, 0, 3, &flag);
        s->suspended = (flag.len && flag.data[0] == 't');

    } else {
        ngx_str_null(&s->user_id);

        if (ngx_http_monetize_password_dummy(r, &hash) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (s->password.len > NGX_HTTP_MONETIZE_PASSWORD_MAX) {
        /* bcrypt would read its first 72 bytes: such a password is wrong */
        ngx_str_null(&s->user_id);
        s->password.len = NGX_HTTP_MONETIZE_PASSWORD_MAX;
    }

    if (ngx_http_monetize_password_verify(r, &s->password, &hash,
                                          ngx_http_monetize_login_verified)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_login_verified(ngx_http_request_t *r, ngx_int_t match)
{
    ngx_int_t                       rc;
    ngx_str_t                       params[4];
    ngx_http_monetize_api_ctx_t    *ctx;
    ngx_http_monetize_session_t    *s;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    s = ctx->data;

    if (match == NGX_ERROR) {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (!match || s->user_id.data == NULL) {
        rc = ngx_http_monetize_api_query(r,
                                         ngx_http_monetize_login_failed_sql,
                                         &s->email, 1,
                                         ngx_http_monetize_login_failed);
        if (rc != NGX_DONE) {
            ngx_http_monetize_api_finish(r, rc);
        }

        return;
    }

    /* only the holder of the password learns the account's state */

    if (s->suspended) {
        ngx_http_monetize_api_finish(r,
            ngx_http_monetize_send_key_error(r,
                                             NGX_HTTP_MONETIZE_KEY_SUSPENDED,
                                             NULL));
        return;
    }

    if (mcf->require_verified_email && !s->verified) {
        ngx_http_monetize_api_finish(r,
            ngx_http_monetize_send_key_error(r,
                                           NGX_HTTP_MONETIZE_KEY_NOT_VERIFIED,
                                           NULL));
        return;
    }

    if (ngx_http_monetize_key_generate(r->pool, &mcf->key_secret,
                                       &ngx_http_monetize_refresh_prefix,
                                       &s->next)
        != NGX_OK
        || ngx_http_monetize_session_ttl(r, &params[3]) != NGX_OK)
    {
        ngx_http_monetize_api_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = s->user_id;
    params[1] = s->email;
    params[2] = s->next.hash;

    rc = ngx_http_monetize_api_query(r, ngx_http_monetize_session_open_sql,
                                     params, 4,
                                     ngx_http_monetize_session_pair);
    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


static ngx_int_t
ngx_http_monetize_login_failed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    return ngx_http_monetize_invalid_credentials(r);
}


/* The refresh token is stored: answer the pair. */

static ngx_int_t
ngx_http_monetize_session_pair(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t                         *body;
    ngx_str_t                       access;
    ngx_http_monetize_session_t    *s;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    s = ctx->data;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (ngx_http_monetize_jwt_issue(r, &s->user_id, &access) != NGX_OK
        || ngx_http_monetize_session_cookie_set(r, &s->next.key) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = json_pack("{s:s%,s:s%,s:s,s:I}",
                     "access_token", access.data, access.len,
                     "refresh_token", s->next.key.data, s->next.key.len,
                     "token_type", "bearer",
                     "expires_in", (json_int_t) mcf->jwt_access_ttl);

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK, body);
}


ngx_int_t
ngx_http_monetize_refresh_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t                     rc;
    ngx_str_t                     params[3];
    ngx_http_monetize_session_t  *s;

    s = ngx_http_monetize_session_create(r, ctx);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_sessions_off(r)) {
        return ngx_http_monetize_sessions_off_answer(r);
    }

    if (ngx_http_monetize_refresh_token(r, ctx, &params[0], &rc)
        != NGX_OK)
    {
        return rc;
    }

    if (ngx_http_monetize_session_ttl(r, &params[2]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[1] = s->next.hash;

    return ngx_http_monetize_api_query(r,
                                       ngx_http_monetize_session_refresh_sql,
                                       params, 3,
                                       ngx_http_monetize_refresh_result);
}


static ngx_int_t
ngx_http_monetize_refresh_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                     outcome;
    ngx_http_monetize_session_t  *s;

    s = ctx->data;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (outcome.len == 2 && ngx_strncmp(outcome.data, "ok", 2) == 0) {

        if (ngx_http_monetize_pg_get_str(q, 0, 1, &s->user_id) != NGX_OK) {
            return ngx_http_monetize_api_backend_failed(r, q);
        }

        s->user_id.data = ngx_pstrdup(r->pool, &s->user_id);
        if (s->user_id.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_session_pair(r, ctx, q);
    }

    if (outcome.len == 6 && ngx_strncmp(outcome.data, "reused", 6) == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "monetize: a spent refresh token was presented again; "
                      "its session family is revoked");
        return ngx_http_monetize_invalid_refresh(r,
                                                 "this refresh token was "
                                                 "used already; its session "
                                                 "is revoked, log in again");
    }

    if (outcome.len == 9 && ngx_strncmp(outcome.data, "suspended", 9) == 0) {
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_SUSPENDED,
                                              NULL);
    }

    return ngx_http_monetize_invalid_refresh(r,
                                             "this refresh token is unknown, "
                                             "expired or revoked");
}


ngx_int_t
ngx_http_monetize_logout_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  hash;

    if (ngx_http_monetize_session_create(r, ctx) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_refresh_token(r, ctx, &hash, &rc) != NGX_OK) {
        return rc;
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_session_close_sql,
                                       &hash, 1,
                                       ngx_http_monetize_session_closed);
}


/* authenticated: by an API key or an access token of the account */

ngx_int_t
ngx_http_monetize_logout_all_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_api_query(r,
                                       ngx_http_monetize_session_close_all_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_session_closed);
}


static ngx_int_t
ngx_http_monetize_session_closed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_int_t  rc;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    /* the browser's copy goes with the session, whoever sent the token */

    if (ngx_http_monetize_session_cookie_clear(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


static ngx_http_monetize_session_t *
ngx_http_monetize_session_create(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_http_monetize_session_t  *s;

    s = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_session_t));

    ctx->data = s;

    return s;
}


/*
 * The body's "refresh_token" (or, without one, the session cookie's): its
 * hash in "hash" and, made at the same time, the next token of the
 * family. NGX_OK, or NGX_DECLINED and what ends the request in "answer".
 */

static ngx_int_t
ngx_http_monetize_refresh_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *hash, ngx_int_t *answer)
{
    json_t                         *fields;
    ngx_int_t                       rc;
    ngx_http_monetize_session_t    *s;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    s = ctx->data;

    if (ngx_http_monetize_key_generate(r->pool, &mcf->key_secret,
                                       &ngx_http_monetize_refresh_prefix,
                                       &s->next)
        != NGX_OK)
    {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    fields = json_object();
    if (fields == NULL) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (ngx_http_monetize_field_ascii(ctx->body, fields, "refresh_token",
                                      NGX_HTTP_MONETIZE_KEY_MAX_LEN,
                                      &s->refresh) == NGX_ERROR)
    {
        json_decref(fields);
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (s->refresh.data == NULL
        && json_object_get(fields, "refresh_token") == NULL)
    {
        rc = ngx_http_monetize_session_cookie_get(r, &s->refresh);

        if (rc == NGX_ABORT) {
            json_decref(fields);
            *answer = ngx_http_monetize_session_cookie_refused(r);
            return NGX_DECLINED;
        }

        if (rc == NGX_OK) {
            s->from_cookie = 1;

        } else {
            ngx_str_null(&s->refresh);
        }
    }

    if (s->refresh.data == NULL
        && json_object_get(fields, "refresh_token") == NULL
        && ngx_http_monetize_field_invalid(fields, "refresh_token",
                                           "is required") == NGX_ERROR)
    {
        json_decref(fields);
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (json_object_size(fields)) {
        *answer = ngx_http_monetize_send_invalid(r, fields);
        return NGX_DECLINED;
    }

    json_decref(fields);

    if (!ngx_http_monetize_key_is_well_formed(
                                   &ngx_http_monetize_refresh_prefix,
                                   &s->refresh))
    {
        *answer = ngx_http_monetize_invalid_refresh(r, "this is not a "
                                                    "refresh token of this "
                                                    "service");
        return NGX_DECLINED;
    }

    hash->data = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_KEY_HASH_LEN);
    if (hash->data == NULL) {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    hash->len = NGX_HTTP_MONETIZE_KEY_HASH_LEN;

    if (ngx_http_monetize_key_hash(&mcf->key_secret, &s->refresh, hash->data)
        != NGX_OK)
    {
        *answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_monetize_session_ttl(ngx_http_request_t *r, ngx_str_t *ttl)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ttl->data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (ttl->data == NULL) {
        return NGX_ERROR;
    }

    ttl->len = ngx_sprintf(ttl->data, "%T", mcf->jwt_refresh_ttl)
               - ttl->data;

    return NGX_OK;
}


/* without monetize_jwt_secret there are no sessions */

static ngx_uint_t
ngx_http_monetize_sessions_off(ngx_http_request_t *r)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    return mcf->jwt_secret.len == 0;
}


static ngx_int_t
ngx_http_monetize_sessions_off_answer(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "sessions are not enabled on this "
                                        "server (monetize_jwt_secret)");
}


static ngx_int_t
ngx_http_monetize_invalid_credentials(ngx_http_request_t *r)
{
    return ngx_http_monetize_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                        "invalid_credentials",
                                        "the email or the password is "
                                        "wrong");
}


static ngx_int_t
ngx_http_monetize_invalid_refresh(ngx_http_request_t *r, const char *why)
{
    ngx_http_monetize_api_ctx_t  *ctx;
    ngx_http_monetize_session_t  *s;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    s = ctx->data;

    /* a cookie that will never work again is dropped */

    if (s->from_cookie
        && ngx_http_monetize_session_cookie_clear(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                        "invalid_token", "%s", why);
}
