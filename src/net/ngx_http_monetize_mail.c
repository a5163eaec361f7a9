
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_mail.h"


/*
 * Mail: a message with a text and an HTML part (multipart/alternative),
 * sent over SMTP through the outbound client.
 */


typedef struct {
    ngx_str_t                          message;
    size_t                             sent;
} ngx_http_monetize_mail_upload_t;


static u_char *ngx_http_monetize_mail_part(u_char *p, ngx_str_t *boundary,
    const char *type, ngx_str_t *body);
static size_t ngx_http_monetize_mail_read(char *buf, size_t size,
    size_t nitems, void *data);
static ngx_int_t ngx_http_monetize_mail_check_addr(ngx_str_t *addr);


static const char  *ngx_http_monetize_mail_days[] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};

static const char  *ngx_http_monetize_mail_months[] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec"
};


/* The whole message, CRLF lines, as SMTP's DATA carries it. */

ngx_str_t *
ngx_http_monetize_mail_compose(ngx_pool_t *pool,
    ngx_http_monetize_smtp_t *smtp, ngx_http_monetize_mail_t *mail)
{
    u_char      *p, *domain, rnd[16], hex[32];
    size_t       len;
    ngx_tm_t     tm;
    ngx_str_t   *msg, boundary;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NULL;
    }

    ngx_hex_dump(hex, rnd, sizeof(rnd));

    boundary.data = (u_char *) "=_monetize_";
    boundary.len = sizeof("=_monetize_") - 1;

    domain = (u_char *) ngx_strchr(smtp->from.data, '@') + 1;

    len = sizeof("Date: Sun, 01 Jan 2000 00:00:00 +0000\r\n") - 1
          + sizeof("From: <>\r\n") - 1 + smtp->from.len
          + sizeof("To: <>\r\n") - 1 + mail->to.len
          + sizeof("Subject: \r\n") - 1 + mail->subject.len
          + sizeof("Message-ID: <@>\r\n") - 1 + sizeof(hex)
          + smtp->from.len
          + sizeof("MIME-Version: 1.0\r\n") - 1
          + sizeof("Content-Type: multipart/alternative; boundary=\"\"\r\n")
          - 1 + boundary.len + sizeof(hex)
          + 3 * (sizeof("\r\n--\r\n") - 1 + boundary.len + sizeof(hex))
          + 2 * sizeof("Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n")
          + 2 * mail->text.len + 2 * mail->html.len + 16;

    msg = ngx_palloc(pool, sizeof(ngx_str_t));
    if (msg == NULL) {
        return NULL;
    }

    msg->data = ngx_pnalloc(pool, len);
    if (msg->data == NULL) {
        return NULL;
    }

    ngx_gmtime(ngx_time(), &tm);

    p = ngx_sprintf(msg->data,
                    "Date: %s, %02d %s %4d %02d:%02d:%02d +0000\r\n"
                    "From: <%V>\r\n"
                    "To: <%V>\r\n"
                    "Subject: %V\r\n"
                    "Message-ID: <%*s@%s>\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: multipart/alternative; "
                    "boundary=\"%V%*s\"\r\n",
                    ngx_http_monetize_mail_days[tm.ngx_tm_wday],
                    tm.ngx_tm_mday,
                    ngx_http_monetize_mail_months[tm.ngx_tm_mon - 1],
                    tm.ngx_tm_year, tm.ngx_tm_hour, tm.ngx_tm_min,
                    tm.ngx_tm_sec, &smtp->from, &mail->to, &mail->subject,
                    sizeof(hex), hex, domain, &boundary, sizeof(hex), hex);

    /* the boundary's random part makes it unlike any line of the parts */

    boundary.data = ngx_pnalloc(pool, boundary.len + sizeof(hex));
    if (boundary.data == NULL) {
        return NULL;
    }

    ngx_memcpy(ngx_cpymem(boundary.data, "=_monetize_", boundary.len), hex,
               sizeof(hex));
    boundary.len += sizeof(hex);

    p = ngx_http_monetize_mail_part(p, &boundary, "text/plain", &mail->text);
    p = ngx_http_monetize_mail_part(p, &boundary, "text/html", &mail->html);
    p = ngx_sprintf(p, "\r\n--%V--\r\n", &boundary);

    msg->len = p - msg->data;

    return msg;
}


static u_char *
ngx_http_monetize_mail_part(u_char *p, ngx_str_t *boundary, const char *type,
    ngx_str_t *body)
{
    u_char  *s, *last;

    p = ngx_sprintf(p, "\r\n--%V\r\n"
                    "Content-Type: %s; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n",
                    boundary, type);

    last = body->data + body->len;

    /* SMTP's lines end in CRLF; a bare CR would make a line of its own */

    for (s = body->data; s < last; s++) {
        if (*s == '\n') {
            *p++ = '\r';
            *p++ = '\n';

        } else if (*s != '\r') {
            *p++ = *s;
        }
    }

    return p;
}


/*
 * Starts sending "mail"; "handler" is called once with the outcome. libcurl
 * escapes a leading dot of the message's lines itself.
 */

ngx_http_monetize_curl_t *
ngx_http_monetize_mail_send(ngx_pool_t *owner, ngx_log_t *log,
    ngx_http_monetize_smtp_t *smtp, ngx_http_monetize_mail_t *mail,
    ngx_http_monetize_curl_done_pt handler, void *data)
{
    CURL                             *e;
    u_char                           *p;
    struct curl_slist                *rcpt;
    ngx_str_t                        *msg;
    ngx_http_monetize_curl_t         *t;
    ngx_http_monetize_mail_upload_t  *up;

    if (ngx_http_monetize_mail_check_addr(&mail->to) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "monetize: not sending mail to \"%V\": not a plain "
                      "address", &mail->to);
        return NULL;
    }

    msg = ngx_http_monetize_mail_compose(owner, smtp, mail);
    up = ngx_pcalloc(owner, sizeof(ngx_http_monetize_mail_upload_t));
    p = ngx_pnalloc(owner, mail->to.len + sizeof("<>"));

    if (msg == NULL || up == NULL || p == NULL) {
        return NULL;
    }

    up->message = *msg;

    ngx_sprintf(p, "<%V>%Z", &mail->to);

    t = ngx_http_monetize_curl_create(owner, log);
    if (t == NULL) {
        return NULL;
    }

    rcpt = ngx_http_monetize_curl_list(t, curl_slist_append(NULL,
                                                            (char *) p));
    if (rcpt == NULL) {
        return NULL;
    }

    e = t->easy;

    p = ngx_pnalloc(owner, smtp->from.len + sizeof("<>"));
    if (p == NULL) {
        return NULL;
    }

    ngx_sprintf(p, "<%V>%Z", &smtp->from);

    if (curl_easy_setopt(e, CURLOPT_URL, smtp->url.data) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps")
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_MAIL_FROM, p) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_MAIL_RCPT, rcpt) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                            (curl_off_t) msg->len)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_READFUNCTION,
                            ngx_http_monetize_mail_read)
           != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_READDATA, up) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_USE_SSL,
                            smtp->starttls ? (long) CURLUSESSL_ALL
                                           : (long) CURLUSESSL_NONE)
           != CURLE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NULL;
    }

    if (smtp->user.len
        && (curl_easy_setopt(e, CURLOPT_USERNAME, smtp->user.data)
            != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_PASSWORD, smtp->password.data)
               != CURLE_OK))
    {
        ngx_log_error(NGX_LOG_ERR, log, 0, "monetize: curl_easy_setopt() "
                      "failed");
        return NULL;
    }

    t->handler = handler;
    t->data = data;

    if (ngx_http_monetize_curl_start(t, smtp->timeout) != NGX_OK) {
        return NULL;
    }

    return t;
}


static size_t
ngx_http_monetize_mail_read(char *buf, size_t size, size_t nitems,
    void *data)
{
    ngx_http_monetize_mail_upload_t *up = data;

    size_t  n;

    n = ngx_min(size * nitems, up->message.len - up->sent);

    ngx_memcpy(buf, up->message.data + up->sent, n);
    up->sent += n;

    return n;
}


/* An address that goes between <> in headers and commands as it is. */

static ngx_int_t
ngx_http_monetize_mail_check_addr(ngx_str_t *addr)
{
    u_char      *p, *last;
    ngx_uint_t   at;

    last = addr->data + addr->len;
    at = 0;

    for (p = addr->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || ngx_strchr("<>\"(),:;[\\]", *p)) {
            return NGX_ERROR;
        }

        if (*p == '@') {
            at++;
        }
    }

    return (at == 1 && addr->len >= 3 && addr->len <= 254) ? NGX_OK
                                                           : NGX_ERROR;
}


/*
 * monetize_smtp smtp://host:port from=ADDR [user=NAME
 *     password=SECRET|env:NAME] [starttls=on|off] [timeout=T]
 */

char *
ngx_http_monetize_smtp_conf(ngx_conf_t *cf, ngx_str_t *value, ngx_uint_t n,
    ngx_http_monetize_smtp_t **out)
{
    char                      *rv;
    ngx_str_t                  s, password;
    ngx_uint_t                 i;
    ngx_http_monetize_smtp_t  *smtp;

    smtp = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_smtp_t));
    if (smtp == NULL) {
        return NGX_CONF_ERROR;
    }

    smtp->timeout = 30000;
    ngx_str_null(&password);

    if (!((value[1].len > 7 && ngx_strncmp(value[1].data, "smtp://", 7) == 0)
          || (value[1].len > 8
              && ngx_strncmp(value[1].data, "smtps://", 8) == 0)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_smtp: invalid URL \"%V\", give "
                           "smtp://host:port or smtps://host:port",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the arguments come NUL-terminated from the configuration parser */
    smtp->url = value[1];

    for (i = 2; i < n; i++) {

        if (ngx_strncmp(value[i].data, "from=", 5) == 0) {
            smtp->from.data = value[i].data + 5;
            smtp->from.len = value[i].len - 5;

            if (ngx_http_monetize_mail_check_addr(&smtp->from) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_smtp: invalid \"%V\", give "
                                   "from=name@example.com", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0
            && value[i].len > 5)
        {
            smtp->user.data = value[i].data + 5;
            smtp->user.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0
            && value[i].len > 9)
        {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            rv = ngx_http_monetize_conf_secret(cf, &s, &password);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "starttls=on") == 0) {
            smtp->starttls = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "starttls=off") == 0) {
            smtp->starttls = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            smtp->timeout = ngx_parse_time(&s, 0);

            if (smtp->timeout == (ngx_msec_t) NGX_ERROR
                || smtp->timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_smtp: invalid \"%V\", give a "
                                   "time such as timeout=30s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_smtp: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (smtp->from.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_smtp: \"%V\" needs from=ADDRESS",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if ((smtp->user.len == 0) != (password.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_smtp: give both user= and password=, "
                           "or neither");
        return NGX_CONF_ERROR;
    }

    /* libcurl takes C strings; the secret may come from the environment */

    if (password.len) {
        smtp->password.data = ngx_pnalloc(cf->pool, password.len + 1);
        if (smtp->password.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(smtp->password.data, password.data, password.len + 1);
        smtp->password.len = password.len;
    }

    if (ngx_http_monetize_curl_check(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    *out = smtp;

    return NGX_CONF_OK;
}
