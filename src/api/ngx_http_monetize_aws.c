
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_sts.h"


/*
 * POST /aws/credentials: short-lived AWS credentials for the caller, from
 * STS AssumeRole on the operator's role, scoped by the session policy.
 * Three steps: PostgreSQL says whether the account may (its plan, its
 * hourly limit) and records the call; STS issues; PostgreSQL records the
 * issuance (usage, audit log) and only then does the client get it. The
 * secret access key and the session token are never logged nor stored.
 */


typedef struct {
    ngx_str_t                       id;            /* aws_credentials.id */
    ngx_str_t                       session_name;
    ngx_http_monetize_sts_call_t   *sts;
    ngx_uint_t                      result;        /* STS's, or
                                                      UNAVAILABLE: not
                                                      started */
} ngx_http_monetize_aws_t;


static ngx_int_t ngx_http_monetize_aws_begun(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_aws_sts_done(ngx_http_monetize_sts_call_t *sc);
static ngx_int_t ngx_http_monetize_aws_issued(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_aws_failed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);
static ngx_int_t ngx_http_monetize_aws_fail(ngx_http_request_t *r,
    ngx_http_monetize_aws_t *aws, ngx_str_t *code);
static ngx_int_t ngx_http_monetize_aws_refusal(ngx_http_request_t *r,
    ngx_http_monetize_aws_t *aws);


/* in sql/021_sts.sql */
static const char  ngx_http_monetize_aws_begin_sql[] =
    "SELECT outcome, id, plan_id, retry_after"
    "  FROM monetize_sts_begin($1, $2, $3, $4, $5, $6)";

static const char  ngx_http_monetize_aws_issued_sql[] =
    "SELECT monetize_sts_issued($1, $2, $3, $4)";

static const char  ngx_http_monetize_aws_failed_sql[] =
    "SELECT monetize_sts_failed($1, $2)";


ngx_int_t
ngx_http_monetize_aws_credentials_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    u_char                         *p;
    ngx_str_t                       params[6];
    ngx_http_monetize_aws_t        *aws;
    ngx_http_monetize_sts_conf_t   *sts;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);
    sts = mcf->sts;

    if (sts == NULL) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found",
                                            "this server issues no AWS "
                                            "credentials: monetize_aws_sts "
                                            "is not configured");
    }

    aws = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_aws_t));
    if (aws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = aws;

    /*
     * The user's id names the session: CloudTrail shows it with every call
     * the credentials make. STS takes 2 to 64 of [\w+=,.@-]: a UUID and
     * the prefix are 45.
     */

    aws->session_name.data = ngx_pnalloc(r->pool, sizeof("monetize-") - 1
                                                  + ctx->caller.user_id.len);
    if (aws->session_name.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(aws->session_name.data, "monetize-",
                   sizeof("monetize-") - 1);
    p = ngx_cpymem(p, ctx->caller.user_id.data, ctx->caller.user_id.len);
    aws->session_name.len = p - aws->session_name.data;

    params[0] = ctx->caller.user_id;
    params[1] = ctx->caller.key_id;
    params[2] = sts->plans;

    if (sts->plans.len == 0) {
        ngx_str_null(&params[2]);
    }

    params[3].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (params[3].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[3].len = ngx_sprintf(params[3].data, "%ui", sts->limit)
                    - params[3].data;
    params[4] = sts->role_arn;
    params[5] = aws->session_name;

    return ngx_http_monetize_api_query(r, ngx_http_monetize_aws_begin_sql,
                                       params, 6,
                                       ngx_http_monetize_aws_begun);
}


static ngx_int_t
ngx_http_monetize_aws_begun(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                       outcome, plan, retry, id;
    ngx_http_monetize_aws_t        *aws;
    ngx_http_monetize_main_conf_t  *mcf;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    aws = ctx->data;

    if (PQntuples(q->result) != 1
        || ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (outcome.len == sizeof("plan") - 1
        && ngx_strncmp(outcome.data, "plan", outcome.len) == 0)
    {
        if (ngx_http_monetize_pg_get_str(q, 0, 2, &plan) != NGX_OK) {
            ngx_str_set(&plan, "none");
        }

        return ngx_http_monetize_send_error(r, NGX_HTTP_FORBIDDEN,
                                            "subscription_required",
                                            "AWS credentials are not part "
                                            "of your plan (%.*s): upgrade "
                                            "to a plan that includes them",
                                            (int) plan.len, plan.data);
    }

    if (outcome.len == sizeof("limited") - 1
        && ngx_strncmp(outcome.data, "limited", outcome.len) == 0)
    {
        if (ngx_http_monetize_pg_get_str(q, 0, 3, &retry) != NGX_OK) {
            ngx_str_set(&retry, "60");
        }

        retry.data = ngx_pstrdup(r->pool, &retry);
        if (retry.data == NULL
            || ngx_http_monetize_set_header(r, "Retry-After", &retry)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

        return ngx_http_monetize_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                            "rate_limited",
                                            "at most %lu AWS credentials an "
                                            "hour for an account; try again "
                                            "later",
                                            (unsigned long) mcf->sts->limit);
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 1, &id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    aws->id.data = ngx_pstrdup(r->pool, &id);
    if (aws->id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    aws->id.len = id.len;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    aws->sts = ngx_http_monetize_sts_assume_role(mcf->sts, r->pool,
                                                 r->connection->log,
                                                 &aws->session_name,
                                                 ngx_http_monetize_aws_sts_done,
                                                 r);
    if (aws->sts == NULL) {
        ngx_str_set(&id, "not started");
        aws->result = NGX_HTTP_MONETIZE_STS_UNAVAILABLE;

        return ngx_http_monetize_aws_fail(r, aws, &id);
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_aws_sts_done(ngx_http_monetize_sts_call_t *sc)
{
    ngx_int_t                     rc;
    ngx_str_t                     params[4];
    ngx_http_request_t           *r;
    ngx_http_monetize_aws_t      *aws;
    ngx_http_monetize_api_ctx_t  *ctx;

    r = sc->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);
    aws = ctx->data;

    aws->result = sc->result;

    if (sc->result == NGX_HTTP_MONETIZE_STS_OK) {
        params[0] = aws->id;
        params[1] = sc->access_key_id;
        params[2] = sc->expiration;
        params[3] = r->connection->addr_text;

        rc = ngx_http_monetize_api_query(r, ngx_http_monetize_aws_issued_sql,
                                         params, 4,
                                         ngx_http_monetize_aws_issued);

    } else {
        rc = ngx_http_monetize_aws_fail(r, aws, &sc->code);
    }

    if (rc != NGX_DONE) {
        ngx_http_monetize_api_finish(r, rc);
    }
}


/* recorded: now the client may have them */

static ngx_int_t
ngx_http_monetize_aws_issued(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    ngx_str_t                      done;
    ngx_http_monetize_aws_t       *aws;
    ngx_http_monetize_sts_call_t  *sc;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    aws = ctx->data;
    sc = aws->sts;

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &done) != NGX_OK
        || done.len != 1 || done.data[0] != 't')
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "monetize: aws_credentials %V was not pending: the "
                      "credentials are not handed out", &aws->id);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "monetize: user %V: AWS credentials %V until %V",
                  &ctx->caller.user_id, &sc->access_key_id, &sc->expiration);

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
               json_pack("{s:s%,s:s%,s:s%,s:s%}",
                         "access_key_id", sc->access_key_id.data,
                         sc->access_key_id.len,
                         "secret_access_key", sc->secret_access_key.data,
                         sc->secret_access_key.len,
                         "session_token", sc->session_token.data,
                         sc->session_token.len,
                         "expiration", sc->expiration.data,
                         sc->expiration.len));
}


/* a call that issued nothing counts nothing against the limit */

static ngx_int_t
ngx_http_monetize_aws_fail(ngx_http_request_t *r,
    ngx_http_monetize_aws_t *aws, ngx_str_t *code)
{
    ngx_int_t  rc;
    ngx_str_t  params[2];

    params[0] = aws->id;
    params[1] = *code;

    rc = ngx_http_monetize_api_query(r, ngx_http_monetize_aws_failed_sql,
                                     params, 2, ngx_http_monetize_aws_failed);

    if (rc != NGX_DONE) {
        rc = ngx_http_monetize_aws_refusal(r, aws);
    }

    return rc;
}


/* the failure is recorded, or not: the answer is STS's either way */

static ngx_int_t
ngx_http_monetize_aws_failed(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(r->connection->log, q);
    }

    return ngx_http_monetize_aws_refusal(r, ctx->data);
}


static ngx_int_t
ngx_http_monetize_aws_refusal(ngx_http_request_t *r,
    ngx_http_monetize_aws_t *aws)
{
    if (aws->result == NGX_HTTP_MONETIZE_STS_UNAVAILABLE) {
        return ngx_http_monetize_api_unavailable(r, "AWS STS");
    }

    return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                        "upstream_error",
                                        "AWS refused to issue the "
                                        "credentials; the operator will "
                                        "find why in the error log");
}
