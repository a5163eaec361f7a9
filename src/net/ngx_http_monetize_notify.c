
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_notify.h"
#include "ngx_http_monetize_curl.h"


/*
 * The operator's webhook: the "notify" jobs (queued by the alert sweep,
 * sql/014_alerts.sql) POST their event as JSON, signed the way Stripe
 * signs its own, "Monetize-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>">", so that Stripe's verification code works unchanged. Each
 * try is signed anew (a receiver refuses old timestamps); the event's id
 * stays the same, for the receiver to drop a repeat. Anything but a 2xx
 * answer is tried again later by the jobs runner.
 */


typedef struct {
    ngx_http_monetize_job_t           *job;
    ngx_str_t                          event;      /* its id, for the log */
} ngx_http_monetize_notify_ctx_t;


static void ngx_http_monetize_notify_done(ngx_http_monetize_curl_t *t,
    CURLcode rc);


void
ngx_http_monetize_notify_job(ngx_http_monetize_job_t *job)
{
    char                              *dump;
    u_char                            *p;
    time_t                             now;
    json_t                            *id;
    ngx_str_t                          body;
    struct curl_slist                 *headers;
    ngx_http_monetize_curl_t          *t;
    ngx_http_monetize_notify_ctx_t    *ctx;
    ngx_http_monetize_main_conf_t     *mcf;
    ngx_http_monetize_notify_conf_t   *nc;
    u_char                             sig[NGX_HTTP_MONETIZE_NOTIFY_SIG_LEN];

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_monetize_module);
    nc = mcf->notify;

    if (nc == NULL) {
        ngx_http_monetize_job_done(job, NGX_AGAIN,
                                   "monetize_notify is not configured");
        return;
    }

    ctx = ngx_pcalloc(job->pool, sizeof(ngx_http_monetize_notify_ctx_t));
    if (ctx == NULL) {
        goto failed;
    }

    ctx->job = job;

    id = json_object_get(job->payload, "id");

    if (json_is_string(id)) {
        ctx->event.len = json_string_length(id);
        ctx->event.data = ngx_pnalloc(job->pool, ctx->event.len);
        if (ctx->event.data == NULL) {
            goto failed;
        }

        ngx_memcpy(ctx->event.data, json_string_value(id), ctx->event.len);

    } else {
        ngx_str_set(&ctx->event, "(no id)");
    }

    /* sorted keys: every try of an event sends the same bytes */

    dump = json_dumps(job->payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (dump == NULL) {
        goto failed;
    }

    body.len = ngx_strlen(dump);
    body.data = ngx_pnalloc(job->pool, body.len);

    if (body.data == NULL) {
        free(dump);
        goto failed;
    }

    ngx_memcpy(body.data, dump, body.len);
    free(dump);

    now = ngx_time();

    if (ngx_http_monetize_notify_sign(&nc->secret, now, &body, sig)
        != NGX_OK)
    {
        goto failed;
    }

    p = ngx_pnalloc(job->pool, sizeof("Monetize-Signature: t=,v1=")
                               + NGX_TIME_T_LEN
                               + NGX_HTTP_MONETIZE_NOTIFY_SIG_LEN);
    if (p == NULL) {
        goto failed;
    }

    ngx_sprintf(p, "Monetize-Signature: t=%T,v1=%*s%Z", now,
                (size_t) NGX_HTTP_MONETIZE_NOTIFY_SIG_LEN, sig);

    t = ngx_http_monetize_curl_create(job->pool, job->log);
    if (t == NULL) {
        goto failed;
    }

    headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = headers ? curl_slist_append(headers, (char *) p) : NULL;
    headers = headers ? curl_slist_append(headers,
                                          "User-Agent: nginx-monetize")
                      : NULL;
    /* no "Expect: 100-continue" round trip */
    headers = headers ? curl_slist_append(headers, "Expect:") : NULL;

    if (ngx_http_monetize_curl_list(t, headers) == NULL) {
        goto failed;
    }

    if (curl_easy_setopt(t->easy, CURLOPT_URL, nc->url.data) != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, headers)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long) body.len)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, body.data)
           != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, job->log, 0,
                      "monetize: curl_easy_setopt() failed");
        goto failed;
    }

    t->handler = ngx_http_monetize_notify_done;
    t->data = ctx;

    if (ngx_http_monetize_curl_start(t, nc->timeout) != NGX_OK) {
        goto failed;
    }

    return;

failed:

    ngx_http_monetize_job_done(job, NGX_AGAIN,
                               "the webhook could not be started");
}


static void
ngx_http_monetize_notify_done(ngx_http_monetize_curl_t *t, CURLcode rc)
{
    ngx_http_monetize_notify_ctx_t *ctx = t->data;

    long                            status;
    u_char                         *p;
    ngx_http_monetize_job_t        *job;
    ngx_http_monetize_main_conf_t  *mcf;

    job = ctx->job;
    status = 0;

    if (rc == CURLE_OK
        && curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status)
           == CURLE_OK
        && status >= 200 && status < 300)
    {
        ngx_log_error(NGX_LOG_INFO, job->log, 0,
                      "monetize: notify: event %V delivered (%l)",
                      &ctx->event, status);
        ngx_http_monetize_job_done(job, NGX_OK, NULL);
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_monetize_module);

    p = ngx_pnalloc(job->pool, CURL_ERROR_SIZE + sizeof("HTTP "));
    if (p == NULL) {
        ngx_http_monetize_job_done(job, NGX_AGAIN, "not delivered");
        return;
    }

    if (rc == CURLE_OK) {
        ngx_sprintf(p, "HTTP %l%Z", status);

    } else {
        ngx_sprintf(p, "%s%Z", t->error[0] ? t->error
                                           : curl_easy_strerror(rc));
    }

    ngx_log_error(NGX_LOG_WARN, job->log, 0,
                  "monetize: notify: event %V not delivered to \"%s\" "
                  "(attempt %ui): %s", &ctx->event,
                  mcf->notify ? (char *) mcf->notify->url.data : "",
                  job->attempt, p);

    ngx_http_monetize_job_done(job, NGX_AGAIN, (char *) p);
}


/* hex HMAC-SHA256 of "<t>.<body>", as Stripe's v1 scheme */

ngx_int_t
ngx_http_monetize_notify_sign(ngx_str_t *secret, time_t t, ngx_str_t *body,
    u_char *hex)
{
    u_char         ts[NGX_TIME_T_LEN + 1];
    u_char         md[EVP_MAX_MD_SIZE];
    size_t         len;
    unsigned int   mdlen;
    HMAC_CTX      *h;
    ngx_int_t      rc;

    len = ngx_sprintf(ts, "%T.", t) - ts;

    h = HMAC_CTX_new();
    if (h == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (HMAC_Init_ex(h, secret->data, (int) secret->len, EVP_sha256(), NULL)
        && HMAC_Update(h, ts, len)
        && HMAC_Update(h, body->data, body->len)
        && HMAC_Final(h, md, &mdlen)
        && mdlen == NGX_HTTP_MONETIZE_NOTIFY_SIG_LEN / 2)
    {
        ngx_hex_dump(hex, md, mdlen);
        rc = NGX_OK;
    }

    HMAC_CTX_free(h);
    ngx_explicit_memzero(md, sizeof(md));

    return rc;
}


/*
 * monetize_notify url=URL secret=SECRET|env:NAME [timeout=T]
 */

char *
ngx_http_monetize_notify_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char                             *rv;
    ngx_str_t                        *value, s, secret;
    ngx_uint_t                        i;
    ngx_http_monetize_notify_conf_t  *nc;

    if (mcf->notify) {
        return "is duplicate";
    }

    nc = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_notify_conf_t));
    if (nc == NULL) {
        return NGX_CONF_ERROR;
    }

    nc->timeout = 10000;
    ngx_str_null(&secret);

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (!((s.len > 7 && ngx_strncasecmp(s.data, (u_char *) "http://",
                                                7) == 0)
                  || (s.len > 8
                      && ngx_strncasecmp(s.data, (u_char *) "https://", 8)
                         == 0)))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_notify: invalid \"%V\", give "
                                   "url=http://... or url=https://...",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            /* the arguments come NUL-terminated from the parser */
            nc->url = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "secret=", 7) == 0
            && value[i].len > 7)
        {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            rv = ngx_http_monetize_conf_secret(cf, &s, &secret);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            nc->timeout = ngx_parse_time(&s, 0);

            if (nc->timeout == (ngx_msec_t) NGX_ERROR || nc->timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_notify: invalid \"%V\", give a "
                                   "time such as timeout=10s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_notify: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (nc->url.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_notify: url= is required");
        return NGX_CONF_ERROR;
    }

    if (secret.len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_notify: secret= is required, of at "
                           "least 16 characters");
        return NGX_CONF_ERROR;
    }

    nc->secret = secret;

    if (ngx_http_monetize_curl_check(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mcf->notify = nc;

    return NGX_CONF_OK;
}
