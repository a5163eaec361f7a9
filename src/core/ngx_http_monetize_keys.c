
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_http_monetize_keys.h"


/*
 * API keys: "<prefix><32 base62 characters>" from RAND_bytes(). Only an
 * HMAC-SHA256 of the key under the server's secret is stored, so a copy of
 * the database alone lets no one call the API.
 */


static ngx_int_t ngx_http_monetize_credential_check(ngx_str_t *value);


static u_char  ngx_http_monetize_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static ngx_str_t  ngx_http_monetize_x_api_key = ngx_string("X-API-Key");


ngx_int_t
ngx_http_monetize_key_generate(ngx_pool_t *pool, ngx_str_t *secret,
    ngx_str_t *prefix, ngx_http_monetize_new_key_t *nk)
{
    u_char      *p, *last;
    u_char       random[64];
    ngx_uint_t   i;

    nk->key.len = prefix->len + NGX_HTTP_MONETIZE_KEY_RANDOM_LEN;
    nk->key.data = ngx_pnalloc(pool, nk->key.len);
    nk->hash.data = ngx_pnalloc(pool, NGX_HTTP_MONETIZE_KEY_HASH_LEN);

    if (nk->key.data == NULL || nk->hash.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(nk->key.data, prefix->data, prefix->len);
    last = nk->key.data + nk->key.len;

    /* rejection sampling: 248 = 4 * 62 keeps every character equally likely */

    while (p < last) {
        if (RAND_bytes(random, sizeof(random)) != 1) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "monetize: RAND_bytes() failed");
            return NGX_ERROR;
        }

        for (i = 0; i < sizeof(random) && p < last; i++) {
            if (random[i] < 248) {
                *p++ = ngx_http_monetize_base62[random[i] % 62];
            }
        }
    }

    OPENSSL_cleanse(random, sizeof(random));

    nk->prefix.data = nk->key.data;
    nk->prefix.len = prefix->len + NGX_HTTP_MONETIZE_KEY_SHOWN_LEN;

    nk->hash.len = NGX_HTTP_MONETIZE_KEY_HASH_LEN;

    return ngx_http_monetize_key_hash(secret, &nk->key, nk->hash.data);
}


/* The stored form: hex of the HMAC-SHA256 of the key under the secret. */

ngx_int_t
ngx_http_monetize_key_hash(ngx_str_t *secret, ngx_str_t *key, u_char *hex)
{
    u_char  mac[NGX_HTTP_MONETIZE_KEY_HASH_LEN / 2];

    if (ngx_http_monetize_key_hash_raw(secret, key, mac) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, mac, sizeof(mac));

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_key_hash_raw(ngx_str_t *secret, ngx_str_t *key,
    u_char *mac)
{
    unsigned int  len;

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, key->data,
             key->len, mac, &len)
        == NULL || len != NGX_HTTP_MONETIZE_KEY_HASH_LEN / 2)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "monetize: HMAC() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_key_is_well_formed(ngx_str_t *prefix, ngx_str_t *key)
{
    u_char  *p, *last;

    if (key->len < prefix->len + NGX_HTTP_MONETIZE_KEY_RANDOM_LEN
        || key->len > NGX_HTTP_MONETIZE_KEY_MAX_LEN
        || ngx_strncmp(key->data, prefix->data, prefix->len) != 0)
    {
        return 0;
    }

    last = key->data + key->len;

    for (p = key->data + prefix->len; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z')
              || (*p >= 'a' && *p <= 'z')))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The caller's credential: "Authorization: Bearer <token>" or
 * "X-API-Key: <token>". Both may be given only if they agree; a header given
 * twice is ambiguous, never resolved by picking one.
 */

ngx_http_monetize_credential_e
ngx_http_monetize_credential(ngx_http_request_t *r, ngx_str_t *credential,
    const char **why)
{
    ngx_str_t         bearer, api_key;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(&bearer);
    ngx_str_null(&api_key);

    if (r->headers_in.authorization) {
        bearer = r->headers_in.authorization->value;

        if (bearer.len < sizeof("Bearer ") - 1
            || ngx_strncasecmp(bearer.data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1) != 0)
        {
            *why = "the Authorization header must be \"Bearer <key>\"";
            return NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED;
        }

        bearer.data += sizeof("Bearer ") - 1;
        bearer.len -= sizeof("Bearer ") - 1;

        while (bearer.len && bearer.data[0] == ' ') {
            bearer.data++;
            bearer.len--;
        }
    }

    n = 0;
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

        if (h[i].key.len == ngx_http_monetize_x_api_key.len
            && ngx_strncasecmp(h[i].key.data, ngx_http_monetize_x_api_key.data,
                               h[i].key.len) == 0)
        {
            api_key = h[i].value;
            n++;
        }
    }

    if (n > 1) {
        *why = "the X-API-Key header is given more than once";
        return NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS;
    }

    if (bearer.data == NULL && api_key.data == NULL) {
        *why = "send an API key as \"Authorization: Bearer <key>\" "
               "or \"X-API-Key: <key>\"";
        return NGX_HTTP_MONETIZE_CREDENTIAL_MISSING;
    }

    if (bearer.data && api_key.data
        && (bearer.len != api_key.len
            || ngx_strncmp(bearer.data, api_key.data, bearer.len) != 0))
    {
        *why = "the Authorization and X-API-Key headers disagree";
        return NGX_HTTP_MONETIZE_CREDENTIAL_AMBIGUOUS;
    }

    *credential = bearer.data ? bearer : api_key;

    if (ngx_http_monetize_credential_check(credential) != NGX_OK) {
        *why = "the credential is empty, too long, or not printable ASCII";
        return NGX_HTTP_MONETIZE_CREDENTIAL_MALFORMED;
    }

    return NGX_HTTP_MONETIZE_CREDENTIAL_OK;
}


static ngx_int_t
ngx_http_monetize_credential_check(ngx_str_t *value)
{
    u_char  *p, *last;

    if (value->len == 0 || value->len > NGX_HTTP_MONETIZE_CREDENTIAL_MAX) {
        return NGX_ERROR;
    }

    last = value->data + value->len;

    for (p = value->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
