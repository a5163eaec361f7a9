
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_stripe.h"


/*
 * The Stripe client, as Stripe's own libraries call its API: form-encoded
 * requests, a Bearer key, a pinned Stripe-Version, an Idempotency-Key on
 * every POST (the same on every try, so a retry never makes a second
 * object), and retries with a jittered exponential backoff on what may
 * pass (no answer, 409, 429, 5xx), never on another 4xx. Each try is a
 * transfer of the outbound client on the worker's events.
 */


#define NGX_HTTP_MONETIZE_STRIPE_VERSION     "2024-06-20"
#define NGX_HTTP_MONETIZE_STRIPE_BACKOFF     500       /* the first, ms */
#define NGX_HTTP_MONETIZE_STRIPE_BACKOFF_MAX 5000
#define NGX_HTTP_MONETIZE_STRIPE_RETRY_MAX   60000     /* of Retry-After */
#define NGX_HTTP_MONETIZE_STRIPE_ANSWER_MAX  (1024 * 1024)


static ngx_int_t ngx_http_monetize_stripe_try(
    ngx_http_monetize_stripe_call_t *sc);
static void ngx_http_monetize_stripe_answered(ngx_http_monetize_curl_t *t,
    CURLcode rc);
static void ngx_http_monetize_stripe_finish(
    ngx_http_monetize_stripe_call_t *sc, ngx_uint_t result);
static void ngx_http_monetize_stripe_log_error(
    ngx_http_monetize_stripe_call_t *sc, ngx_uint_t level);
static void ngx_http_monetize_stripe_retry(ngx_event_t *ev);
static void ngx_http_monetize_stripe_cleanup(void *data);
static size_t ngx_http_monetize_stripe_write(char *buf, size_t size,
    size_t nitems, void *data);
static size_t ngx_http_monetize_stripe_header(char *buf, size_t size,
    size_t nitems, void *data);
static u_char *ngx_http_monetize_stripe_escape(u_char *dst, u_char *src,
    size_t len, ngx_uint_t name);


ngx_http_monetize_stripe_call_t *
ngx_http_monetize_stripe_call(ngx_pool_t *pool, ngx_log_t *log,
    ngx_uint_t method, const char *path, ngx_str_t *idempotency_key)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_monetize_stripe_call_t  *sc;

    if (method != NGX_HTTP_GET && method != NGX_HTTP_POST) {
        return NULL;
    }

    if (method == NGX_HTTP_POST
        && (idempotency_key == NULL || idempotency_key->len == 0))
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "monetize: a Stripe POST %s without an idempotency "
                      "key", path);
        return NULL;
    }

    sc = ngx_pcalloc(pool, sizeof(ngx_http_monetize_stripe_call_t));
    if (sc == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_monetize_stripe_cleanup;
    cln->data = sc;

    sc->pool = pool;
    sc->log = log;
    sc->method = method;
    sc->path.data = (u_char *) path;
    sc->path.len = ngx_strlen(path);

    if (idempotency_key) {
        sc->idempotency_key.data = (u_char *)
            ngx_http_monetize_stripe_cstr(pool, idempotency_key);
        if (sc->idempotency_key.data == NULL) {
            return NULL;
        }

        sc->idempotency_key.len = idempotency_key->len;
    }

    if (ngx_array_init(&sc->form, pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NULL;
    }

    sc->backoff.handler = ngx_http_monetize_stripe_retry;
    sc->backoff.data = sc;
    sc->backoff.log = log;
    /* not cancelable: a request's call ends (at most a minute) */

    return sc;
}


/*
 * One field, "name=value", percent-encoded as Stripe's libraries do: the
 * brackets of nested names ("metadata[user_id]", "line_items[0][price]")
 * stay as they are.
 */

ngx_int_t
ngx_http_monetize_stripe_param(ngx_http_monetize_stripe_call_t *sc,
    const char *name, ngx_str_t *value)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *f;

    len = ngx_strlen(name);

    f = ngx_array_push(&sc->form);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->data = ngx_pnalloc(sc->pool, 3 * (len + value->len) + 1);
    if (f->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_monetize_stripe_escape(f->data, (u_char *) name, len, 1);
    *p++ = '=';
    p = ngx_http_monetize_stripe_escape(p, value->data, value->len, 0);

    f->len = p - f->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_stripe_start(ngx_http_monetize_stripe_conf_t *conf,
    ngx_http_monetize_stripe_call_t *sc)
{
    CURL               *e;
    u_char             *p;
    size_t              len;
    ngx_str_t          *f;
    ngx_uint_t          i;
    struct curl_slist  *h;

    if (conf == NULL) {
        ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                      "monetize: Stripe is not configured "
                      "(monetize_stripe)");
        return NGX_ERROR;
    }

    sc->conf = conf;

    /* the form: the body of a POST, the query of a GET */

    len = 0;
    f = sc->form.elts;

    for (i = 0; i < sc->form.nelts; i++) {
        len += f[i].len + 1;
    }

    sc->body.data = ngx_pnalloc(sc->pool, len + 1);
    if (sc->body.data == NULL) {
        return NGX_ERROR;
    }

    p = sc->body.data;

    for (i = 0; i < sc->form.nelts; i++) {
        if (i) {
            *p++ = '&';
        }

        p = ngx_cpymem(p, f[i].data, f[i].len);
    }

    *p = '\0';
    sc->body.len = p - sc->body.data;

    len = conf->api_base.len + sc->path.len + 1 + sc->body.len + 1;

    sc->url.data = ngx_pnalloc(sc->pool, len);
    if (sc->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(sc->url.data, conf->api_base.data, conf->api_base.len);
    p = ngx_cpymem(p, sc->path.data, sc->path.len);

    if (sc->method == NGX_HTTP_GET && sc->body.len) {
        *p++ = '?';
        p = ngx_cpymem(p, sc->body.data, sc->body.len);
    }

    *p = '\0';
    sc->url.len = p - sc->url.data;

    sc->curl = ngx_http_monetize_curl_create(sc->pool, sc->log);
    if (sc->curl == NULL) {
        return NGX_ERROR;
    }

    /* libcurl copies each line: the key stays in conf's memory only */

    h = curl_slist_append(NULL, (char *) conf->auth.data);
    h = h ? curl_slist_append(h, (char *) conf->version_header.data) : NULL;
    h = h ? curl_slist_append(h, "User-Agent: nginx-monetize") : NULL;
    h = h ? curl_slist_append(h, "Accept: application/json") : NULL;
    h = h ? curl_slist_append(h, "Expect:") : NULL;

    if (h && sc->method == NGX_HTTP_POST) {
        h = curl_slist_append(h, "Content-Type: "
                                 "application/x-www-form-urlencoded");

        p = ngx_pnalloc(sc->pool, sizeof("Idempotency-Key: ")
                                  + sc->idempotency_key.len);
        if (p == NULL) {
            curl_slist_free_all(h);
            return NGX_ERROR;
        }

        ngx_sprintf(p, "Idempotency-Key: %V%Z", &sc->idempotency_key);

        h = h ? curl_slist_append(h, (char *) p) : NULL;
    }

    h = ngx_http_monetize_curl_list(sc->curl, h);
    if (h == NULL) {
        return NGX_ERROR;
    }

    e = sc->curl->easy;

    if (curl_easy_setopt(e, CURLOPT_URL, sc->url.data) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_WRITEFUNCTION,
                            ngx_http_monetize_stripe_write)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_WRITEDATA, sc) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_HEADERFUNCTION,
                            ngx_http_monetize_stripe_header)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_HEADERDATA, sc) != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, sc->log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NGX_ERROR;
    }

    if (sc->method == NGX_HTTP_POST) {
        if (curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                                (long) sc->body.len)
               != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_POSTFIELDS, sc->body.data)
               != CURLE_OK)
        {
            ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                          "monetize: curl_easy_setopt() failed");
            return NGX_ERROR;
        }
    }

    sc->curl->handler = ngx_http_monetize_stripe_answered;
    sc->curl->data = sc;

    return ngx_http_monetize_stripe_try(sc);
}


static ngx_int_t
ngx_http_monetize_stripe_try(ngx_http_monetize_stripe_call_t *sc)
{
    sc->tries++;
    sc->status = 0;
    sc->answer_len = 0;
    sc->retry_after = 0;
    sc->should_retry = 0;

    if (sc->json) {
        json_decref(sc->json);
        sc->json = NULL;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, sc->log, 0,
                   "monetize: stripe %s %V, try %ui of %ui",
                   sc->method == NGX_HTTP_POST ? "POST" : "GET", &sc->path,
                   sc->tries, sc->conf->tries);

    return ngx_http_monetize_curl_start(sc->curl, sc->conf->timeout);
}


static void
ngx_http_monetize_stripe_answered(ngx_http_monetize_curl_t *t, CURLcode rc)
{
    ngx_http_monetize_stripe_call_t *sc = t->data;

    long          code;
    ngx_msec_t    delay;
    json_error_t  err;

    code = 0;

    if (rc == CURLE_OK) {
        (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
        sc->status = (ngx_uint_t) code;

        if (sc->answer_len) {
            sc->json = json_loadb((char *) sc->answer, sc->answer_len, 0,
                                  &err);
        }

        if (code >= 200 && code < 300) {
            if (sc->json == NULL) {
                ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                              "monetize: stripe %s %V: %l without JSON",
                              sc->method == NGX_HTTP_POST ? "POST" : "GET",
                              &sc->path, code);
                ngx_http_monetize_stripe_finish(sc,
                                       NGX_HTTP_MONETIZE_STRIPE_UNAVAILABLE);
                return;
            }

            ngx_http_monetize_stripe_finish(sc, NGX_HTTP_MONETIZE_STRIPE_OK);
            return;
        }

        if (code >= 400 && code < 500 && code != 409 && code != 429) {
            ngx_http_monetize_stripe_log_error(sc, NGX_LOG_WARN);
            ngx_http_monetize_stripe_finish(sc,
                                         NGX_HTTP_MONETIZE_STRIPE_REFUSED);
            return;
        }

        ngx_http_monetize_stripe_log_error(sc, NGX_LOG_WARN);

    } else {
        ngx_log_error(NGX_LOG_WARN, sc->log, 0,
                      "monetize: stripe %s %V: no answer (try %ui of %ui): "
                      "%s", sc->method == NGX_HTTP_POST ? "POST" : "GET",
                      &sc->path, sc->tries, sc->conf->tries,
                      t->error[0] ? t->error : curl_easy_strerror(rc));
    }

    /* Stripe's own word on a retry wins, as in its libraries */

    if (sc->tries >= sc->conf->tries || sc->should_retry == 2) {
        ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                      "monetize: stripe %s %V: unavailable after %ui tries",
                      sc->method == NGX_HTTP_POST ? "POST" : "GET",
                      &sc->path, sc->tries);
        ngx_http_monetize_stripe_finish(sc,
                                       NGX_HTTP_MONETIZE_STRIPE_UNAVAILABLE);
        return;
    }

    /* exponential, halved at random: workers do not retry in step */

    delay = NGX_HTTP_MONETIZE_STRIPE_BACKOFF << (sc->tries - 1);
    delay = ngx_min(delay, NGX_HTTP_MONETIZE_STRIPE_BACKOFF_MAX);
    delay = delay / 2 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);

    if (sc->retry_after > delay) {
        delay = ngx_min(sc->retry_after,
                        NGX_HTTP_MONETIZE_STRIPE_RETRY_MAX);
    }

    ngx_add_timer(&sc->backoff, delay);
}


static void
ngx_http_monetize_stripe_retry(ngx_event_t *ev)
{
    ngx_http_monetize_stripe_call_t *sc = ev->data;

    if (ngx_http_monetize_stripe_try(sc) != NGX_OK) {
        ngx_http_monetize_stripe_finish(sc,
                                       NGX_HTTP_MONETIZE_STRIPE_UNAVAILABLE);
    }
}


static void
ngx_http_monetize_stripe_finish(ngx_http_monetize_stripe_call_t *sc,
    ngx_uint_t result)
{
    sc->result = result;
    sc->done = 1;

    sc->handler(sc);
}


/*
 * Stripe's error object, {"error": {"type", "code", "message"}}: its
 * message may quote what was sent, so a message naming the key is not
 * logged.
 */

static void
ngx_http_monetize_stripe_log_error(ngx_http_monetize_stripe_call_t *sc,
    ngx_uint_t level)
{
    u_char       text[512];
    size_t       i, len;
    json_t      *e;
    const char  *type, *code, *message;

    type = "";
    code = "";
    message = "";

    e = sc->json ? json_object_get(sc->json, "error") : NULL;

    if (json_is_object(e)) {
        type = json_string_value(json_object_get(e, "type"));
        code = json_string_value(json_object_get(e, "code"));
        message = json_string_value(json_object_get(e, "message"));

        type = type ? type : "";
        code = code ? code : "";
        message = message ? message : "";
    }

    len = ngx_strlen(message);

    if (sc->conf->secret.len
        && ngx_strlcasestrn((u_char *) message, (u_char *) message + len,
                            sc->conf->secret.data,
                            sc->conf->secret.len - 1)
           != NULL)
    {
        message = "(withheld: it quotes the key)";
        len = ngx_strlen(message);
    }

    /* one line of the log, whatever the message holds */

    len = ngx_min(len, sizeof(text) - 1);

    for (i = 0; i < len; i++) {
        text[i] = ((u_char) message[i] < 0x20 || message[i] == '"')
                  ? ' ' : (u_char) message[i];
    }

    text[len] = '\0';

    ngx_log_error(level, sc->log, 0,
                  "monetize: stripe %s %V: %ui (try %ui of %ui) "
                  "type=\"%s\" code=\"%s\" message=\"%s\"",
                  sc->method == NGX_HTTP_POST ? "POST" : "GET", &sc->path,
                  sc->status, sc->tries, sc->conf->tries, type, code,
                  text);
}


/* the owner's pool goes: no retry, no handler */

static void
ngx_http_monetize_stripe_cleanup(void *data)
{
    ngx_http_monetize_stripe_call_t *sc = data;

    if (sc->backoff.timer_set) {
        ngx_del_timer(&sc->backoff);
    }

    if (sc->json) {
        json_decref(sc->json);
        sc->json = NULL;
    }
}


static size_t
ngx_http_monetize_stripe_write(char *buf, size_t size, size_t nitems,
    void *data)
{
    ngx_http_monetize_stripe_call_t *sc = data;

    size_t  n;

    n = size * nitems;

    if (ngx_http_monetize_curl_append(sc->pool, &sc->answer,
                                      &sc->answer_len, &sc->answer_cap,
                                      NGX_HTTP_MONETIZE_STRIPE_ANSWER_MAX, 0,
                                      buf, n)
        != NGX_OK)
    {
        return 0;
    }

    return n;
}


static size_t
ngx_http_monetize_stripe_header(char *buf, size_t size, size_t nitems,
    void *data)
{
    ngx_http_monetize_stripe_call_t *sc = data;

    u_char     *p, *last;
    size_t      n;
    ngx_int_t   secs;

    n = size * nitems;
    p = (u_char *) buf;
    last = p + n;

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' '))
    {
        last--;
    }

    if (last - p > 12
        && ngx_strncasecmp(p, (u_char *) "Retry-After:", 12) == 0)
    {
        p += 12;

        while (p < last && *p == ' ') {
            p++;
        }

        secs = ngx_atoi(p, last - p);

        if (secs != NGX_ERROR) {
            sc->retry_after = (ngx_msec_t) ngx_min(secs, 3600) * 1000;
        }

    } else if (last - p > 20
               && ngx_strncasecmp(p, (u_char *) "Stripe-Should-Retry:", 20)
                  == 0)
    {
        p += 20;

        while (p < last && *p == ' ') {
            p++;
        }

        if (last - p == 5 && ngx_strncmp(p, "false", 5) == 0) {
            sc->should_retry = 2;

        } else if (last - p == 4 && ngx_strncmp(p, "true", 4) == 0) {
            sc->should_retry = 1;
        }
    }

    return n;
}


static u_char *
ngx_http_monetize_stripe_escape(u_char *dst, u_char *src, size_t len,
    ngx_uint_t name)
{
    u_char          c;
    static u_char   hex[] = "0123456789ABCDEF";

    while (len--) {
        c = *src++;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~' || (name && (c == '[' || c == ']')))
        {
            *dst++ = c;
            continue;
        }

        *dst++ = '%';
        *dst++ = hex[c >> 4];
        *dst++ = hex[c & 0xf];
    }

    return dst;
}


/* a NUL-terminated copy, for libcurl and libpq */

char *
ngx_http_monetize_stripe_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}



/*
 * monetize_stripe secret_key=SECRET|env:NAME [api_base=URL] [timeout=T]
 *     [api_version=V] [tries=N]
 */

char *
ngx_http_monetize_stripe_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char                             *rv;
    u_char                           *p, *last;
    ngx_str_t                        *value, s, secret;
    ngx_int_t                         n;
    ngx_uint_t                        i;
    ngx_http_monetize_stripe_conf_t  *sc;

    if (mcf->stripe) {
        return "is duplicate";
    }

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_stripe_conf_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&sc->api_base, "https://api.stripe.com");
    ngx_str_set(&sc->api_version, NGX_HTTP_MONETIZE_STRIPE_VERSION);
    sc->timeout = 30000;
    sc->tries = 3;
    ngx_str_null(&secret);

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret_key=", 11) == 0
            && value[i].len > 11)
        {
            s.data = value[i].data + 11;
            s.len = value[i].len - 11;

            rv = ngx_http_monetize_conf_secret(cf, &s, &secret);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "api_base=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            while (s.len && s.data[s.len - 1] == '/') {
                s.len--;
            }

            if (!((s.len > 7 && ngx_strncmp(s.data, "http://", 7) == 0)
                  || (s.len > 8 && ngx_strncmp(s.data, "https://", 8) == 0))
                || ngx_strlchr(s.data, s.data + s.len, '?')
                || ngx_strlchr(s.data, s.data + s.len, ' '))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_stripe: invalid \"%V\", give "
                                   "api_base=https://host[:port]",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            sc->api_base = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            sc->timeout = ngx_parse_time(&s, 0);

            if (sc->timeout == (ngx_msec_t) NGX_ERROR || sc->timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_stripe: invalid \"%V\", give a "
                                   "time such as timeout=30s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "api_version=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            last = s.data + s.len;

            for (p = s.data; p < last; p++) {
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
                      || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.'
                      || *p == '_'))
                {
                    break;
                }
            }

            if (s.len == 0 || s.len > 64 || p != last) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_stripe: invalid \"%V\", give a "
                                   "Stripe API version such as "
                                   "api_version=%s", &value[i],
                                   NGX_HTTP_MONETIZE_STRIPE_VERSION);
                return NGX_CONF_ERROR;
            }

            sc->api_version = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tries=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n < 1 || n > 10) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_stripe: invalid \"%V\", give "
                                   "tries=1 to tries=10", &value[i]);
                return NGX_CONF_ERROR;
            }

            sc->tries = (ngx_uint_t) n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_stripe: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_stripe: secret_key= is required");
        return NGX_CONF_ERROR;
    }

    /* the key goes into a header line: nothing that could end it */

    for (i = 0; i < secret.len; i++) {
        if (secret.data[i] <= 0x20 || secret.data[i] >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_stripe: the secret key has a "
                               "space or control character");
            return NGX_CONF_ERROR;
        }
    }

    sc->secret = secret;

    sc->auth.data = ngx_pnalloc(cf->pool, sizeof("Authorization: Bearer ")
                                          + secret.len);
    sc->version_header.data = ngx_pnalloc(cf->pool, sizeof("Stripe-Version: ")
                                                    + sc->api_version.len);
    if (sc->auth.data == NULL || sc->version_header.data == NULL) {
        return NGX_CONF_ERROR;
    }

    sc->auth.len = ngx_sprintf(sc->auth.data, "Authorization: Bearer %V%Z",
                               &secret)
                   - sc->auth.data - 1;
    sc->version_header.len = ngx_sprintf(sc->version_header.data,
                                         "Stripe-Version: %V%Z",
                                         &sc->api_version)
                             - sc->version_header.data - 1;

    if (ngx_http_monetize_curl_check(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mcf->stripe = sc;

    return NGX_CONF_OK;
}
