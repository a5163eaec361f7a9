
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_sts.h"


/*
 * The AWS STS client: AssumeRole through the Query API (a form POSTed, XML
 * back), signed with Signature Version 4 by libcurl itself
 * (CURLOPT_AWS_SIGV4), one transfer of the outbound client on the worker's
 * events. No retry: a client that got 503 retries, and every try is a row
 * that counts against its account's limit.
 *
 * STS answers XML. Its answers are small and flat, so they are read by a
 * scan for the few elements wanted, not by a parser: an element's text is
 * what lies between "<Name>" and the next "</Name>", refused if it holds
 * markup or an entity (no credential, code or date has either). Nothing is
 * ever fetched or expanded, so nothing in the answer can make us block.
 */


#define NGX_HTTP_MONETIZE_STS_ANSWER_MAX   (64 * 1024)
#define NGX_HTTP_MONETIZE_STS_POLICY_MAX   2048   /* STS's, in characters */

/* what seed 001's subscribers may do: stream audio to Transcribe */
#define NGX_HTTP_MONETIZE_STS_POLICY                                          \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","       \
    "\"Action\":[\"transcribe:StartStreamTranscription\","                    \
    "\"transcribe:StartStreamTranscriptionWebSocket\"],\"Resource\":\"*\"}]}"


static void ngx_http_monetize_sts_answered(ngx_http_monetize_curl_t *t,
    CURLcode rc);
static ngx_uint_t ngx_http_monetize_sts_credentials(
    ngx_http_monetize_sts_call_t *sc);
static ngx_uint_t ngx_http_monetize_sts_error(
    ngx_http_monetize_sts_call_t *sc);
static u_char *ngx_http_monetize_sts_element(u_char *p, u_char *last,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_monetize_sts_token(ngx_str_t *value,
    const char *allowed);
static void ngx_http_monetize_sts_finish(ngx_http_monetize_sts_call_t *sc,
    ngx_uint_t result, const char *code);
static size_t ngx_http_monetize_sts_write(char *buf, size_t size,
    size_t nitems, void *data);
static void ngx_http_monetize_sts_cleanup(void *data);
static u_char *ngx_http_monetize_sts_escape(u_char *dst, u_char *src,
    size_t len);
static char *ngx_http_monetize_sts_policy(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *policy);
static char *ngx_http_monetize_sts_plans(ngx_conf_t *cf, ngx_str_t *list,
    ngx_str_t *plans);
static char *ngx_http_monetize_sts_cstr(ngx_pool_t *pool, ngx_str_t *s);


ngx_http_monetize_sts_call_t *
ngx_http_monetize_sts_assume_role(ngx_http_monetize_sts_conf_t *conf,
    ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *session_name,
    ngx_http_monetize_sts_done_pt handler, void *data)
{
    CURL                          *e;
    u_char                        *p;
    size_t                         len;
    ngx_pool_cleanup_t            *cln;
    struct curl_slist             *h;
    ngx_http_monetize_sts_call_t  *sc;

    sc = ngx_pcalloc(pool, sizeof(ngx_http_monetize_sts_call_t));
    if (sc == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_monetize_sts_cleanup;
    cln->data = sc;

    sc->pool = pool;
    sc->log = log;
    sc->conf = conf;
    sc->handler = handler;
    sc->data = data;

    len = sizeof("Action=AssumeRole&Version=2011-06-15&RoleArn=") - 1
          + 3 * conf->role_arn.len
          + sizeof("&RoleSessionName=") - 1 + 3 * session_name->len
          + sizeof("&DurationSeconds=") - 1 + NGX_TIME_T_LEN
          + sizeof("&Policy=") - 1 + 3 * conf->policy.len + 1;

    sc->body.data = ngx_pnalloc(pool, len);
    if (sc->body.data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(sc->body.data,
                   "Action=AssumeRole&Version=2011-06-15&RoleArn=",
                   sizeof("Action=AssumeRole&Version=2011-06-15&RoleArn=")
                   - 1);
    p = ngx_http_monetize_sts_escape(p, conf->role_arn.data,
                                     conf->role_arn.len);
    p = ngx_cpymem(p, "&RoleSessionName=", sizeof("&RoleSessionName=") - 1);
    p = ngx_http_monetize_sts_escape(p, session_name->data,
                                     session_name->len);
    p = ngx_sprintf(p, "&DurationSeconds=%T&Policy=", conf->duration);
    p = ngx_http_monetize_sts_escape(p, conf->policy.data, conf->policy.len);
    *p = '\0';

    sc->body.len = p - sc->body.data;

    sc->curl = ngx_http_monetize_curl_create(pool, log);
    if (sc->curl == NULL) {
        return NULL;
    }

    /*
     * libcurl signs the lines given here with host and x-amz-date; not
     * "Expect:" (libcurl 7.88 would sign the line it removes), and the
     * User-Agent goes by its own option, unsigned, as AWS's SDKs leave it.
     */

    h = curl_slist_append(NULL, "Content-Type: "
                          "application/x-www-form-urlencoded; charset=utf-8");
    h = h ? curl_slist_append(h, "Accept: text/xml") : NULL;

    h = ngx_http_monetize_curl_list(sc->curl, h);
    if (h == NULL) {
        return NULL;
    }

    e = sc->curl->easy;

    if (curl_easy_setopt(e, CURLOPT_URL, conf->endpoint.data) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_USERAGENT, "nginx-monetize")
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_AWS_SIGV4, conf->sigv4.data)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_USERNAME, conf->access_key_id.data)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PASSWORD, conf->secret.data)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) sc->body.len)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_POSTFIELDS, sc->body.data)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_WRITEFUNCTION,
                            ngx_http_monetize_sts_write)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_WRITEDATA, sc) != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NULL;
    }

    sc->curl->handler = ngx_http_monetize_sts_answered;
    sc->curl->data = sc;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "monetize: STS AssumeRole for \"%V\"", session_name);

    if (ngx_http_monetize_curl_start(sc->curl, conf->timeout) != NGX_OK) {
        return NULL;
    }

    return sc;
}


static void
ngx_http_monetize_sts_answered(ngx_http_monetize_curl_t *t, CURLcode rc)
{
    ngx_http_monetize_sts_call_t *sc = t->data;

    long  code;

    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                      "monetize: STS AssumeRole: no answer: %s",
                      t->error[0] ? t->error : curl_easy_strerror(rc));
        ngx_http_monetize_sts_finish(sc, NGX_HTTP_MONETIZE_STS_UNAVAILABLE,
                                     "no answer");
        return;
    }

    code = 0;
    (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    sc->status = (ngx_uint_t) code;

    if (code == 200) {
        if (ngx_http_monetize_sts_credentials(sc) == NGX_OK) {
            ngx_http_monetize_sts_finish(sc, NGX_HTTP_MONETIZE_STS_OK, NULL);
            return;
        }

        ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                      "monetize: STS AssumeRole: 200, but the answer was "
                      "not understood (no credentials in it)");
        ngx_http_monetize_sts_finish(sc, NGX_HTTP_MONETIZE_STS_REFUSED,
                                     "not understood");
        return;
    }

    ngx_http_monetize_sts_finish(sc, ngx_http_monetize_sts_error(sc), NULL);
}


/* <Credentials> of AssumeRoleResult, each value checked */

static ngx_uint_t
ngx_http_monetize_sts_credentials(ngx_http_monetize_sts_call_t *sc)
{
    u_char     *p, *last;
    ngx_str_t   creds;

    p = sc->answer;
    last = p + sc->answer_len;

    if (p == NULL
        || ngx_http_monetize_sts_element(p, last, "Credentials", &creds)
           == NULL)
    {
        return NGX_ERROR;
    }

    p = creds.data;
    last = p + creds.len;

    if (ngx_http_monetize_sts_element(p, last, "AccessKeyId",
                                      &sc->access_key_id) == NULL
        || ngx_http_monetize_sts_element(p, last, "SecretAccessKey",
                                         &sc->secret_access_key) == NULL
        || ngx_http_monetize_sts_element(p, last, "SessionToken",
                                         &sc->session_token) == NULL
        || ngx_http_monetize_sts_element(p, last, "Expiration",
                                         &sc->expiration) == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_http_monetize_sts_token(&sc->access_key_id,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != NGX_OK
        || ngx_http_monetize_sts_token(&sc->secret_access_key,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            "0123456789+/=_-") != NGX_OK
        || ngx_http_monetize_sts_token(&sc->session_token,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            "0123456789+/=_-") != NGX_OK
        || ngx_http_monetize_sts_token(&sc->expiration,
            "0123456789TZ:.+-") != NGX_OK
        || sc->expiration.len < sizeof("2011-07-15T23:28:33Z") - 1
        || sc->expiration.len > 40)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * An answer other than 200: STS's <Error><Code>, logged with its message.
 * Throttling and STS's own failures pass: 503; anything else (AccessDenied,
 * ExpiredToken, InvalidClientTokenId, SignatureDoesNotMatch, a policy STS
 * refuses) is for the operator to fix: 502.
 */

static ngx_uint_t
ngx_http_monetize_sts_error(ngx_http_monetize_sts_call_t *sc)
{
    u_char      *p, *last, text[256];
    size_t       i, len;
    ngx_str_t    error, message;
    ngx_uint_t   result;

    ngx_str_null(&sc->code);
    ngx_str_null(&message);

    p = sc->answer;
    last = p + sc->answer_len;

    if (p && ngx_http_monetize_sts_element(p, last, "Error", &error)) {
        if (ngx_http_monetize_sts_element(error.data,
                                          error.data + error.len, "Code",
                                          &sc->code) == NULL
            || ngx_http_monetize_sts_token(&sc->code,
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789.") != NGX_OK)
        {
            ngx_str_null(&sc->code);
        }

        (void) ngx_http_monetize_sts_element(error.data,
                                             error.data + error.len,
                                             "Message", &message);
    }

    if (sc->code.len == 0) {
        sc->code.data = ngx_pnalloc(sc->pool, sizeof("HTTP ") + NGX_INT_T_LEN);
        if (sc->code.data) {
            sc->code.len = ngx_sprintf(sc->code.data, "HTTP %ui", sc->status)
                           - sc->code.data;
        }
    }

    /* one line of the log, whatever the message holds */

    len = ngx_min(message.len, sizeof(text) - 1);

    for (i = 0; i < len; i++) {
        text[i] = (message.data[i] < 0x20 || message.data[i] >= 0x7f
                   || message.data[i] == '"')
                  ? ' ' : message.data[i];
    }

    text[len] = '\0';

    if (sc->status >= 500 || sc->status == 429
        || (sc->code.len == sizeof("Throttling") - 1
            && ngx_strncmp(sc->code.data, "Throttling", sc->code.len) == 0)
        || (sc->code.len == sizeof("RequestLimitExceeded") - 1
            && ngx_strncmp(sc->code.data, "RequestLimitExceeded",
                           sc->code.len) == 0))
    {
        result = NGX_HTTP_MONETIZE_STS_UNAVAILABLE;

    } else {
        result = NGX_HTTP_MONETIZE_STS_REFUSED;
    }

    ngx_log_error(NGX_LOG_ERR, sc->log, 0,
                  "monetize: STS AssumeRole: %ui code=\"%V\" message=\"%s\"",
                  sc->status, &sc->code, text);

    return result;
}


/*
 * The text of the first <name> element in [p, last): its end, or NULL
 * when there is none or it holds markup or an entity.
 */

static u_char *
ngx_http_monetize_sts_element(u_char *p, u_char *last, const char *name,
    ngx_str_t *value)
{
    u_char  *s, *e, tag[64];
    size_t   n;

    n = ngx_strlen(name);

    if (n + 3 > sizeof(tag)) {
        return NULL;
    }

    tag[0] = '<';
    ngx_memcpy(tag + 1, name, n);
    tag[n + 1] = '>';

    s = memmem(p, last - p, tag, n + 2);
    if (s == NULL) {
        return NULL;
    }

    s += n + 2;

    tag[0] = '<';
    tag[1] = '/';
    ngx_memcpy(tag + 2, name, n);
    tag[n + 2] = '>';

    e = memmem(s, last - s, tag, n + 3);
    if (e == NULL) {
        return NULL;
    }

    value->data = s;
    value->len = e - s;

    return e + n + 3;
}


/* a value made only of the characters allowed, not empty */

static ngx_int_t
ngx_http_monetize_sts_token(ngx_str_t *value, const char *allowed)
{
    size_t  i;

    if (value->len == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == '\0'
            || ngx_strchr(allowed, value->data[i]) == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_monetize_sts_finish(ngx_http_monetize_sts_call_t *sc,
    ngx_uint_t result, const char *code)
{
    sc->result = result;

    if (code) {
        sc->code.data = (u_char *) code;
        sc->code.len = ngx_strlen(code);
    }

    sc->handler(sc);
}


static size_t
ngx_http_monetize_sts_write(char *buf, size_t size, size_t nitems,
    void *data)
{
    ngx_http_monetize_sts_call_t *sc = data;

    size_t  n;

    n = size * nitems;

    if (ngx_http_monetize_curl_append(sc->pool, &sc->answer,
                                      &sc->answer_len, &sc->answer_cap,
                                      NGX_HTTP_MONETIZE_STS_ANSWER_MAX, 1,
                                      buf, n)
        != NGX_OK)
    {
        return 0;
    }

    return n;
}


/* the owner's pool goes: the credentials in the answer go first */

static void
ngx_http_monetize_sts_cleanup(void *data)
{
    ngx_http_monetize_sts_call_t *sc = data;

    if (sc->answer) {
        ngx_explicit_memzero(sc->answer, sc->answer_cap);
    }
}


static u_char *
ngx_http_monetize_sts_escape(u_char *dst, u_char *src, size_t len)
{
    u_char          c;
    static u_char   hex[] = "0123456789ABCDEF";

    while (len--) {
        c = *src++;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~')
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


/*
 * monetize_aws_sts role_arn=ARN region=R access_key_id=ID|env:NAME
 *     secret_access_key=KEY|env:NAME [endpoint=URL] [duration=1h]
 *     [policy=FILE] [plans=a,b,...] [limit=60] [timeout=10s]
 */

char *
ngx_http_monetize_sts_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char                          *rv;
    u_char                        *p, *last;
    ngx_str_t                     *value, s, key_id, secret;
    ngx_int_t                      n;
    ngx_uint_t                     i;
    ngx_http_monetize_sts_conf_t  *sc;

    if (mcf->sts) {
        return "is duplicate";
    }

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_sts_conf_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    sc->duration = 3600;
    sc->limit = 60;
    sc->timeout = 10000;
    ngx_str_set(&sc->policy, NGX_HTTP_MONETIZE_STS_POLICY);
    ngx_str_null(&key_id);
    ngx_str_null(&secret);

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "role_arn=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            /* arn:PARTITION:iam::ACCOUNT:role/PATH/NAME */

            p = s.data;
            last = s.data + s.len;

            if (s.len > 2048
                || ngx_strlchr(p, last, ':') == NULL
                || ngx_strncmp(p, "arn:aws", 7) != 0)
            {
                goto bad_value;
            }

            p = ngx_strlchr(p + 4, last, ':');

            if (p == NULL || last - p < 19
                || ngx_strncmp(p, ":iam::", 6) != 0)
            {
                goto bad_value;
            }

            for (p += 6, n = 0; p < last && *p >= '0' && *p <= '9'; p++) {
                n++;
            }

            if (n != 12 || last - p <= 6 || ngx_strncmp(p, ":role/", 6) != 0)
            {
                goto bad_value;
            }

            for (p += 6; p < last; p++) {
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
                      || (*p >= 'A' && *p <= 'Z')
                      || ngx_strchr("+=,.@_/-", *p)))
                {
                    goto bad_value;
                }
            }

            sc->role_arn = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "region=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;
            last = s.data + s.len;

            for (p = s.data; p < last; p++) {
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
                      || *p == '-'))
                {
                    break;
                }
            }

            if (s.len == 0 || s.len > 32 || p != last) {
                goto bad_value;
            }

            sc->region = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "access_key_id=", 14) == 0
            && value[i].len > 14)
        {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            rv = ngx_http_monetize_conf_secret(cf, &s, &key_id);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "secret_access_key=", 18) == 0
            && value[i].len > 18)
        {
            s.data = value[i].data + 18;
            s.len = value[i].len - 18;

            rv = ngx_http_monetize_conf_secret(cf, &s, &secret);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "endpoint=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            if (!((s.len > 7 && ngx_strncmp(s.data, "http://", 7) == 0)
                  || (s.len > 8 && ngx_strncmp(s.data, "https://", 8) == 0))
                || ngx_strlchr(s.data, s.data + s.len, '?')
                || ngx_strlchr(s.data, s.data + s.len, '#')
                || ngx_strlchr(s.data, s.data + s.len, ' '))
            {
                goto bad_value;
            }

            sc->endpoint = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "duration=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            sc->duration = ngx_parse_time(&s, 1);

            /* STS's bounds; the role's maximum may be lower */

            if (sc->duration == (time_t) NGX_ERROR
                || sc->duration < 900 || sc->duration > 43200)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_aws_sts: invalid \"%V\", give "
                                   "15m to 12h (STS's bounds)", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "policy=", 7) == 0
            && value[i].len > 7)
        {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            rv = ngx_http_monetize_sts_policy(cf, &s, &sc->policy);
            if (rv != NGX_CONF_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_aws_sts: invalid \"%V\": %s",
                                   &value[i], rv);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "plans=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            if (ngx_http_monetize_sts_plans(cf, &s, &sc->plans)
                != NGX_CONF_OK)
            {
                goto bad_value;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "limit=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n < 1 || n > 100000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_aws_sts: invalid \"%V\", give "
                                   "limit=1 to limit=100000 (an hour)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            sc->limit = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            sc->timeout = ngx_parse_time(&s, 0);

            if (sc->timeout == (ngx_msec_t) NGX_ERROR || sc->timeout == 0) {
                goto bad_value;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_aws_sts: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (sc->role_arn.len == 0 || sc->region.len == 0 || key_id.len == 0
        || secret.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_aws_sts: %s= is required",
                           sc->role_arn.len == 0 ? "role_arn"
                           : sc->region.len == 0 ? "region"
                           : key_id.len == 0 ? "access_key_id"
                           : "secret_access_key");
        return NGX_CONF_ERROR;
    }

    /* both go into the Authorization line that libcurl makes */

    if (key_id.len < 16 || key_id.len > 128
        || ngx_http_monetize_sts_token(&key_id,
               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_aws_sts: invalid access_key_id, give "
                           "AWS's (16 or more capitals and digits)");
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < secret.len; i++) {
        if (secret.data[i] <= 0x20 || secret.data[i] >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_aws_sts: the secret access key has "
                               "a space or control character");
            return NGX_CONF_ERROR;
        }
    }

    sc->access_key_id.data = (u_char *) ngx_http_monetize_sts_cstr(cf->pool,
                                                                   &key_id);
    sc->secret.data = (u_char *) ngx_http_monetize_sts_cstr(cf->pool,
                                                            &secret);
    sc->sigv4.data = ngx_pnalloc(cf->pool, sizeof("aws:amz::sts")
                                           + sc->region.len);

    if (sc->access_key_id.data == NULL || sc->secret.data == NULL
        || sc->sigv4.data == NULL)
    {
        return NGX_CONF_ERROR;
    }

    sc->access_key_id.len = key_id.len;
    sc->secret.len = secret.len;
    sc->sigv4.len = ngx_sprintf(sc->sigv4.data, "aws:amz:%V:sts%Z",
                                &sc->region)
                    - sc->sigv4.data - 1;

    /* STS's regional endpoint by default; a URL's path is "/" at least */

    if (sc->endpoint.len == 0) {
        s.len = sizeof("https://sts..amazonaws.com/") - 1 + sc->region.len;
        s.data = ngx_pnalloc(cf->pool, s.len + 1);
        if (s.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(s.data, "https://sts.%V.amazonaws.com/%Z", &sc->region);
        sc->endpoint = s;

    } else {
        p = (u_char *) ngx_strstr(sc->endpoint.data, "://") + 3;
        last = sc->endpoint.data + sc->endpoint.len;

        s.data = ngx_pnalloc(cf->pool, sc->endpoint.len + 2);
        if (s.data == NULL) {
            return NGX_CONF_ERROR;
        }

        s.len = ngx_cpymem(s.data, sc->endpoint.data, sc->endpoint.len)
                - s.data;

        if (ngx_strlchr(p, last, '/') == NULL) {
            s.data[s.len++] = '/';
        }

        s.data[s.len] = '\0';
        sc->endpoint = s;
    }

    if (ngx_http_monetize_curl_check(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mcf->sts = sc;

    return NGX_CONF_OK;

bad_value:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_aws_sts: invalid \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * policy=FILE: a JSON object, sent compact; STS refuses a policy past
 * 2048 characters, so it is refused here, at -t, rather than at each call.
 */

static char *
ngx_http_monetize_sts_policy(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *policy)
{
    char          *text;
    size_t         len;
    json_t        *json;
    ngx_str_t      name;
    json_error_t   err;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return "the file's name is not usable";
    }

    json = json_load_file((char *) name.data, JSON_REJECT_DUPLICATES, &err);
    if (json == NULL) {
        return (err.line == -1) ? "the file cannot be read"
                                : "the file is not JSON";
    }

    if (!json_is_object(json)) {
        json_decref(json);
        return "the policy is not a JSON object";
    }

    text = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(json);

    if (text == NULL) {
        return "the policy cannot be written";
    }

    len = ngx_strlen(text);

    if (len > NGX_HTTP_MONETIZE_STS_POLICY_MAX) {
        free(text);
        return "the policy is longer than STS's 2048 characters";
    }

    policy->data = ngx_pnalloc(cf->pool, len);
    if (policy->data == NULL) {
        free(text);
        return "out of memory";
    }

    ngx_memcpy(policy->data, text, len);
    policy->len = len;
    free(text);

    return NGX_CONF_OK;
}


/* plans=a,b: PostgreSQL's array literal "{a,b}" of plan ids */

static char *
ngx_http_monetize_sts_plans(ngx_conf_t *cf, ngx_str_t *list,
    ngx_str_t *plans)
{
    u_char  *p, *last, *start;

    last = list->data + list->len;
    start = list->data;

    if (list->len == 0) {
        return NGX_CONF_ERROR;
    }

    for (p = list->data; p <= last; p++) {
        if (p == last || *p == ',') {
            if (p == start || p - start > 64) {
                return NGX_CONF_ERROR;
            }

            start = p + 1;
            continue;
        }

        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '-'))
        {
            return NGX_CONF_ERROR;
        }
    }

    plans->data = ngx_pnalloc(cf->pool, list->len + 2);
    if (plans->data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = plans->data;
    *p++ = '{';
    p = ngx_cpymem(p, list->data, list->len);
    *p++ = '}';
    plans->len = p - plans->data;

    return NGX_CONF_OK;
}


static char *
ngx_http_monetize_sts_cstr(ngx_pool_t *pool, ngx_str_t *s)
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
