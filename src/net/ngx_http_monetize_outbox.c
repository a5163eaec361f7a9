
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_outbox.h"


/*
 * Each worker's sender of the mail_outbox table (sql/008_mail.sql): it
 * claims due rows (FOR UPDATE SKIP LOCKED, so workers and nodes never take
 * the same row), sends each through the outbound client, and marks it sent
 * once, or due again after a backoff. Every claim, mail and mark lives in a
 * pool of its own, which goes when its work is done.
 */


#define NGX_HTTP_MONETIZE_OUTBOX_POLL     2000
#define NGX_HTTP_MONETIZE_OUTBOX_BATCH    10
#define NGX_HTTP_MONETIZE_OUTBOX_LEASE    60000    /* beyond the timeout */
#define NGX_HTTP_MONETIZE_OUTBOX_CLEANUP  3600000


typedef struct {
    ngx_http_monetize_pg_pool_t       *pg;
    ngx_http_monetize_smtp_t          *smtp;
    ngx_event_t                        timer;
    ngx_event_t                        cleanup;
    ngx_uint_t                         jobs;      /* mails in flight */
    ngx_log_t                         *log;
    unsigned                           claiming:1;
} ngx_http_monetize_outbox_t;


typedef struct {
    ngx_pool_t                        *pool;
    ngx_http_monetize_outbox_t        *ob;
    ngx_str_t                          id;
    ngx_int_t                          attempt;
    ngx_http_monetize_mail_t           mail;
} ngx_http_monetize_outbox_job_t;


static void ngx_http_monetize_outbox_tick(ngx_event_t *ev);
static void ngx_http_monetize_outbox_claimed(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_outbox_start(ngx_http_monetize_outbox_t *ob,
    ngx_http_monetize_pg_query_t *q, int row);
static ngx_int_t ngx_http_monetize_outbox_copy(ngx_pool_t *pool,
    ngx_str_t *dst, ngx_str_t *src);
static void ngx_http_monetize_outbox_sent(ngx_http_monetize_curl_t *t,
    CURLcode rc);
static void ngx_http_monetize_outbox_mark(ngx_http_monetize_outbox_job_t *job,
    const char *error);
static void ngx_http_monetize_outbox_marked(ngx_http_monetize_pg_query_t *q);
static void ngx_http_monetize_outbox_clean(ngx_event_t *ev);
static void ngx_http_monetize_outbox_cleaned(ngx_http_monetize_pg_query_t *q);


static ngx_http_monetize_outbox_t  *ngx_http_monetize_outbox;


ngx_int_t
ngx_http_monetize_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_monetize_pg_pool_t *pg, ngx_http_monetize_smtp_t *smtp)
{
    ngx_http_monetize_outbox_t  *ob;

    ob = ngx_pcalloc(cycle->pool, sizeof(ngx_http_monetize_outbox_t));
    if (ob == NULL) {
        return NGX_ERROR;
    }

    ob->pg = pg;
    ob->smtp = smtp;
    ob->log = cycle->log;

    /* neither holds a worker that is shutting down */

    ob->timer.handler = ngx_http_monetize_outbox_tick;
    ob->timer.data = ob;
    ob->timer.log = cycle->log;
    ob->timer.cancelable = 1;

    ob->cleanup.handler = ngx_http_monetize_outbox_clean;
    ob->cleanup.data = ob;
    ob->cleanup.log = cycle->log;
    ob->cleanup.cancelable = 1;

    ngx_add_timer(&ob->timer, 100);
    ngx_add_timer(&ob->cleanup, 1000);

    ngx_http_monetize_outbox = ob;

    return NGX_OK;
}


/* A mail was committed on this worker: look for it now, not at the poll. */

void
ngx_http_monetize_outbox_wake(void)
{
    ngx_http_monetize_outbox_t  *ob;

    ob = ngx_http_monetize_outbox;

    if (ob == NULL || ob->claiming || ngx_exiting) {
        return;
    }

    ngx_add_timer(&ob->timer, 1);
}


void
ngx_http_monetize_outbox_exit(void)
{
    ngx_http_monetize_outbox_t  *ob;

    ob = ngx_http_monetize_outbox;

    if (ob == NULL) {
        return;
    }

    if (ob->timer.timer_set) {
        ngx_del_timer(&ob->timer);
    }

    if (ob->cleanup.timer_set) {
        ngx_del_timer(&ob->cleanup);
    }

    ngx_http_monetize_outbox = NULL;
}


static void
ngx_http_monetize_outbox_tick(ngx_event_t *ev)
{
    u_char                        *p;
    ngx_pool_t                    *pool;
    ngx_http_monetize_outbox_t    *ob;
    ngx_http_monetize_pg_query_t  *q;

    ob = ev->data;

    if (ob->claiming || ngx_exiting) {
        return;
    }

    /* the mails in flight come back here when they are done */

    if (ob->jobs >= NGX_HTTP_MONETIZE_OUTBOX_BATCH) {
        return;
    }

    pool = ngx_create_pool(1024, ob->log);
    if (pool == NULL) {
        goto again;
    }

    q = ngx_http_monetize_pg_query_create(pool, 2);
    p = ngx_pnalloc(pool, 2 * NGX_INT64_LEN + 2);

    if (q == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        goto again;
    }

    q->sql = "SELECT id, to_addr, subject, body_text, body_html, attempts"
             "  FROM monetize_outbox_claim($1, $2)";
    q->params[0] = (char *) p;
    p = ngx_sprintf(p, "%M%Z",
                    ob->smtp->timeout + NGX_HTTP_MONETIZE_OUTBOX_LEASE);
    q->params[1] = (char *) p;
    ngx_sprintf(p, "%ui%Z",
                (ngx_uint_t) NGX_HTTP_MONETIZE_OUTBOX_BATCH - ob->jobs);
    q->handler = ngx_http_monetize_outbox_claimed;
    q->data = pool;

    if (ngx_http_monetize_pg_send(ob->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto again;
    }

    ob->claiming = 1;

    return;

again:

    ngx_add_timer(&ob->timer, NGX_HTTP_MONETIZE_OUTBOX_POLL);
}


static void
ngx_http_monetize_outbox_claimed(ngx_http_monetize_pg_query_t *q)
{
    int                          row, rows;
    ngx_pool_t                  *pool;
    ngx_msec_t                   next;
    ngx_http_monetize_outbox_t  *ob;

    pool = q->data;
    ob = ngx_http_monetize_outbox;

    if (ob == NULL) {
        /* the worker is exiting: the rows' lease ends, others send them */
        ngx_destroy_pool(pool);
        return;
    }

    ob->claiming = 0;
    next = NGX_HTTP_MONETIZE_OUTBOX_POLL;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK) {
        rows = PQntuples(q->result);

        for (row = 0; row < rows; row++) {
            ngx_http_monetize_outbox_start(ob, q, row);
        }

        /* a full batch: more may be due */
        if (rows && ob->jobs < NGX_HTTP_MONETIZE_OUTBOX_BATCH) {
            next = 1;
        }

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ob->log, q);
    }

    ngx_destroy_pool(pool);

    if (!ngx_exiting) {
        ngx_add_timer(&ob->timer, next);
    }
}


static void
ngx_http_monetize_outbox_start(ngx_http_monetize_outbox_t *ob,
    ngx_http_monetize_pg_query_t *q, int row)
{
    int64_t                          attempt;
    ngx_int_t                        rc;
    ngx_str_t                        s[5];
    ngx_uint_t                       i;
    ngx_pool_t                      *pool;
    ngx_http_monetize_outbox_job_t  *job;

    for (i = 0; i < 5; i++) {
        if (ngx_http_monetize_pg_get_str(q, row, i, &s[i]) != NGX_OK) {
            ngx_str_null(&s[i]);
        }
    }

    if (ngx_http_monetize_pg_get_int(q, row, 5, &attempt) != NGX_OK) {
        attempt = 0;
    }

    pool = ngx_create_pool(4096, ob->log);
    if (pool == NULL) {
        return;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_monetize_outbox_job_t));
    if (job == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    job->pool = pool;
    job->ob = ob;
    job->attempt = attempt;

    /* the result goes with the claim's pool: the job keeps copies */

    if (ngx_http_monetize_outbox_copy(pool, &job->id, &s[0]) != NGX_OK
        || ngx_http_monetize_outbox_copy(pool, &job->mail.to, &s[1])
           != NGX_OK
        || ngx_http_monetize_outbox_copy(pool, &job->mail.subject, &s[2])
           != NGX_OK
        || ngx_http_monetize_outbox_copy(pool, &job->mail.text, &s[3])
           != NGX_OK
        || ngx_http_monetize_outbox_copy(pool, &job->mail.html, &s[4])
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    ob->jobs++;

    if (ngx_http_monetize_mail_send(pool, ob->log, ob->smtp, &job->mail,
                                    ngx_http_monetize_outbox_sent, job)
        == NULL)
    {
        rc = NGX_ERROR;

    } else {
        rc = NGX_OK;
    }

    if (rc != NGX_OK) {
        ngx_http_monetize_outbox_mark(job, "the mail could not be started");
    }
}


/* NUL-terminated: the id goes to libpq as a parameter */

static ngx_int_t
ngx_http_monetize_outbox_copy(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t *src)
{
    dst->data = ngx_pnalloc(pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    if (src->len) {
        ngx_memcpy(dst->data, src->data, src->len);
    }

    dst->data[src->len] = '\0';
    dst->len = src->len;

    return NGX_OK;
}


static void
ngx_http_monetize_outbox_sent(ngx_http_monetize_curl_t *t, CURLcode rc)
{
    ngx_http_monetize_outbox_job_t *job = t->data;

    if (rc == CURLE_OK) {
        ngx_log_error(NGX_LOG_INFO, job->ob->log, 0,
                      "monetize: mail #%V sent", &job->id);
        ngx_http_monetize_outbox_mark(job, NULL);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, job->ob->log, 0,
                  "monetize: mail #%V not sent (attempt %i) to \"%s\": %s",
                  &job->id, job->attempt, job->ob->smtp->url.data,
                  t->error[0] ? t->error : curl_easy_strerror(rc));

    ngx_http_monetize_outbox_mark(job, t->error[0] ? t->error
                                                   : curl_easy_strerror(rc));
}


/* Sent (error NULL) or due again later; the job goes with the answer. */

static void
ngx_http_monetize_outbox_mark(ngx_http_monetize_outbox_job_t *job,
    const char *error)
{
    size_t                         len;
    ngx_http_monetize_pg_query_t  *q;

    q = ngx_http_monetize_pg_query_create(job->pool, error ? 2 : 1);
    if (q == NULL) {
        goto failed;
    }

    q->params[0] = (char *) job->id.data;

    if (error) {
        len = ngx_strlen(error);

        q->params[1] = ngx_pnalloc(job->pool, len + 1);
        if (q->params[1] == NULL) {
            goto failed;
        }

        ngx_memcpy((char *) q->params[1], error, len + 1);
        q->sql = "SELECT monetize_outbox_retry($1, $2)";

    } else {
        q->sql = "SELECT monetize_outbox_sent($1)";
    }

    q->handler = ngx_http_monetize_outbox_marked;
    q->data = job;

    if (ngx_http_monetize_pg_send(job->ob->pg, q) == NGX_OK) {
        return;
    }

failed:

    /* the row's lease ends, and it is sent (again) */
    job->ob->jobs--;
    ngx_destroy_pool(job->pool);
}


static void
ngx_http_monetize_outbox_marked(ngx_http_monetize_pg_query_t *q)
{
    ngx_http_monetize_outbox_job_t *job = q->data;

    ngx_http_monetize_outbox_t  *ob;

    ob = job->ob;

    if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ob->log, q);

    } else if (q->status == NGX_HTTP_MONETIZE_PG_UNAVAILABLE) {
        ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                      "monetize: mail #%V: its outcome was not recorded; "
                      "it is due again when its lease ends", &job->id);
    }

    ob->jobs--;
    ngx_destroy_pool(job->pool);

    if (ngx_http_monetize_outbox == ob && ob->jobs == 0 && !ob->claiming
        && !ngx_exiting && !ob->timer.timer_set)
    {
        ngx_add_timer(&ob->timer, NGX_HTTP_MONETIZE_OUTBOX_POLL);
    }
}


static void
ngx_http_monetize_outbox_clean(ngx_event_t *ev)
{
    ngx_pool_t                    *pool;
    ngx_http_monetize_outbox_t    *ob;
    ngx_http_monetize_pg_query_t  *q;

    ob = ev->data;

    if (ngx_exiting) {
        return;
    }

    ngx_add_timer(&ob->cleanup, NGX_HTTP_MONETIZE_OUTBOX_CLEANUP);

    pool = ngx_create_pool(512, ob->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_http_monetize_pg_query_create(pool, 0);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    q->sql = "SELECT mails, tokens FROM monetize_mail_cleanup()";
    q->handler = ngx_http_monetize_outbox_cleaned;
    q->data = pool;

    if (ngx_http_monetize_pg_send(ob->pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_monetize_outbox_cleaned(ngx_http_monetize_pg_query_t *q)
{
    int64_t      mails, tokens;
    ngx_pool_t  *pool;

    pool = q->data;

    if (q->status == NGX_HTTP_MONETIZE_PG_OK
        && ngx_http_monetize_pg_get_int(q, 0, 0, &mails) == NGX_OK
        && ngx_http_monetize_pg_get_int(q, 0, 1, &tokens) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "monetize: mail cleanup: %L old mails, %L old tokens "
                      "deleted", mails, tokens);

    } else if (q->status == NGX_HTTP_MONETIZE_PG_ERROR) {
        ngx_http_monetize_pg_log_refused(ngx_cycle->log, q);
    }

    ngx_destroy_pool(pool);
}
