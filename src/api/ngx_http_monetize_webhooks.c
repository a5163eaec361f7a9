
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_monetize_api.h"
#include "ngx_http_monetize_webhooks.h"


/*
 * POST /webhooks/stripe: Stripe's events. No credential: the signature is
 * one. The body is read raw (Stripe signs its bytes, not its JSON), checked
 * against every monetize_stripe_webhook_secret (several while a secret is
 * rotated) within monetize_stripe_tolerance of our clock, either way, and
 * then handed whole to monetize_stripe_event() (sql/013), which records
 * and applies it in one transaction. The answer follows the commit: Stripe
 * sends again whatever was not answered 2xx, and a redelivery changes
 * nothing.
 */


#define NGX_HTTP_MONETIZE_WEBHOOK_SIGNATURES  8


static void ngx_http_monetize_webhook_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_webhook_body(ngx_http_request_t *r,
    ngx_str_t *text);
static const char *ngx_http_monetize_webhook_verify(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_monetize_webhook_unhex(u_char *dst, u_char *src,
    size_t len);
static ngx_int_t ngx_http_monetize_webhook_apply(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_monetize_webhook_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q);


ngx_int_t
ngx_http_monetize_webhook_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (mcf->webhook_secrets == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "not_found",
                                            "no such endpoint (webhooks "
                                            "need "
                                            "monetize_stripe_webhook_secret)");
    }

    if (r->headers_in.content_length_n > NGX_HTTP_MONETIZE_WEBHOOK_MAX_BODY)
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_monetize_send_error(r,
                                    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "body_too_large",
                                    "an event may have at most %d bytes",
                                    NGX_HTTP_MONETIZE_WEBHOOK_MAX_BODY);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_monetize_webhook_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_monetize_webhook_body_read(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     body;
    const char                   *why;
    ngx_http_monetize_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_monetize_module);

    rc = ngx_http_monetize_webhook_body(r, &body);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_monetize_send_error(r,
                                    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "body_too_large",
                                    "an event may have at most %d bytes",
                                    NGX_HTTP_MONETIZE_WEBHOOK_MAX_BODY);

    } else if (rc == NGX_OK) {
        why = ngx_http_monetize_webhook_verify(r, &body);

        if (why) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "monetize: a Stripe webhook was refused: %s", why);

            rc = ngx_http_monetize_send_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_signature",
                                              "the Stripe-Signature header "
                                              "does not match this body");

        } else {
            rc = ngx_http_monetize_webhook_apply(r, ctx, &body);

            if (rc == NGX_DONE) {
                /* the body reader's reference now belongs to the query */
                return;
            }
        }

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The raw body, in memory: NGX_DECLINED when it is over the limit (a
 * chunked one is known only once read); a body that nginx kept in its
 * temporary file is read back from it, just written, so from the page
 * cache.
 */

static ngx_int_t
ngx_http_monetize_webhook_body(ngx_http_request_t *r, ngx_str_t *text)
{
    u_char       *p;
    off_t         len;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > NGX_HTTP_MONETIZE_WEBHOOK_MAX_BODY) {
        return NGX_DECLINED;
    }

    text->len = (size_t) len;
    text->data = ngx_pnalloc(r->pool, text->len + 1);
    if (text->data == NULL) {
        return NGX_ERROR;
    }

    p = text->data;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (ngx_buf_size(b) == 0) {
            continue;
        }

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        size = (size_t) (b->file_last - b->file_pos);

        n = ngx_read_file(b->file, p, size, b->file_pos);

        if (n != (ssize_t) size) {
            if (n != NGX_ERROR) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "monetize: read only %z of %uz bytes of "
                              "a webhook from \"%V\"", n, size,
                              &b->file->name);
            }

            return NGX_ERROR;
        }

        p += size;
    }

    *p = '\0';

    return NGX_OK;
}


/*
 * Stripe-Signature: "t=<unix time>,v1=<hex>[,v1=<hex>...]" (v0 and other
 * schemes are ignored). Returns NULL when one v1 is the HMAC-SHA256 of
 * "<t>.<body>" under one of the secrets, else why not, for the log: never
 * a secret nor a signature.
 */

static const char *
ngx_http_monetize_webhook_verify(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char                          *p, *last, *item, *end, *signed_text;
    u_char                           mac[EVP_MAX_MD_SIZE];
    u_char                           sigs[NGX_HTTP_MONETIZE_WEBHOOK_SIGNATURES]
                                         [32];
    time_t                           t, now;
    ngx_str_t                        header, stamp, *secret;
    ngx_uint_t                       i, j, nsigs;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    unsigned int                     maclen;
    ngx_http_monetize_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    ngx_str_null(&header);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Stripe-Signature") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Stripe-Signature",
                               sizeof("Stripe-Signature") - 1) == 0)
        {
            if (header.data) {
                return "more than one Stripe-Signature header";
            }

            header = h[i].value;
        }
    }

    if (header.data == NULL) {
        return "no Stripe-Signature header";
    }

    ngx_str_null(&stamp);
    nsigs = 0;

    p = header.data;
    last = header.data + header.len;

    while (p < last) {
        item = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p++;

        while (item < end && *item == ' ') {
            item++;
        }

        if (end - item > 2 && item[0] == 't' && item[1] == '=') {
            if (stamp.data) {
                return "more than one timestamp";
            }

            stamp.data = item + 2;
            stamp.len = end - item - 2;
            continue;
        }

        if (end - item == 3 + 64 && ngx_strncmp(item, "v1=", 3) == 0
            && nsigs < NGX_HTTP_MONETIZE_WEBHOOK_SIGNATURES
            && ngx_http_monetize_webhook_unhex(sigs[nsigs], item + 3, 64)
               == NGX_OK)
        {
            nsigs++;
        }
    }

    if (stamp.data == NULL || stamp.len > 12) {
        return "no timestamp";
    }

    t = ngx_atotm(stamp.data, stamp.len);

    if (t == NGX_ERROR) {
        return "no timestamp";
    }

    if (nsigs == 0) {
        return "no v1 signature";
    }

    now = ngx_time();

    if (t < now - mcf->webhook_tolerance) {
        return "the timestamp is older than monetize_stripe_tolerance";
    }

    if (t > now + mcf->webhook_tolerance) {
        return "the timestamp is further ahead than "
               "monetize_stripe_tolerance";
    }

    signed_text = ngx_pnalloc(r->pool, stamp.len + 1 + body->len);
    if (signed_text == NULL) {
        return "out of memory";
    }

    p = ngx_cpymem(signed_text, stamp.data, stamp.len);
    *p++ = '.';
    p = ngx_cpymem(p, body->data, body->len);

    secret = mcf->webhook_secrets->elts;

    for (i = 0; i < mcf->webhook_secrets->nelts; i++) {

        if (HMAC(EVP_sha256(), secret[i].data, (int) secret[i].len,
                 signed_text, p - signed_text, mac, &maclen)
            == NULL || maclen != 32)
        {
            return "HMAC failed";
        }

        for (j = 0; j < nsigs; j++) {
            if (CRYPTO_memcmp(mac, sigs[j], 32) == 0) {
                return NULL;
            }
        }
    }

    return "no v1 signature matches a secret";
}


static ngx_int_t
ngx_http_monetize_webhook_unhex(u_char *dst, u_char *src, size_t len)
{
    u_char      c, v;
    ngx_uint_t  i;

    for (i = 0; i < len; i++) {
        c = src[i] | 0x20;

        if (c >= '0' && c <= '9') {
            v = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            v = c - 'a' + 10;

        } else {
            return NGX_ERROR;
        }

        if (i % 2) {
            dst[i / 2] |= v;

        } else {
            dst[i / 2] = (u_char) (v << 4);
        }
    }

    return NGX_OK;
}


/* A signed body is Stripe's: still, an event is an object with an id. */

static ngx_int_t
ngx_http_monetize_webhook_apply(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_str_t *body)
{
    json_t        *event, *id, *type, *created;
    json_error_t   error;

    ngx_memzero(&error, sizeof(json_error_t));

    event = ngx_http_monetize_json_parse(r, body, &error);

    if (event == NULL) {
        return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_json",
                                            "the event is not valid JSON: "
                                            "%s (line %d, column %d)",
                                            error.text, error.line,
                                            error.column);
    }

    id = json_object_get(event, "id");
    type = json_object_get(event, "type");
    created = json_object_get(event, "created");

    if (!json_is_object(event)
        || !json_is_string(id) || json_string_length(id) == 0
        || json_string_length(id) > 255
        || !json_is_string(type) || !json_is_integer(created)
        || !json_is_object(json_object_get(event, "data")))
    {
        return ngx_http_monetize_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request",
                                            "an event has an \"id\", a "
                                            "\"type\", a \"created\" time "
                                            "and \"data\"");
    }

    return ngx_http_monetize_api_query(r,
               "SELECT e.outcome, e.replay"
               "  FROM monetize_stripe_event($1::jsonb) AS e",
               body, 1, ngx_http_monetize_webhook_result);
}


static ngx_int_t
ngx_http_monetize_webhook_result(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx, ngx_http_monetize_pg_query_t *q)
{
    json_t     *answer;
    ngx_str_t   outcome, replay;

    if (q->status != NGX_HTTP_MONETIZE_PG_OK || PQntuples(q->result) != 1
        || ngx_http_monetize_pg_get_str(q, 0, 1, &replay) != NGX_OK)
    {
        return ngx_http_monetize_api_backend_failed(r, q);
    }

    if (ngx_http_monetize_pg_get_str(q, 0, 0, &outcome) != NGX_OK) {
        ngx_str_null(&outcome);
    }

    answer = json_pack("{s:b, s:b, s:o}", "received", 1,
                       "duplicate", replay.data[0] == 't',
                       "outcome", outcome.data
                                  ? ngx_http_monetize_json_str(&outcome)
                                  : json_null());

    return ngx_http_monetize_send_json(r, NGX_HTTP_OK, answer);
}


/* monetize_stripe_webhook_secret SECRET|env:NAME ...; */

char *
ngx_http_monetize_stripe_webhook_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char        *rv;
    ngx_str_t   *value, *secret;
    ngx_uint_t   i;

    if (mcf->webhook_secrets) {
        return "is duplicate";
    }

    mcf->webhook_secrets = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                            sizeof(ngx_str_t));
    if (mcf->webhook_secrets == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        secret = ngx_array_push(mcf->webhook_secrets);
        if (secret == NULL) {
            return NGX_CONF_ERROR;
        }

        rv = ngx_http_monetize_conf_secret(cf, &value[i], secret);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        if (secret->len < 8) {
            /* the value itself is a secret: say which one, not what */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: secret number %ui is too short (Stripe's "
                               "look like \"whsec_...\")", &cmd->name, i);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}
