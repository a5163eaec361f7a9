
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_monetize_download.h"


/*
 * Download tokens, checked with no database trip as secure_link's are, but
 * signed with a key only the server has:
 *
 *     base64url("<user id>:<product>:<expires, unix s>") "."
 *     base64url(HMAC-SHA256(K, <the first part, as sent>))
 *
 * K is HMAC-SHA256(monetize_key_secret, "nginx-monetize download token
 * v1"): a key of its own, so that no other keyed hash of ours (API keys,
 * mail tokens) is ever a valid download signature, and a new version of
 * the format can take a new label. The signature is checked first, in
 * constant time; nothing in the token is read before.
 */


#define NGX_HTTP_MONETIZE_DOWNLOAD_LABEL  "nginx-monetize download token v1"


static ngx_int_t ngx_http_monetize_download_mac(u_char *key, u_char *data,
    size_t len, u_char *mac);


ngx_int_t
ngx_http_monetize_download_token_key(ngx_str_t *secret, u_char *key)
{
    unsigned int  n;
    ngx_str_t     label = ngx_string(NGX_HTTP_MONETIZE_DOWNLOAD_LABEL);

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, label.data,
             label.len, key, &n)
        == NULL || n != NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_download_token_make(ngx_pool_t *pool, u_char *key,
    ngx_str_t *user_id, ngx_str_t *product, time_t expires, ngx_str_t *token)
{
    u_char     *p;
    u_char      mac[NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN];
    ngx_str_t   payload, part;

    payload.data = ngx_pnalloc(pool, user_id->len + product->len
                                     + 2 + NGX_TIME_T_LEN);
    if (payload.data == NULL) {
        return NGX_ERROR;
    }

    payload.len = ngx_sprintf(payload.data, "%V:%V:%T", user_id, product,
                              expires)
                  - payload.data;

    token->data = ngx_pnalloc(pool, ngx_base64_encoded_length(payload.len)
                                    + 1
                                    + ngx_base64_encoded_length(sizeof(mac)));
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    part.data = token->data;
    ngx_encode_base64url(&part, &payload);

    if (ngx_http_monetize_download_mac(key, part.data, part.len, mac)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = part.data + part.len;
    *p++ = '.';

    payload.data = mac;
    payload.len = sizeof(mac);
    part.data = p;
    ngx_encode_base64url(&part, &payload);

    token->len = part.data + part.len - token->data;

    OPENSSL_cleanse(mac, sizeof(mac));

    return NGX_OK;
}


/*
 * NGX_OK and the claims; NGX_HTTP_MONETIZE_DOWNLOAD_INVALID or _EXPIRED
 * and why, for the log; NGX_ERROR when memory or OpenSSL failed.
 */

ngx_int_t
ngx_http_monetize_download_token_check(ngx_pool_t *pool, u_char *key,
    ngx_str_t *token, ngx_http_monetize_download_claims_t *dc,
    const char **why)
{
    u_char     *dot, *p, *last, *colon;
    u_char      mac[NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN];
    u_char      sent[NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN + 3];
    ngx_str_t   part, raw;
    ngx_int_t   expires;

    *why = "the token is malformed";

    if (token->len == 0 || token->len > NGX_HTTP_MONETIZE_DOWNLOAD_TOKEN_MAX)
    {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    dot = ngx_strlchr(token->data, token->data + token->len, '.');
    if (dot == NULL || dot == token->data) {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    part.data = dot + 1;
    part.len = token->data + token->len - part.data;

    if (part.len != ngx_base64_encoded_length(sizeof(mac)) - 1) {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    raw.data = sent;

    if (ngx_decode_base64url(&raw, &part) != NGX_OK
        || raw.len != sizeof(mac))
    {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    if (ngx_http_monetize_download_mac(key, token->data, dot - token->data,
                                       mac)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (CRYPTO_memcmp(mac, sent, sizeof(mac)) != 0) {
        *why = "the signature is wrong";
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    /* signed by us: what follows is a mistake of ours, if anything */

    part.data = token->data;
    part.len = dot - token->data;

    raw.data = ngx_pnalloc(pool, ngx_base64_decoded_length(part.len));
    if (raw.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&raw, &part) != NGX_OK
        || raw.len < NGX_HTTP_MONETIZE_UUID_LEN + 3
        || raw.data[NGX_HTTP_MONETIZE_UUID_LEN] != ':')
    {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    p = raw.data + NGX_HTTP_MONETIZE_UUID_LEN + 1;
    last = raw.data + raw.len;

    colon = ngx_strlchr(p, last, ':');
    if (colon == NULL || colon == p
        || colon - p > NGX_HTTP_MONETIZE_PRODUCT_MAX)
    {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    expires = ngx_atoi(colon + 1, last - colon - 1);
    if (expires == NGX_ERROR) {
        return NGX_HTTP_MONETIZE_DOWNLOAD_INVALID;
    }

    ngx_memcpy(dc->user_id, raw.data, NGX_HTTP_MONETIZE_UUID_LEN);
    dc->product.data = p;
    dc->product.len = colon - p;
    dc->expires = (time_t) expires;

    if (dc->expires <= ngx_time()) {
        *why = "the token has expired";
        return NGX_HTTP_MONETIZE_DOWNLOAD_EXPIRED;
    }

    return NGX_HTTP_MONETIZE_DOWNLOAD_OK;
}


static ngx_int_t
ngx_http_monetize_download_mac(u_char *key, u_char *data, size_t len,
    u_char *mac)
{
    unsigned int  n;

    if (HMAC(EVP_sha256(), key, NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN, data, len,
             mac, &n)
        == NULL || n != NGX_HTTP_MONETIZE_DOWNLOAD_KEY_LEN)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "monetize: HMAC() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}
