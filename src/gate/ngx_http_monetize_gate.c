
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_gate.h"
#include "ngx_http_monetize_jwt.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_keys.h"
#include "ngx_http_monetize_keystore.h"
#include "ngx_http_monetize_redis.h"


/*
 * The gate's decision, in the access phase: a call passes only with a
 * valid API key and enough credits, and its cost is debited, durably,
 * before it goes on.
 *
 *     credential -> cost -> key (cache, else PostgreSQL) -> debit (batched)
 *
 * Each step that waits returns NGX_AGAIN; its answer resumes the phases,
 * and the handler, called again, returns the decision. A call is decided
 * once: an internal redirect (error_page, try_files) finds the decision
 * again and charges nothing more.
 *
 * The steps that ask PostgreSQL share one deadline, the pool's timeout and
 * grace from when the gate started on the call: the key lookup is cut at
 * it, and the debit gets what is left (the ledger refuses a debit not sent
 * by then, and voids one sent but unanswered). Redis's step, between them,
 * is bounded by its own timeout; a debit it leaves no time is refused.
 */


static void ngx_http_monetize_gate_start(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_gate_cost(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_idp_checked(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_monetize_gate_idp(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_monetize_gate_session(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_str_t *token);
static void ngx_http_monetize_gate_found(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_monetize_gate_check_key(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_uint_t ngx_http_monetize_gate_has_scope(
    ngx_http_monetize_gate_ctx_t *ctx, ngx_str_t *scope);
static ngx_int_t ngx_http_monetize_gate_limit(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_gate_limit_local(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_limited(void *data, ngx_int_t rc,
    ngx_http_monetize_limit_t *lim);
static ngx_int_t ngx_http_monetize_gate_without_redis(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static ngx_int_t ngx_http_monetize_gate_bad_plan(ngx_http_request_t *r,
    ngx_http_monetize_key_info_t *info);
static void ngx_http_monetize_gate_charge(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_debited(ngx_http_monetize_debit_t *d);
static void ngx_http_monetize_gate_decide(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_monetize_gate_resume(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx);
static void ngx_http_monetize_gate_cleanup(void *data);


ngx_int_t
ngx_http_monetize_gate_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_monetize_gate_ctx_t       *ctx;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (!glcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_gate_ctx_t));
        cln = ngx_pool_cleanup_add(r->pool, 0);

        if (ctx == NULL || cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_monetize_gate_cleanup;
        cln->data = ctx;

        ngx_http_set_ctx(r, ctx, ngx_http_monetize_gate_module);

        ngx_http_monetize_gate_start(r, ctx);
    }

    if (ctx->state != NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ctx->waited = 1;
        return NGX_AGAIN;
    }

    if (ctx->rc != NGX_OK) {
        return ngx_http_monetize_gate_deny(r, ctx);
    }

    return NGX_OK;
}


/*
 * An internal redirect clears module contexts; the pool cleanup that owns
 * ours still holds it, so a redirected call keeps its one decision. A
 * subrequest shares the pool but is not the call: it has no decision (its
 * status, logged with log_subrequest, is not the call's).
 */

ngx_http_monetize_gate_ctx_t *
ngx_http_monetize_gate_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_gate_module);

    if (ctx || !r->internal || r != r->main) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_monetize_gate_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_monetize_gate_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_monetize_gate_start(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_str_t                        credential;
    const char                      *why;
    ngx_int_t                        rc;
    ngx_http_monetize_main_conf_t   *mcf;
    ngx_http_monetize_credential_e   cred;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ctx->deadline = ngx_current_msec + ngx_http_monetize_pg_timeout(mcf->pg);

    cred = ngx_http_monetize_credential(r, &credential, &why);
    ctx->why = why;

    switch (cred) {

    case NGX_HTTP_MONETIZE_CREDENTIAL_OK:
        break;

    case NGX_HTTP_MONETIZE_CREDENTIAL_MISSING:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_MISSING);
        return;

    case NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS:
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_AMBIGUOUS);
        return;

    default: /* NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED */
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_MALFORMED);
        return;
    }

    if (ngx_http_monetize_jwt_is_token(&credential)) {
        rc = ngx_http_monetize_jwks_verify(r, &credential, &ctx->idp,
                                           ngx_http_monetize_gate_idp_checked);

        if (rc == NGX_DECLINED) {
            ngx_http_monetize_gate_session(r, ctx, &credential);

        } else if (rc == NGX_AGAIN) {
            ctx->state = NGX_HTTP_MONETIZE_GATE_FINDING;

        } else {
            ngx_http_monetize_gate_idp(r, ctx, rc);
        }

        return;
    }

    if (!ngx_http_monetize_key_is_well_formed(&mcf->key_prefix, &credential))
    {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_NOT_OURS);
        return;
    }

    rc = ngx_http_monetize_gate_cost(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx, rc);
        return;
    }

    if (ngx_http_monetize_key_hash_raw(&mcf->key_secret, &credential,
                                       ctx->hash)
        != NGX_OK)
    {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    ctx->state = NGX_HTTP_MONETIZE_GATE_FINDING;

    rc = ngx_http_monetize_keystore_find(r, ctx->hash, &ctx->info,
                                         ctx->deadline,
                                         ngx_http_monetize_gate_found);

    if (rc == NGX_OK) {
        ngx_http_monetize_gate_check_key(r, ctx);

    } else if (rc == NGX_ERROR) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
    }
}


/*
 * A session token (a JWT of POST /auth/login): checked here, then its
 * account found as a key is, and the call goes on as a key's would.
 */

static void
ngx_http_monetize_gate_session(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_str_t *token)
{
    ngx_int_t  rc;
    ngx_str_t  user_id;

    rc = ngx_http_monetize_jwt_verify(r, token, &user_id);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx,
            rc == NGX_HTTP_MONETIZE_JWT_EXPIRED
                ? NGX_HTTP_MONETIZE_DENY_TOKEN_EXPIRED
                : rc == NGX_HTTP_MONETIZE_JWT_INVALID
                ? NGX_HTTP_MONETIZE_DENY_TOKEN_INVALID
                : NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    rc = ngx_http_monetize_gate_cost(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx, rc);
        return;
    }

    ctx->session = 1;
    ctx->state = NGX_HTTP_MONETIZE_GATE_FINDING;

    rc = ngx_http_monetize_keystore_find_session(r, &user_id, ctx->hash,
                                                 &ctx->info, ctx->deadline,
                                                 ngx_http_monetize_gate_found);

    if (rc == NGX_OK) {
        ngx_http_monetize_gate_check_key(r, ctx);

    } else if (rc == NGX_ERROR) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
    }
}


/* An identity provider's token, checked once its keys were fetched. */

static void
ngx_http_monetize_gate_idp_checked(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r);

    ngx_http_monetize_gate_idp(r, ctx, rc);

    if (ctx->state == NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ngx_http_monetize_gate_resume(r, ctx);
    }
}


/*
 * An identity provider's token (monetize_jwks): its (iss, sub) names the
 * account, found (or made) as a session's is, and the call goes on as a
 * session's would.
 */

static void
ngx_http_monetize_gate_idp(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_monetize_jwks_token_t  *tok;

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx,
            rc == NGX_HTTP_MONETIZE_JWT_EXPIRED
                ? NGX_HTTP_MONETIZE_DENY_TOKEN_EXPIRED
                : rc == NGX_HTTP_MONETIZE_JWT_INVALID
                ? NGX_HTTP_MONETIZE_DENY_TOKEN_INVALID
                : NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    rc = ngx_http_monetize_gate_cost(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx, rc);
        return;
    }

    tok = &ctx->idp;

    ctx->session = 1;
    ctx->state = NGX_HTTP_MONETIZE_GATE_FINDING;

    rc = ngx_http_monetize_keystore_find_identity(r, &tok->issuer,
                                                  &tok->subject, &tok->email,
                                                  ctx->hash, &ctx->info,
                                                  ctx->deadline,
                                                  ngx_http_monetize_gate_found);

    if (rc == NGX_OK) {
        ngx_http_monetize_gate_check_key(r, ctx);

    } else if (rc == NGX_ERROR) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
    }
}


/* monetize_cost: a whole number of credits, from 0 to 10^9 */

static ngx_int_t
ngx_http_monetize_gate_cost(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_int_t                           n;
    ngx_str_t                           value;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (glcf->cost == NULL) {
        ctx->cost = 1;
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, glcf->cost, &value) != NGX_OK) {
        return NGX_HTTP_MONETIZE_DENY_INTERNAL;
    }

    n = ngx_atoi(value.data, value.len);

    if (n == NGX_ERROR || n > NGX_HTTP_MONETIZE_COST_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: monetize_cost is \"%V\", not a whole number "
                      "from 0 to %d; nothing is debited", &value,
                      NGX_HTTP_MONETIZE_COST_MAX);
        return NGX_HTTP_MONETIZE_DENY_BAD_COST;
    }

    ctx->cost = n;

    return NGX_OK;
}


static void
ngx_http_monetize_gate_found(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_UNAVAILABLE);
        ngx_http_monetize_gate_resume(r, ctx);
        return;
    }

    ngx_http_monetize_gate_check_key(r, ctx);

    if (ctx->state == NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ngx_http_monetize_gate_resume(r, ctx);
    }
}


static void
ngx_http_monetize_gate_check_key(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_http_monetize_key_info_t       *info;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    info = &ctx->info;

    if (!info->found) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      ctx->session
                                      ? NGX_HTTP_MONETIZE_DENY_TOKEN_INVALID
                                      : NGX_HTTP_MONETIZE_DENY_UNKNOWN);
        return;
    }

    if (info->revoked) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_REVOKED);
        return;
    }

    if (ngx_http_monetize_key_expired(info)) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_EXPIRED);
        return;
    }

    if (info->suspended) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_SUSPENDED);
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (info->unverified && mcf->require_verified_email) {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_NOT_VERIFIED);
        return;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (info->past_due && glcf->past_due == NGX_HTTP_MONETIZE_PAST_DUE_DENY)
    {
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_PAST_DUE);
        return;
    }

    if (glcf->scope.len
        && !ngx_http_monetize_gate_has_scope(ctx, &glcf->scope))
    {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_SCOPE);
        return;
    }

    ctx->authenticated = 1;
    ctx->balance = info->balance;

    rc = ngx_http_monetize_gate_limit(r, ctx);

    if (rc == NGX_AGAIN) {
        ctx->state = NGX_HTTP_MONETIZE_GATE_LIMITING;
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_monetize_gate_decide(r, ctx, rc);
        return;
    }

    ngx_http_monetize_gate_charge(r, ctx);
}


/*
 * monetize_gate on scope=NAME: a provider's token by its scope or scp
 * claim, an API key by the scopes it was made with; our own session
 * tokens have none.
 */

static ngx_uint_t
ngx_http_monetize_gate_has_scope(ngx_http_monetize_gate_ctx_t *ctx,
    ngx_str_t *scope)
{
    u_char  *p, *last, *start;

    if (ctx->idp.claims) {
        return ngx_http_monetize_jwks_has_scope(&ctx->idp, scope);
    }

    if (ctx->session) {
        return 0;
    }

    last = ctx->info.scopes + ctx->info.scopes_len;

    for (start = p = ctx->info.scopes; p <= last; p++) {
        if (p == last || *p == ' ') {
            if ((size_t) (p - start) == scope->len
                && ngx_strncmp(start, scope->data, scope->len) == 0)
            {
                return 1;
            }

            start = p + 1;
        }
    }

    return 0;
}


/*
 * The plan's rate limit, before anything is charged: NGX_OK to go on,
 * NGX_AGAIN while Redis decides, or the denial.
 */

static ngx_int_t
ngx_http_monetize_gate_limit(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    u_char                             *p;
    ngx_int_t                           rc;
    ngx_str_t                          *key;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (glcf->rate_limit == NGX_HTTP_MONETIZE_LIMIT_OFF) {
        return NGX_OK;
    }

    if (ctx->info.rate <= 0 || ctx->info.burst <= 0) {
        return ngx_http_monetize_gate_bad_plan(r, &ctx->info);
    }

    /* what is limited: the authenticated key, or its account, never input */

    key = &ctx->limit_key;
    key->len = sizeof("k:") - 1 + NGX_HTTP_MONETIZE_UUID_LEN;
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_HTTP_MONETIZE_DENY_INTERNAL;
    }

    /* a session's key is everyone's nil UUID: its account is limited */

    if (glcf->rate_limit_key == NGX_HTTP_MONETIZE_LIMIT_BY_ACCOUNT
        || ctx->session)
    {
        p = ngx_cpymem(key->data, "a:", 2);
        ngx_memcpy(p, ctx->info.user_id, NGX_HTTP_MONETIZE_UUID_LEN);

    } else {
        p = ngx_cpymem(key->data, "k:", 2);
        ngx_memcpy(p, ctx->info.key_id, NGX_HTTP_MONETIZE_UUID_LEN);
    }

    if (glcf->rate_limit == NGX_HTTP_MONETIZE_LIMIT_LOCAL) {
        return ngx_http_monetize_gate_limit_local(r, ctx);
    }

    rc = ngx_http_monetize_redis_limit(mcf->redis, r->pool, key,
                                       ctx->info.rate, ctx->info.burst,
                                       ngx_http_monetize_gate_limited, r);

    if (rc == NGX_DECLINED) {
        /* Redis is known to be down: decide without it, at once */
        return ngx_http_monetize_gate_without_redis(r, ctx);
    }

    return (rc == NGX_ERROR) ? NGX_HTTP_MONETIZE_DENY_INTERNAL : rc;
}


/* The node's own limiter: NGX_OK, or the denial. */

static ngx_int_t
ngx_http_monetize_gate_limit_local(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (ngx_http_monetize_limit_local(mcf->limits, &ctx->limit_key,
                                      1000000 / ctx->info.rate,
                                      ctx->info.burst, &ctx->limit)
        != NGX_OK)
    {
        return NGX_HTTP_MONETIZE_DENY_INTERNAL;
    }

    ctx->limited = 1;

    return ctx->limit.allowed ? NGX_OK : NGX_HTTP_MONETIZE_DENY_RATE_LIMITED;
}


/* Redis's answer, or its silence (rc NGX_ERROR: down, lost, too slow). */

static void
ngx_http_monetize_gate_limited(void *data, ngx_int_t rc,
    ngx_http_monetize_limit_t *lim)
{
    ngx_http_request_t *r = data;

    ngx_http_monetize_gate_ctx_t  *ctx;

    ctx = ngx_http_monetize_gate_get_ctx(r);

    if (rc == NGX_OK) {
        ctx->limit = *lim;
        ctx->limited = 1;
        rc = lim->allowed ? NGX_OK : NGX_HTTP_MONETIZE_DENY_RATE_LIMITED;

    } else {
        rc = ngx_http_monetize_gate_without_redis(r, ctx);
    }

    if (rc == NGX_OK) {
        ngx_http_monetize_gate_charge(r, ctx);

    } else {
        ngx_http_monetize_gate_decide(r, ctx, rc);
    }

    if (ctx->state == NGX_HTTP_MONETIZE_GATE_DECIDED) {
        ngx_http_monetize_gate_resume(r, ctx);
    }
}


/*
 * monetize_fail_mode: without Redis, the node's own limiter holds the limit
 * per node ("local"), or the call is refused ("closed").
 */

static ngx_int_t
ngx_http_monetize_gate_without_redis(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (glcf->fail_mode == NGX_HTTP_MONETIZE_FAIL_CLOSED) {
        return NGX_HTTP_MONETIZE_DENY_LIMITER_DOWN;
    }

    return ngx_http_monetize_gate_limit_local(r, ctx);
}


/*
 * A plan row with a rate or burst of 0 or less cannot be enforced: its calls
 * are refused (500) and the log says which plan, once a minute a worker.
 */

static ngx_int_t
ngx_http_monetize_gate_bad_plan(ngx_http_request_t *r,
    ngx_http_monetize_key_info_t *info)
{
    static time_t  logged;

    if (ngx_time() - logged >= 60) {
        logged = ngx_time();
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: plan \"%*s\" has rate_limit_rps %D and "
                      "rate_limit_burst %D; a rate limit needs both above "
                      "0, so the calls of its accounts are refused until the "
                      "plans row is fixed", (size_t) info->plan_len,
                      info->plan, info->rate, info->burst);
    }

    return NGX_HTTP_MONETIZE_DENY_BAD_PLAN;
}


/*
 * The charge: with monetize_quota, the plan's calls first, then credits;
 * else credits only. A free call with no quota to count asks no one.
 */

static void
ngx_http_monetize_gate_charge(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    u_char                              *p;
    ngx_http_variable_value_t           *vv;
    ngx_http_monetize_debit_t           *d;
    ngx_http_monetize_key_info_t        *info;
    ngx_http_monetize_main_conf_t       *mcf;
    ngx_http_monetize_gate_loc_conf_t   *glcf;
    ngx_http_monetize_gate_main_conf_t  *gmcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_gate_module);
    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    info = &ctx->info;

    if (ctx->cost == 0 && !glcf->quota) {
        /* free: admitted without a debit; the balance is the last known */
        ctx->balance_known = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        return;
    }

    vv = ngx_http_get_indexed_variable(r, gmcf->request_id);

    d = ngx_http_monetize_debit_create(r->pool);
    p = ngx_pnalloc(r->pool, sizeof("call:") - 1 + (vv ? vv->len : 0));

    if (vv == NULL || vv->not_found || d == NULL || p == NULL) {
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_INTERNAL);
        return;
    }

    ctx->reference.data = p;
    p = ngx_cpymem(p, "call:", sizeof("call:") - 1);
    p = ngx_cpymem(p, vv->data, vv->len);
    ctx->reference.len = p - ctx->reference.data;

    d->user_id.data = info->user_id;
    d->user_id.len = NGX_HTTP_MONETIZE_UUID_LEN;
    d->key_id.data = info->key_id;
    d->key_id.len = NGX_HTTP_MONETIZE_UUID_LEN;
    d->reference = ctx->reference;
    d->cost = ctx->cost;
    d->quota = glcf->quota;
    d->deadline = ctx->deadline;
    d->handler = ngx_http_monetize_gate_debited;
    d->data = r;

    ctx->state = NGX_HTTP_MONETIZE_GATE_DEBITING;

    ngx_http_monetize_debit(mcf->ledger, d);
}


static void
ngx_http_monetize_gate_debited(ngx_http_monetize_debit_t *d)
{
    ngx_http_request_t             *r;
    ngx_http_monetize_gate_ctx_t   *ctx;
    ngx_http_monetize_main_conf_t  *mcf;

    r = d->data;
    ctx = ngx_http_monetize_gate_get_ctx(r);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (d->status != NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE) {
        ctx->balance = d->balance;
        ctx->balance_known = 1;

        if (d->quota) {
            ctx->quota_known = 1;
            ctx->quota_left = d->quota_left;
            ctx->period_end = d->period_end;
        }
    }

    switch (d->status) {

    case NGX_HTTP_MONETIZE_DEBIT_ADMITTED:
        ctx->debited = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_INCLUDED:
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_OVERAGE:
        ctx->overage = 1;
        ngx_http_monetize_gate_decide(r, ctx, NGX_OK);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_REFUSED:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_CREDITS);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_QUOTA_EXCEEDED:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_QUOTA);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_KEY_REVOKED:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_REVOKED);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_KEY_EXPIRED:
        ngx_http_monetize_gate_decide(r, ctx, NGX_HTTP_MONETIZE_DENY_EXPIRED);
        break;

    case NGX_HTTP_MONETIZE_DEBIT_SUSPENDED:
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_SUSPENDED);
        break;

    default: /* NGX_HTTP_MONETIZE_DEBIT_UNAVAILABLE */
        ngx_http_monetize_gate_decide(r, ctx,
                                      NGX_HTTP_MONETIZE_DENY_UNAVAILABLE);
    }

    if (ctx->balance_known && mcf->cache) {
        ngx_http_monetize_cache_set_balance(mcf->cache, ctx->hash,
                                            ctx->balance);
    }

    ngx_http_monetize_gate_resume(r, ctx);
}


static void
ngx_http_monetize_gate_decide(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_core_loc_conf_t           *clcf;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_gate_loc_conf_t  *glcf;

    /*
     * Past the plan's calls, a call that costs credits is refused because
     * the balance cannot pay it: credits would let it through, so it is a
     * 402, not a 429 to wait out until the period's end.
     */

    if (rc == NGX_HTTP_MONETIZE_DENY_QUOTA && ctx->cost > 0) {
        rc = NGX_HTTP_MONETIZE_DENY_CREDITS;
    }

    ctx->state = NGX_HTTP_MONETIZE_GATE_DECIDED;
    ctx->rc = rc;

    if (rc == NGX_OK) {
        mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        ngx_http_monetize_meter_count(mcf->meter, ctx->info.user_id,
                                      ctx->info.key_id, &clcf->name,
                                      ctx->debited ? ctx->cost : 0);
        return;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_gate_module);

    if (rc == NGX_HTTP_MONETIZE_DENY_CREDITS) {
        ngx_log_error(glcf->deny_log_level, r->connection->log, 0,
                      "monetize: denied: insufficient_credits (cost %L, "
                      "balance %L)", ctx->cost, ctx->balance);
        return;
    }

    ngx_log_error(glcf->deny_log_level, r->connection->log, 0,
                  "monetize: denied: %s", ngx_http_monetize_gate_code(rc));
}


/* An answer came from an event: run the phases again from the gate. */

static void
ngx_http_monetize_gate_resume(ngx_http_request_t *r,
    ngx_http_monetize_gate_ctx_t *ctx)
{
    ngx_connection_t  *c;

    if (!ctx->waited) {
        return;
    }

    c = r->connection;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_monetize_gate_cleanup(void *data)
{
    /* the context is in the request's pool; this only marks ownership */
}
