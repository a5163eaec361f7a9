
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_stripe.h"


/*
 * Each user's one Stripe customer: read from users.stripe_customer_id,
 * else made through the client (Idempotency-Key "customer-<user id>", the
 * same for the registration's job and for a caller that needs it at once,
 * so both make the same one) and stored once.
 */


typedef struct {
    ngx_http_monetize_stripe_conf_t   *conf;
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_pool_t                        *pool;
    ngx_log_t                         *log;
    ngx_str_t                          user_id;    /* NUL-terminated */
    ngx_str_t                          customer;   /* NUL-terminated */
    void                             (*handler)(void *data, ngx_int_t rc,
                                          ngx_str_t *customer_id);
    void                              *data;
} ngx_http_monetize_stripe_customer_t;


static void ngx_http_monetize_stripe_customer_read(
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_stripe_customer_made(
    ngx_http_monetize_stripe_call_t *sc);
static void ngx_http_monetize_stripe_customer_stored(
    ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_stripe_customer_job_done(void *data,
    ngx_int_t rc, ngx_str_t *customer_id);


/*
 * The customer: read, else made and stored once. Every step lives in the
 * caller's pool, so a caller that goes takes the steps with it.
 */

ngx_int_t
ngx_http_monetize_stripe_customer(ngx_http_monetize_stripe_conf_t *conf,
    ngx_http_monetize_pg_pool_t *pg, ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *user_id,
    void (*handler)(void *data, ngx_int_t rc, ngx_str_t *customer_id),
    void *data)
{
    ngx_http_monetize_pg_query_t         *q;
    ngx_http_monetize_stripe_customer_t  *cu;

    if (conf == NULL || pg == NULL || user_id->len == 0) {
        return NGX_ERROR;
    }

    cu = ngx_pcalloc(pool, sizeof(ngx_http_monetize_stripe_customer_t));
    if (cu == NULL) {
        return NGX_ERROR;
    }

    cu->conf = conf;
    cu->pg = pg;
    cu->pool = pool;
    cu->log = log;
    cu->handler = handler;
    cu->data = data;

    cu->user_id.data = (u_char *) ngx_http_monetize_stripe_cstr(pool,
                                                                user_id);
    if (cu->user_id.data == NULL) {
        return NGX_ERROR;
    }

    cu->user_id.len = user_id->len;

    q = ngx_http_monetize_pg_query_create(pool, 1);
    if (q == NULL) {
        return NGX_ERROR;
    }

    q->sql = "SELECT stripe_customer_id, email, name"
             "  FROM monetize_stripe_customer_get($1)";
    q->params[0] = (char *) cu->user_id.data;
    q->handler = ngx_http_monetize_stripe_customer_read;
    q->data = cu;

    return ngx_http_monetize_pg_send(pg, q);
}


static void
ngx_http_monetize_stripe_customer_read(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_stripe_customer_t *cu = q->data;

    ngx_str_t                         id, email, name, key;
    ngx_http_monetize_stripe_call_t  *sc;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(cu->log, q);
        }

        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    if (PQntuples(q->result) == 0) {
        /* the account is gone */
        cu->handler(cu->data, NGX_DECLINED, NULL);
        return;
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &id) == NGX_OK && id.len) {
        cu->customer.data = (u_char *) ngx_http_monetize_stripe_cstr(
                                                                cu->pool, &id);
        if (cu->customer.data == NULL) {
            cu->handler(cu->data, NGX_ERROR, NULL);
            return;
        }

        cu->customer.len = id.len;
        cu->handler(cu->data, NGX_OK, &cu->customer);
        return;
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 1, &email) != NGX_OK) {
        ngx_str_null(&email);
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 2, &name) != NGX_OK) {
        ngx_str_null(&name);
    }

    /* the registration's job uses the same key: one customer either way */

    key.data = ngx_pnalloc(cu->pool, sizeof("customer-") + cu->user_id.len);
    if (key.data == NULL) {
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    key.len = ngx_sprintf(key.data, "customer-%V", &cu->user_id) - key.data;

    sc = ngx_http_monetize_stripe_call(cu->pool, cu->log, NGX_HTTP_POST,
                                       "/v1/customers", &key);

    if (sc == NULL
        || (email.len
            && ngx_http_monetize_stripe_param(sc, "email", &email) != NGX_OK)
        || (name.len
            && ngx_http_monetize_stripe_param(sc, "name", &name) != NGX_OK)
        || ngx_http_monetize_stripe_param(sc, "metadata[user_id]",
                                          &cu->user_id)
           != NGX_OK)
    {
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    sc->handler = ngx_http_monetize_stripe_customer_made;
    sc->data = cu;

    if (ngx_http_monetize_stripe_start(cu->conf, sc) != NGX_OK) {
        cu->handler(cu->data, NGX_ERROR, NULL);
    }
}


static void
ngx_http_monetize_stripe_customer_made(ngx_http_monetize_stripe_call_t *sc)
{
    ngx_http_monetize_stripe_customer_t *cu = sc->data;

    const char                    *id, *type;
    ngx_str_t                      s;
    ngx_http_monetize_pg_query_t  *q;

    /*
     * Not for good: a key refused (401, 403), which the operator fixes;
     * an idempotency_error, the key's first request made with an address
     * or name changed since (Stripe forgets the key after a day, and
     * whether that first request made a customer is unknown until then).
     */

    if (sc->result != NGX_HTTP_MONETIZE_STRIPE_OK) {
        type = json_string_value(json_object_get(
                                 json_object_get(sc->json, "error"), "type"));

        cu->handler(cu->data, (sc->result == NGX_HTTP_MONETIZE_STRIPE_REFUSED
                               && sc->status != 401 && sc->status != 403
                               && (type == NULL
                                   || ngx_strcmp(type, "idempotency_error")
                                      != 0))
                              ? NGX_DECLINED : NGX_ERROR, NULL);
        return;
    }

    id = json_string_value(json_object_get(sc->json, "id"));

    if (id == NULL || *id == '\0') {
        ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                      "monetize: stripe POST /v1/customers: no \"id\" in "
                      "the answer");
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    s.data = (u_char *) id;
    s.len = ngx_strlen(id);

    q = ngx_http_monetize_pg_query_create(cu->pool, 2);
    if (q == NULL) {
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    q->params[0] = (char *) cu->user_id.data;
    q->params[1] = ngx_http_monetize_stripe_cstr(cu->pool, &s);

    if (q->params[1] == NULL) {
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    q->sql = "SELECT monetize_stripe_customer_set($1, $2)";
    q->handler = ngx_http_monetize_stripe_customer_stored;
    q->data = cu;

    if (ngx_http_monetize_pg_send(cu->pg, q) != NGX_OK) {
        cu->handler(cu->data, NGX_ERROR, NULL);
    }
}


static void
ngx_http_monetize_stripe_customer_stored(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_stripe_customer_t *cu = q->data;

    ngx_str_t  id;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK) {
        if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
            ngx_http_monetize_pg_log_refused(cu->log, q);
        }

        /* Stripe keeps the key's answer: a retry stores the same one */
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &id) != NGX_OK || id.len == 0) {
        cu->handler(cu->data, NGX_DECLINED, NULL);
        return;
    }

    cu->customer.data = (u_char *) ngx_http_monetize_stripe_cstr(cu->pool,
                                                                 &id);
    if (cu->customer.data == NULL) {
        cu->handler(cu->data, NGX_ERROR, NULL);
        return;
    }

    cu->customer.len = id.len;

    ngx_log_error(NGX_LOG_INFO, cu->log, 0,
                  "monetize: user %V: Stripe customer %V", &cu->user_id,
                  &cu->customer);

    cu->handler(cu->data, NGX_OK, &cu->customer);
}


void
ngx_http_monetize_stripe_customer_job(ngx_http_monetize_job_t *job)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_monetize_module);

    if (job->user_id.len == 0) {
        ngx_http_monetize_job_done(job, NGX_DECLINED, "no user");
        return;
    }

    if (ngx_http_monetize_stripe_customer(mcf->stripe, mcf->pg, job->pool,
                                          job->log, &job->user_id,
                                   ngx_http_monetize_stripe_customer_job_done,
                                          job)
        != NGX_OK)
    {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "could not be started");
    }
}


static void
ngx_http_monetize_stripe_customer_job_done(void *data, ngx_int_t rc,
    ngx_str_t *customer_id)
{
    ngx_http_monetize_job_t *job = data;

    if (rc == NGX_OK) {
        ngx_http_monetize_job_done(job, NGX_OK, NULL);

    } else if (rc == NGX_DECLINED) {
        ngx_http_monetize_job_done(job, NGX_DECLINED,
                                   "Stripe refused the customer, or the "
                                   "account is gone");

    } else {
        ngx_http_monetize_job_done(job, NGX_AGAIN,
                                   "Stripe or PostgreSQL unavailable");
    }
}
