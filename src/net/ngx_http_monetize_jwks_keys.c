
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_curl.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_jwks_keys.h"


/*
 * The key sets of the identity providers (monetize_jwks), one per worker
 * (ngx_http_monetize_jwks.c says why): fetched through the outbound client
 * or read from a file, parsed into OpenSSL keys, replaced only by a set
 * that parses and holds a usable key, fetched again on the timer.
 */


#define NGX_HTTP_MONETIZE_JWKS_MAX_BODY    (256 * 1024)
#define NGX_HTTP_MONETIZE_JWKS_RETRY       (10 * 1000)


static size_t ngx_http_monetize_jwks_write(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static void ngx_http_monetize_jwks_fetched(ngx_http_monetize_curl_t *t,
    CURLcode rc);
static void ngx_http_monetize_jwks_load_file(ngx_http_monetize_jwks_t *jw);
static ngx_int_t ngx_http_monetize_jwks_install(ngx_http_monetize_jwks_t *jw,
    u_char *body, size_t len);
static void ngx_http_monetize_jwks_keys_cleanup(void *data);
static void ngx_http_monetize_jwks_done(ngx_http_monetize_jwks_t *jw,
    ngx_uint_t ok);
static void ngx_http_monetize_jwks_timer(ngx_event_t *ev);


/* per worker, one for each monetize_jwks, in its order */
static ngx_http_monetize_jwks_t  *ngx_http_monetize_jwks;
static ngx_uint_t                 ngx_http_monetize_jwks_n;


ngx_uint_t
ngx_http_monetize_jwks_configured(void)
{
    return ngx_http_monetize_jwks_n != 0;
}


ngx_http_monetize_jwks_t *
ngx_http_monetize_jwks_of(const char *issuer)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_monetize_jwks_n; i++) {
        if (ngx_strcmp(ngx_http_monetize_jwks[i].conf->issuer.data, issuer)
            == 0)
        {
            return &ngx_http_monetize_jwks[i];
        }
    }

    return NULL;
}


/* The keys: fetched at the worker's start, then on the timer. */

ngx_int_t
ngx_http_monetize_jwks_init_process(ngx_cycle_t *cycle, ngx_array_t *jwks)
{
    ngx_uint_t                      i;
    ngx_http_monetize_jwks_t       *jw;
    ngx_http_monetize_jwks_conf_t  *conf;

    if (jwks == NULL || jwks->nelts == 0) {
        return NGX_OK;
    }

    jw = ngx_pcalloc(cycle->pool,
                     jwks->nelts * sizeof(ngx_http_monetize_jwks_t));
    if (jw == NULL) {
        return NGX_ERROR;
    }

    conf = jwks->elts;

    for (i = 0; i < jwks->nelts; i++) {
        jw[i].conf = &conf[i];
        jw[i].log = cycle->log;
        jw[i].timer.handler = ngx_http_monetize_jwks_timer;
        jw[i].timer.data = &jw[i];
        jw[i].timer.log = cycle->log;
        jw[i].timer.cancelable = 1;
        ngx_queue_init(&jw[i].waiting);
    }

    ngx_http_monetize_jwks = jw;
    ngx_http_monetize_jwks_n = jwks->nelts;

    for (i = 0; i < jwks->nelts; i++) {
        ngx_http_monetize_jwks_fetch(&jw[i]);
    }

    return NGX_OK;
}


void
ngx_http_monetize_jwks_exit_process(void)
{
    ngx_uint_t                 i;
    ngx_http_monetize_jwks_t  *jw;

    for (i = 0; i < ngx_http_monetize_jwks_n; i++) {
        jw = &ngx_http_monetize_jwks[i];

        if (jw->timer.timer_set) {
            ngx_del_timer(&jw->timer);
        }

        if (jw->fetch) {
            ngx_destroy_pool(jw->fetch);
            jw->fetch = NULL;
        }

        if (jw->keys_pool) {
            ngx_destroy_pool(jw->keys_pool);
            jw->keys_pool = NULL;
            jw->keys = NULL;
        }
    }

    ngx_http_monetize_jwks_n = 0;
}


void
ngx_http_monetize_jwks_fetch(ngx_http_monetize_jwks_t *jw)
{
    ngx_pool_t                *pool;
    struct curl_slist         *headers;
    ngx_http_monetize_curl_t  *t;

    if (jw->fetch) {
        return;
    }

    if (jw->timer.timer_set) {
        ngx_del_timer(&jw->timer);
    }

    if (jw->conf->file.len) {
        ngx_http_monetize_jwks_load_file(jw);
        return;
    }

    pool = ngx_create_pool(4096, jw->log);
    if (pool == NULL) {
        ngx_http_monetize_jwks_done(jw, 0);
        return;
    }

    t = ngx_http_monetize_curl_create(pool, jw->log);
    if (t == NULL) {
        goto failed;
    }

    headers = curl_slist_append(NULL, "Accept: application/json");
    headers = headers ? curl_slist_append(headers,
                                          "User-Agent: nginx-monetize")
                      : NULL;

    if (ngx_http_monetize_curl_list(t, headers) == NULL
        || curl_easy_setopt(t->easy, CURLOPT_URL, jw->conf->url.data)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, headers)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION,
                            ngx_http_monetize_jwks_write)
           != CURLE_OK
        || curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, jw) != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, jw->log, 0,
                      "monetize: curl_easy_setopt() failed");
        goto failed;
    }

    t->handler = ngx_http_monetize_jwks_fetched;
    t->data = jw;

    jw->body = NULL;
    jw->len = 0;
    jw->size = 0;
    jw->overflow = 0;
    jw->fetch = pool;

    if (ngx_http_monetize_curl_start(t, jw->conf->timeout) != NGX_OK) {
        jw->fetch = NULL;
        goto failed;
    }

    return;

failed:

    ngx_destroy_pool(pool);
    ngx_http_monetize_jwks_done(jw, 0);
}


static size_t
ngx_http_monetize_jwks_write(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_monetize_jwks_t *jw = userdata;

    size_t  n;

    n = size * nmemb;

    if (jw->len + n > NGX_HTTP_MONETIZE_JWKS_MAX_BODY) {
        jw->overflow = 1;
        return 0;
    }

    if (ngx_http_monetize_curl_append(jw->fetch, &jw->body, &jw->len,
                                      &jw->size,
                                      NGX_HTTP_MONETIZE_JWKS_MAX_BODY, 0,
                                      ptr, n)
        != NGX_OK)
    {
        return 0;
    }

    return n;
}


static void
ngx_http_monetize_jwks_fetched(ngx_http_monetize_curl_t *t, CURLcode rc)
{
    ngx_http_monetize_jwks_t *jw = t->data;

    long         status;
    ngx_uint_t   ok;
    ngx_pool_t  *pool;

    status = 0;
    ok = 0;

    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_WARN, jw->log, 0,
                      "monetize: jwks of \"%V\" not fetched from \"%V\": %s; "
                      "the keys known so far are kept", &jw->conf->issuer,
                      &jw->conf->url,
                      jw->overflow ? "more than 256k"
                      : t->error[0] ? t->error : curl_easy_strerror(rc));

    } else if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status)
               != CURLE_OK
               || status != 200)
    {
        ngx_log_error(NGX_LOG_WARN, jw->log, 0,
                      "monetize: jwks of \"%V\" not fetched from \"%V\": "
                      "HTTP %l; the keys known so far are kept",
                      &jw->conf->issuer, &jw->conf->url, status);

    } else {
        ok = (ngx_http_monetize_jwks_install(jw, jw->body, jw->len)
              == NGX_OK);
    }

    pool = jw->fetch;
    jw->fetch = NULL;
    jw->body = NULL;

    ngx_destroy_pool(pool);

    ngx_http_monetize_jwks_done(jw, ok);
}


/* a file of keys: small, local, read as nginx reads its certificates */

static void
ngx_http_monetize_jwks_load_file(ngx_http_monetize_jwks_t *jw)
{
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_uint_t        ok;
    ngx_file_info_t   fi;

    ok = 0;
    buf = NULL;

    fd = ngx_open_file(jw->conf->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                       0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, jw->log, ngx_errno,
                      "monetize: jwks of \"%V\": cannot open \"%V\"; the "
                      "keys known so far are kept", &jw->conf->issuer,
                      &jw->conf->file);
        goto done;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_MONETIZE_JWKS_MAX_BODY)
    {
        ngx_log_error(NGX_LOG_WARN, jw->log, ngx_errno,
                      "monetize: jwks of \"%V\": \"%V\" cannot be read or "
                      "is over 256k", &jw->conf->issuer, &jw->conf->file);
        goto close;
    }

    buf = ngx_alloc((size_t) ngx_file_size(&fi) + 1, jw->log);
    if (buf == NULL) {
        goto close;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));

    if (n < 0) {
        ngx_log_error(NGX_LOG_WARN, jw->log, ngx_errno,
                      "monetize: jwks of \"%V\": cannot read \"%V\"",
                      &jw->conf->issuer, &jw->conf->file);
        goto close;
    }

    ok = (ngx_http_monetize_jwks_install(jw, buf, (size_t) n) == NGX_OK);

close:

    (void) ngx_close_file(fd);

done:

    if (buf) {
        ngx_free(buf);
    }

    ngx_http_monetize_jwks_done(jw, ok);
}


/* A new set replaces the old only whole, and only with a key in it. */

static ngx_int_t
ngx_http_monetize_jwks_install(ngx_http_monetize_jwks_t *jw, u_char *body,
    size_t len)
{
    json_t                   *doc, *keys, *k;
    size_t                    i;
    ngx_pool_t               *pool;
    ngx_array_t              *set;
    json_error_t              error;
    ngx_pool_cleanup_t       *cln;
    ngx_http_monetize_jwk_t  *key;

    doc = json_loadb((char *) body, len, 0, &error);
    keys = json_object_get(doc, "keys");

    if (!json_is_array(keys)) {
        ngx_log_error(NGX_LOG_WARN, jw->log, 0,
                      "monetize: jwks of \"%V\" is not a JWKS (no \"keys\" "
                      "array); the keys known so far are kept",
                      &jw->conf->issuer);
        json_decref(doc);
        return NGX_ERROR;
    }

    pool = ngx_create_pool(4096, jw->log);
    set = pool ? ngx_array_create(pool, 4, sizeof(ngx_http_monetize_jwk_t))
               : NULL;
    cln = set ? ngx_pool_cleanup_add(pool, 0) : NULL;

    if (cln == NULL) {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        json_decref(doc);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_monetize_jwks_keys_cleanup;
    cln->data = set;

    json_array_foreach(keys, i, k) {
        key = ngx_array_push(set);
        if (key == NULL) {
            break;
        }

        ngx_memzero(key, sizeof(ngx_http_monetize_jwk_t));

        if (ngx_http_monetize_jwk_parse(jw->log, pool, k, key)
            != NGX_OK)
        {
            set->nelts--;
        }
    }

    json_decref(doc);

    if (set->nelts == 0) {
        ngx_log_error(NGX_LOG_WARN, jw->log, 0,
                      "monetize: jwks of \"%V\" has no key we can use; the "
                      "keys known so far are kept", &jw->conf->issuer);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (jw->keys_pool) {
        ngx_destroy_pool(jw->keys_pool);
    }

    jw->keys_pool = pool;
    jw->keys = set;

    ngx_log_error(NGX_LOG_INFO, jw->log, 0,
                  "monetize: jwks of \"%V\": %ui keys", &jw->conf->issuer,
                  set->nelts);

    return NGX_OK;
}


static void
ngx_http_monetize_jwks_keys_cleanup(void *data)
{
    ngx_array_t *set = data;

    ngx_uint_t                i;
    ngx_http_monetize_jwk_t  *key;

    key = set->elts;

    for (i = 0; i < set->nelts; i++) {
        EVP_PKEY_free(key[i].pkey);
    }
}


/* A fetch ended: the next is timed, and the tokens that waited go on. */

static void
ngx_http_monetize_jwks_done(ngx_http_monetize_jwks_t *jw, ngx_uint_t ok)
{
    ngx_msec_t  next;

    next = jw->conf->refresh;

    if (!ok) {
        next = ngx_min(next, NGX_HTTP_MONETIZE_JWKS_RETRY);
    }

    if (ngx_terminate || ngx_exiting || ngx_quit) {
        next = 0;
    }

    if (next && !jw->timer.timer_set) {
        ngx_add_timer(&jw->timer, next);
    }

    ngx_http_monetize_jwks_wake(jw);
}


static void
ngx_http_monetize_jwks_timer(ngx_event_t *ev)
{
    ngx_http_monetize_jwks_t *jw = ev->data;

    ngx_http_monetize_jwks_fetch(jw);
}


ngx_int_t
ngx_http_monetize_jwks_pstr(ngx_pool_t *pool, const char *s, ngx_str_t *out)
{
    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len + 1);

    return NGX_OK;
}


/*
 * monetize_jwks url=URL|file=PATH issuer=ISS audience=AUD [leeway=TIME]
 *     [refresh=TIME] [timeout=TIME]
 */

char *
ngx_http_monetize_jwks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    time_t                          t;
    ngx_str_t                      *value, s, *slot;
    ngx_uint_t                      i;
    ngx_msec_t                      ms;
    ngx_http_monetize_jwks_conf_t  *jc, *other;

    if (mcf->jwks == NULL) {
        mcf->jwks = ngx_array_create(cf->pool, 2,
                                     sizeof(ngx_http_monetize_jwks_conf_t));
        if (mcf->jwks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    jc = ngx_array_push(mcf->jwks);
    if (jc == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(jc, sizeof(ngx_http_monetize_jwks_conf_t));
    jc->leeway = 60;
    jc->refresh = 10 * 60 * 1000;
    jc->timeout = 5000;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        slot = NULL;

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            slot = &jc->url;
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (!((s.len > 7 && ngx_strncasecmp(s.data, (u_char *) "http://",
                                                7) == 0)
                  || (s.len > 8
                      && ngx_strncasecmp(s.data, (u_char *) "https://", 8)
                         == 0)))
            {
                goto invalid;
            }

        } else if (ngx_strncmp(value[i].data, "file=", 5) == 0) {
            slot = &jc->file;
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

        } else if (ngx_strncmp(value[i].data, "issuer=", 7) == 0) {
            slot = &jc->issuer;
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

        } else if (ngx_strncmp(value[i].data, "audience=", 9) == 0) {
            slot = &jc->audience;
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

        } else if (ngx_strncmp(value[i].data, "leeway=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            t = ngx_parse_time(&s, 1);
            if (t == (time_t) NGX_ERROR || t > 3600) {
                goto invalid;
            }

            jc->leeway = t;
            continue;

        } else if (ngx_strncmp(value[i].data, "refresh=", 8) == 0
                   || ngx_strncmp(value[i].data, "timeout=", 8) == 0)
        {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            ms = ngx_parse_time(&s, 0);
            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'r') {
                jc->refresh = ms;

            } else {
                jc->timeout = ms;
            }

            continue;

        } else {
            goto invalid;
        }

        if (slot->data || s.len == 0 || ngx_strlchr(s.data, s.data + s.len,
                                                    '\0'))
        {
            goto invalid;
        }

        slot->data = ngx_pnalloc(cf->pool, s.len + 1);
        if (slot->data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(slot->data, s.data, s.len);
        slot->data[s.len] = '\0';
        slot->len = s.len;

        if (slot == &jc->file
            && ngx_conf_full_name(cf->cycle, slot, 1) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if ((jc->url.len == 0) == (jc->file.len == 0)
        || jc->issuer.len == 0 || jc->audience.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_jwks: give url=URL or file=PATH (one "
                           "of them), issuer=ISS and audience=AUD");
        return NGX_CONF_ERROR;
    }

    other = mcf->jwks->elts;

    for (i = 0; i + 1 < mcf->jwks->nelts; i++) {
        if (other[i].issuer.len == jc->issuer.len
            && ngx_strcmp(other[i].issuer.data, jc->issuer.data) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_jwks: issuer \"%V\" is given "
                               "twice", &jc->issuer);
            return NGX_CONF_ERROR;
        }
    }

    if (jc->url.len && ngx_http_monetize_curl_check(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_jwks: invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}
