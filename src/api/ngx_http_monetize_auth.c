
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_jwt.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_keys.h"


/*
 * Who is calling the management API: an API key, found by its keyed hash
 * in one round trip that also brings the account's state and balance; or
 * a session's access token (a JWT), checked here, whose account is read at
 * each call, so that a suspended account's tokens stop at once; or an
 * identity provider's token (monetize_jwks), whose (iss, sub) names the
 * account, read (or made) at each call the same way.
 */


static ngx_int_t ngx_http_monetize_auth_key_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_auth_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *token);
static ngx_int_t ngx_http_monetize_auth_token_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_auth_idp_checked(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_monetize_auth_idp(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_http_monetize_auth_idp_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);


static const char  ngx_http_monetize_auth_key_sql[] =
    "SELECT k.id, k.user_id, k.revoked_at IS NOT NULL,"
    "       k.expires_at IS NOT NULL AND k.expires_at <= now(),"
    "       u.suspended_at IS NOT NULL, u.is_admin,"
    "       coalesce(b.balance, 0)"
    "  FROM api_keys k"
    "  JOIN users u ON u.id = k.user_id"
    "  LEFT JOIN balances b ON b.user_id = k.user_id"
    " WHERE k.key_hash = $1";

static const char  ngx_http_monetize_auth_token_sql[] =
    "SELECT u.suspended_at IS NOT NULL, u.is_admin, coalesce(b.balance, 0)"
    "  FROM users u"
    "  LEFT JOIN balances b ON b.user_id = u.id"
    " WHERE u.id = $1";

/* in sql/020_identities.sql */
static const char  ngx_http_monetize_auth_idp_sql[] =
    "SELECT u.id, u.suspended_at IS NOT NULL, u.is_admin,"
    "       coalesce(b.balance, 0)"
    "  FROM users u"
    "  LEFT JOIN balances b ON b.user_id = u.id"
    " WHERE u.id = monetize_identity_user($1, $2, $3, $4, $5)";


ngx_int_t
ngx_http_monetize_authenticate(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char                          *hash;
    ngx_str_t                        credential, param;
    const char                      *why;
    ngx_http_monetize_main_conf_t   *mcf;
    ngx_http_monetize_credential_e   rc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    rc = ngx_http_monetize_credential(r, &credential, &why);

    switch (rc) {

    case NGX_HTTP_MONETIZE_CREDENTIAL_OK:
        break;

    case NGX_HTTP_MONETIZE_CREDENTIAL_MISSING:
        return ngx_http_monetize_send_key_error(r,
                                                NGX_HTTP_MONETIZE_KEY_MISSING,
                                                why);

    case NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS:
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_AMBIGUOUS,
                                              why);

    default: /* NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED */
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_MALFORMED,
                                              why);
    }

    if (ngx_http_monetize_jwt_is_token(&credential)) {
        return ngx_http_monetize_auth_token(r, ctx, &credential);
    }

    if (!ngx_http_monetize_key_is_well_formed(&mcf->key_prefix,
                                              &credential))
    {
        return ngx_http_monetize_send_key_error(r,
                                               NGX_HTTP_MONETIZE_KEY_NOT_OURS,
                                               NULL);
    }

    hash = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_KEY_HASH_LEN);
    if (hash == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_monetize_key_hash(&mcf->key_secret, &credential, hash)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    param.data = hash;
    param.len = NGX_HTTP_MONETIZE_KEY_HASH_LEN;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_auth_key_sql,
                                       &param, 1,
                                       ngx_http_monetize_auth_key_result);
}


static ngx_int_t
ngx_http_monetize_auth_key_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                    flag;
    ngx_http_monetize_caller_t  *caller;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (PQntuples(q->result) == 0) {
        return ngx_http_monetize_send_key_error(r,
                                                NGX_HTTP_MONETIZE_KEY_UNKNOWN,
                                                NULL);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 2, &flag);
    if (flag.len && flag.data[0] == 't') {
        return ngx_http_monetize_send_key_error(r,
                                                NGX_HTTP_MONETIZE_KEY_REVOKED,
                                                NULL);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 3, &flag);
    if (flag.len && flag.data[0] == 't') {
        return ngx_http_monetize_send_key_error(r,
                                                NGX_HTTP_MONETIZE_KEY_EXPIRED,
                                                NULL);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 4, &flag);
    if (flag.len && flag.data[0] == 't') {
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_SUSPENDED,
                                              NULL);
    }

    caller = &ctx->caller;

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &caller->key_id) != NGX_OK
        || ngx_http_monetize_pg_get_str(q, 0, 1, &caller->user_id) != NGX_OK
        || ngx_http_monetize_pg_get_int(q, 0, 6, &caller->balance) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 5, &flag);
    caller->is_admin = (flag.len && flag.data[0] == 't');

    /* the result goes away with this callback: keep what we need */

    caller->key_id.data = ngx_pstrdup(r->pool, &caller->key_id);
    caller->user_id.data = ngx_pstrdup(r->pool, &caller->user_id);

    if (caller->key_id.data == NULL || caller->user_id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ctx->next(r, ctx);
}


static ngx_int_t
ngx_http_monetize_auth_token(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *token)
{
    ngx_int_t                        rc;
    ngx_http_monetize_jwks_token_t  *tok;

    /* the route's handler sets its own state once the caller is known */

    tok = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_jwks_token_t));
    if (tok == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = tok;

    rc = ngx_http_monetize_jwks_verify(r, token, tok,
                                       ngx_http_monetize_auth_idp_checked);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc != NGX_DECLINED) {
        return ngx_http_monetize_auth_idp(r, ctx, rc);
    }

    ctx->data = NULL;

    rc = ngx_http_monetize_jwt_verify(r, token, &ctx->caller.user_id);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_HTTP_MONETIZE_JWT_EXPIRED:
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_EXPIRED,
                                          NULL);

    case NGX_HTTP_MONETIZE_JWT_INVALID:
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID,
                                          NULL);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_monetize_api_query(r, ngx_http_monetize_auth_token_sql,
                                       &ctx->caller.user_id, 1,
                                       ngx_http_monetize_auth_token_result);
}


static ngx_int_t
ngx_http_monetize_auth_token_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                    flag;
    ngx_http_monetize_caller_t  *caller;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    /* a token of an account that is no more */

    if (PQntuples(q->result) == 0) {
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID,
                                          NULL);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 0, &flag);
    if (flag.len && flag.data[0] == 't') {
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_SUSPENDED,
                                              NULL);
    }

    caller = &ctx->caller;

    /* no key: the call is recorded under the nil "session" key (README) */
    ngx_str_set(&caller->key_id, "00000000-0000-0000-0000-000000000000");

    if (ngx_http_monetize_pg_get_int(q, 0, 2, &caller->balance) != NGX_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 1, &flag);
    caller->is_admin = (flag.len && flag.data[0] == 't');

    return ctx->next(r, ctx);
}


static void
ngx_http_monetize_auth_idp_checked(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_monetize_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    rc = ngx_http_monetize_auth_idp(r, ctx, rc);

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


static ngx_int_t
ngx_http_monetize_auth_idp(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_int_t rc)
{
    ngx_str_t                        params[5];
    ngx_http_monetize_main_conf_t   *mcf;
    ngx_http_monetize_jwks_token_t  *tok;

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_HTTP_MONETIZE_JWT_EXPIRED:
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_EXPIRED,
                                          NULL);

    case NGX_HTTP_MONETIZE_JWT_INVALID:
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID,
                                          NULL);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    tok = ctx->data;

    params[0] = tok->issuer;
    params[1] = tok->subject;

    if (mcf->jwt_autoprovision) {
        ngx_str_set(&params[2], "t");

    } else {
        ngx_str_set(&params[2], "f");
    }

    params[3] = tok->email;

    if (params[3].len == 0) {
        params[3].data = NULL;
    }

    params[4].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (params[4].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[4].len = ngx_sprintf(params[4].data, "%i", mcf->signup_credits)
                    - params[4].data;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_auth_idp_sql,
                                       params, 5,
                                       ngx_http_monetize_auth_idp_result);
}


static ngx_int_t
ngx_http_monetize_auth_idp_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                    flag;
    ngx_http_monetize_caller_t  *caller;

    ctx->data = NULL;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    /* an identity of no account, and monetize_jwt_autoprovision off */

    if (PQntuples(q->result) == 0) {
        return ngx_http_monetize_send_key_error(r,
                                          NGX_HTTP_MONETIZE_KEY_TOKEN_INVALID,
                                          NULL);
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 1, &flag);
    if (flag.len && flag.data[0] == 't') {
        return ngx_http_monetize_send_key_error(r,
                                              NGX_HTTP_MONETIZE_KEY_SUSPENDED,
                                              NULL);
    }

    caller = &ctx->caller;

    ngx_str_set(&caller->key_id, "00000000-0000-0000-0000-000000000000");

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &caller->user_id) != NGX_OK
        || ngx_http_monetize_pg_get_int(q, 0, 3, &caller->balance) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    caller->user_id.data = ngx_pstrdup(r->pool, &caller->user_id);
    if (caller->user_id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_http_monetize_pg_get_str(q, 0, 2, &flag);
    caller->is_admin = (flag.len && flag.data[0] == 't');

    return ctx->next(r, ctx);
}
