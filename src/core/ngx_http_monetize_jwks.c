
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_curl.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_jwt.h"


/*
 * JWTs of identity providers (Cognito, Supabase, ...), checked against the
 * provider's JWKS. The token's iss names the provider; a token of no
 * configured issuer is not ours to check here (our own session tokens go
 * to ngx_http_monetize_jwt.c). Only asymmetric algorithms are taken, and
 * only the one the key allows: a provider's public key is public, so an
 * HS256 token "signed" with it proves nothing (algorithm confusion).
 *
 * The keys live in each worker, as parsed OpenSSL keys: a key cannot be
 * shared between processes as such, and a set of a few keys costs a fetch
 * per worker per refresh, which is nothing to a provider. Every worker
 * fetches at its start and every "refresh"; a token of a kid the worker
 * does not know makes it fetch at once (at most once a minute), and the
 * token waits for that answer, so a rotation at the provider is taken
 * without a reload. A fetch that fails keeps the last good set.
 */


#define NGX_HTTP_MONETIZE_JWKS_MAX_BODY    (256 * 1024)
#define NGX_HTTP_MONETIZE_JWKS_MAX_TOKEN   (16 * 1024)
#define NGX_HTTP_MONETIZE_JWKS_FORCE_MIN   60
#define NGX_HTTP_MONETIZE_JWKS_RETRY       (10 * 1000)
#define NGX_HTTP_MONETIZE_JWKS_SUB_MAX     255

#define NGX_HTTP_MONETIZE_JWK_RSA          1
#define NGX_HTTP_MONETIZE_JWK_P256         2
#define NGX_HTTP_MONETIZE_JWK_P384         3
#define NGX_HTTP_MONETIZE_JWK_ED25519      4


typedef struct {
    ngx_str_t                        kid;
    ngx_str_t                        alg;       /* empty: any of its type */
    ngx_uint_t                       type;
    unsigned                         signs:1;   /* use and key_ops allow */
    EVP_PKEY                        *pkey;
} ngx_http_monetize_jwk_t;


typedef struct {
    ngx_http_monetize_jwks_conf_t   *conf;
    ngx_pool_t                      *keys_pool;
    ngx_array_t                     *keys;      /* of ngx_http_monetize_jwk_t */
    ngx_pool_t                      *fetch;     /* a transfer's, running */
    u_char                          *body;
    size_t                           len;
    size_t                           size;
    unsigned                         overflow:1;
    time_t                           forced;    /* for an unknown kid */
    ngx_event_t                      timer;
    ngx_queue_t                      waiting;   /* of checks */
    ngx_log_t                       *log;
} ngx_http_monetize_jwks_t;


typedef struct {
    ngx_queue_t                      queue;
    ngx_http_request_t              *request;
    ngx_http_monetize_jwks_t        *jwks;
    ngx_http_monetize_jwks_token_t  *tok;
    ngx_http_monetize_jwks_pt        handler;
    ngx_str_t                        alg;
    ngx_str_t                        kid;
    ngx_str_t                        signed_part;   /* header.payload */
    ngx_str_t                        sig;
    unsigned                         queued:1;
    unsigned                         waited:1;  /* for a fetch, once */
} ngx_http_monetize_jwks_check_t;


typedef struct {
    const char                      *name;
    const EVP_MD                    *(*md)(void);
    ngx_uint_t                       type;     /* of the key it needs */
    size_t                           half;     /* ECDSA: bytes of r, s */
} ngx_http_monetize_jwks_alg_t;


static ngx_int_t ngx_http_monetize_jwks_split(ngx_http_request_t *r,
    ngx_str_t *token, ngx_str_t *parts);
static json_t *ngx_http_monetize_jwks_json(ngx_http_request_t *r,
    ngx_str_t *b64);
static ngx_int_t ngx_http_monetize_jwks_header(ngx_http_request_t *r,
    ngx_http_monetize_jwks_check_t *ck, ngx_str_t *b64);
static ngx_int_t ngx_http_monetize_jwks_finish(
    ngx_http_monetize_jwks_check_t *ck);
static ngx_int_t ngx_http_monetize_jwks_signature(ngx_http_request_t *r,
    ngx_http_monetize_jwks_check_t *ck, ngx_http_monetize_jwk_t *key,
    const ngx_http_monetize_jwks_alg_t *alg);
static ngx_int_t ngx_http_monetize_jwks_claims(
    ngx_http_monetize_jwks_check_t *ck);
static ngx_uint_t ngx_http_monetize_jwks_audience(json_t *claims,
    ngx_str_t *audience);
static ngx_int_t ngx_http_monetize_jwks_refuse(
    ngx_http_monetize_jwks_check_t *ck, const char *why);
static void ngx_http_monetize_jwks_check_cleanup(void *data);
static void ngx_http_monetize_jwks_json_cleanup(void *data);

static void ngx_http_monetize_jwks_fetch(ngx_http_monetize_jwks_t *jw);
static size_t ngx_http_monetize_jwks_write(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static void ngx_http_monetize_jwks_fetched(ngx_http_monetize_curl_t *t,
    CURLcode rc);
static void ngx_http_monetize_jwks_load_file(ngx_http_monetize_jwks_t *jw);
static ngx_int_t ngx_http_monetize_jwks_install(ngx_http_monetize_jwks_t *jw,
    u_char *body, size_t len);
static ngx_int_t ngx_http_monetize_jwks_parse_key(ngx_log_t *log,
    ngx_pool_t *pool, json_t *k, ngx_http_monetize_jwk_t *key);
static EVP_PKEY *ngx_http_monetize_jwks_rsa(ngx_pool_t *pool, json_t *k);
static EVP_PKEY *ngx_http_monetize_jwks_ec(ngx_pool_t *pool, json_t *k,
    ngx_uint_t type);
static ngx_int_t ngx_http_monetize_jwks_b64(ngx_pool_t *pool, json_t *v,
    ngx_str_t *out);
static void ngx_http_monetize_jwks_keys_cleanup(void *data);
static void ngx_http_monetize_jwks_done(ngx_http_monetize_jwks_t *jw,
    ngx_uint_t ok);
static void ngx_http_monetize_jwks_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_monetize_jwks_pstr(ngx_pool_t *pool,
    const char *s, ngx_str_t *out);


static const ngx_http_monetize_jwks_alg_t  ngx_http_monetize_jwks_algs[] = {
    { "RS256", EVP_sha256, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "RS384", EVP_sha384, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "RS512", EVP_sha512, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "ES256", EVP_sha256, NGX_HTTP_MONETIZE_JWK_P256, 32 },
    { "ES384", EVP_sha384, NGX_HTTP_MONETIZE_JWK_P384, 48 },
    { "EdDSA", NULL, NGX_HTTP_MONETIZE_JWK_ED25519, 0 },
    { NULL, NULL, 0, 0 }
};


/* per worker, one for each monetize_jwks, in its order */
static ngx_http_monetize_jwks_t  *ngx_http_monetize_jwks;
static ngx_uint_t                 ngx_http_monetize_jwks_n;


/*
 * NGX_DECLINED: no configured issuer's token (a session token, maybe).
 * NGX_AGAIN: the handler is called later. Else the result, now.
 */

ngx_int_t
ngx_http_monetize_jwks_verify(ngx_http_request_t *r, ngx_str_t *token,
    ngx_http_monetize_jwks_token_t *tok, ngx_http_monetize_jwks_pt handler)
{
    json_t                          *claims, *iss;
    ngx_str_t                        parts[3];
    ngx_uint_t                       i;
    ngx_pool_cleanup_t              *cln;
    ngx_http_monetize_jwks_t        *jw;
    ngx_http_monetize_jwks_check_t  *ck;

    if (ngx_http_monetize_jwks_n == 0
        || token->len > NGX_HTTP_MONETIZE_JWKS_MAX_TOKEN
        || ngx_http_monetize_jwks_split(r, token, parts) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    /* the unverified payload only says whose token it claims to be */

    claims = ngx_http_monetize_jwks_json(r, &parts[1]);
    if (claims == NULL) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(claims);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_monetize_jwks_json_cleanup;
    cln->data = claims;

    iss = json_object_get(claims, "iss");
    if (!json_is_string(iss)) {
        return NGX_DECLINED;
    }

    jw = NULL;

    for (i = 0; i < ngx_http_monetize_jwks_n; i++) {
        if (ngx_strcmp(ngx_http_monetize_jwks[i].conf->issuer.data,
                       json_string_value(iss))
            == 0)
        {
            jw = &ngx_http_monetize_jwks[i];
            break;
        }
    }

    if (jw == NULL) {
        return NGX_DECLINED;
    }

    ck = ngx_pcalloc(r->pool, sizeof(ngx_http_monetize_jwks_check_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ck == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_monetize_jwks_check_cleanup;
    cln->data = ck;

    ck->request = r;
    ck->jwks = jw;
    ck->tok = tok;
    ck->handler = handler;

    ngx_memzero(tok, sizeof(ngx_http_monetize_jwks_token_t));
    tok->claims = claims;

    if (ngx_http_monetize_jwks_header(r, ck, &parts[0]) != NGX_OK) {
        return ngx_http_monetize_jwks_refuse(ck, "a bad header, or an alg "
                                             "that is not RS256, RS384, "
                                             "RS512, ES256, ES384 or EdDSA");
    }

    ck->signed_part.data = token->data;
    ck->signed_part.len = parts[1].data + parts[1].len - token->data;

    ck->sig.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(
                                            parts[2].len) + 1);
    if (ck->sig.data == NULL) {
        return NGX_ERROR;
    }

    if (parts[2].len == 0
        || ngx_decode_base64url(&ck->sig, &parts[2]) != NGX_OK)
    {
        return ngx_http_monetize_jwks_refuse(ck, "no signature");
    }

    return ngx_http_monetize_jwks_finish(ck);
}


static ngx_int_t
ngx_http_monetize_jwks_split(ngx_http_request_t *r, ngx_str_t *token,
    ngx_str_t *parts)
{
    u_char      *p, *last, *start;
    ngx_uint_t   n;

    n = 0;
    start = token->data;
    last = token->data + token->len;

    for (p = start; p <= last; p++) {
        if (p == last || *p == '.') {
            if (n == 3) {
                return NGX_ERROR;
            }

            parts[n].data = start;
            parts[n].len = p - start;
            n++;
            start = p + 1;
        }
    }

    return (n == 3 && parts[0].len && parts[1].len) ? NGX_OK : NGX_ERROR;
}


static json_t *
ngx_http_monetize_jwks_json(ngx_http_request_t *r, ngx_str_t *b64)
{
    json_t        *j;
    ngx_str_t      dst;
    json_error_t   error;

    dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(b64->len) + 1);
    if (dst.data == NULL) {
        return NULL;
    }

    if (ngx_decode_base64url(&dst, b64) != NGX_OK) {
        return NULL;
    }

    j = json_loadb((char *) dst.data, dst.len, JSON_REJECT_DUPLICATES,
                   &error);

    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }

    return j;
}


/* The header: an asymmetric alg of ours, a kid, nothing critical. */

static ngx_int_t
ngx_http_monetize_jwks_header(ngx_http_request_t *r,
    ngx_http_monetize_jwks_check_t *ck, ngx_str_t *b64)
{
    json_t     *h, *alg, *kid;
    ngx_int_t   rc;
    ngx_uint_t  i;

    h = ngx_http_monetize_jwks_json(r, b64);
    if (h == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    alg = json_object_get(h, "alg");
    kid = json_object_get(h, "kid");

    if (!json_is_string(alg) || !json_is_string(kid)
        || json_object_get(h, "crit") != NULL)
    {
        goto done;
    }

    for (i = 0; ngx_http_monetize_jwks_algs[i].name; i++) {
        if (ngx_strcmp(ngx_http_monetize_jwks_algs[i].name,
                       json_string_value(alg))
            == 0)
        {
            break;
        }
    }

    if (ngx_http_monetize_jwks_algs[i].name == NULL) {
        goto done;
    }

    if (ngx_http_monetize_jwks_pstr(r->pool, json_string_value(alg),
                                    &ck->alg)
        != NGX_OK
        || ngx_http_monetize_jwks_pstr(r->pool, json_string_value(kid),
                                       &ck->kid)
           != NGX_OK)
    {
        goto done;
    }

    rc = NGX_OK;

done:

    json_decref(h);

    return rc;
}


/*
 * The key of the token's kid, its signature, its claims. A kid the worker
 * does not know: the set is fetched again (unless it was within the
 * minute) and the check waits for it.
 */

static ngx_int_t
ngx_http_monetize_jwks_finish(ngx_http_monetize_jwks_check_t *ck)
{
    ngx_uint_t                           i;
    ngx_http_request_t                  *r;
    ngx_http_monetize_jwk_t             *key, *keys;
    ngx_http_monetize_jwks_t            *jw;
    const ngx_http_monetize_jwks_alg_t  *alg;

    r = ck->request;
    jw = ck->jwks;
    key = NULL;

    if (jw->keys) {
        keys = jw->keys->elts;

        for (i = 0; i < jw->keys->nelts; i++) {
            if (keys[i].kid.len == ck->kid.len
                && ngx_strncmp(keys[i].kid.data, ck->kid.data, ck->kid.len)
                   == 0)
            {
                key = &keys[i];
                break;
            }
        }
    }

    if (key == NULL) {
        if (!ck->waited
            && (jw->fetch
                || ngx_time() - jw->forced
                   >= NGX_HTTP_MONETIZE_JWKS_FORCE_MIN))
        {
            ck->waited = 1;

            if (jw->fetch == NULL) {
                jw->forced = ngx_time();
                ngx_log_error(NGX_LOG_INFO, jw->log, 0,
                              "monetize: jwks: kid \"%V\" of \"%V\" is "
                              "unknown, the keys are fetched again",
                              &ck->kid, &jw->conf->issuer);
                ngx_http_monetize_jwks_fetch(jw);
            }

            /* a file's keys are read at once: look again now */

            if (jw->fetch == NULL) {
                return ngx_http_monetize_jwks_finish(ck);
            }

            ck->queued = 1;
            ngx_queue_insert_tail(&jw->waiting, &ck->queue);
            return NGX_AGAIN;
        }

        return ngx_http_monetize_jwks_refuse(ck, "its kid is not in the "
                                             "provider's JWKS");
    }

    for (alg = ngx_http_monetize_jwks_algs; alg->name; alg++) {
        if (ngx_strncmp(alg->name, ck->alg.data, ck->alg.len) == 0
            && alg->name[ck->alg.len] == '\0')
        {
            break;
        }
    }

    if (alg->name == NULL || alg->type != key->type
        || (key->alg.len && (key->alg.len != ck->alg.len
                             || ngx_strncmp(key->alg.data, ck->alg.data,
                                            ck->alg.len) != 0)))
    {
        return ngx_http_monetize_jwks_refuse(ck, "its alg is not the one "
                                             "its key allows");
    }

    if (!key->signs) {
        return ngx_http_monetize_jwks_refuse(ck, "its key's \"use\" or "
                                             "\"key_ops\" is not for "
                                             "signatures");
    }

    if (ngx_http_monetize_jwks_signature(r, ck, key, alg) != NGX_OK) {
        return ngx_http_monetize_jwks_refuse(ck, "a bad signature");
    }

    return ngx_http_monetize_jwks_claims(ck);
}


static ngx_int_t
ngx_http_monetize_jwks_signature(ngx_http_request_t *r,
    ngx_http_monetize_jwks_check_t *ck, ngx_http_monetize_jwk_t *key,
    const ngx_http_monetize_jwks_alg_t *alg)
{
    int             len;
    u_char         *der, *p;
    BIGNUM         *br, *bs;
    ngx_int_t       rc;
    ngx_str_t       sig;
    ECDSA_SIG      *es;
    EVP_MD_CTX     *mc;

    sig = ck->sig;
    der = NULL;

    /* JWS's ECDSA signature is r || s; OpenSSL's is DER */

    if (alg->half) {
        if (sig.len != 2 * alg->half) {
            return NGX_ERROR;
        }

        es = ECDSA_SIG_new();
        br = BN_bin2bn(sig.data, (int) alg->half, NULL);
        bs = BN_bin2bn(sig.data + alg->half, (int) alg->half, NULL);

        if (es == NULL || br == NULL || bs == NULL
            || ECDSA_SIG_set0(es, br, bs) != 1)
        {
            ECDSA_SIG_free(es);
            BN_free(br);
            BN_free(bs);
            return NGX_ERROR;
        }

        len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);

        if (len <= 0) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            OPENSSL_free(der);
            return NGX_ERROR;
        }

        ngx_memcpy(p, der, len);
        OPENSSL_free(der);

        sig.data = p;
        sig.len = len;
    }

    mc = EVP_MD_CTX_new();
    if (mc == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_DigestVerifyInit(mc, NULL, alg->md ? alg->md() : NULL, NULL,
                             key->pkey)
        == 1
        && EVP_DigestVerify(mc, sig.data, sig.len, ck->signed_part.data,
                            ck->signed_part.len)
           == 1)
    {
        rc = NGX_OK;
    }

    EVP_MD_CTX_free(mc);

    return rc;
}


static ngx_int_t
ngx_http_monetize_jwks_claims(ngx_http_monetize_jwks_check_t *ck)
{
    time_t                           now, leeway;
    json_t                          *c, *v, *verified;
    ngx_http_request_t              *r;
    ngx_http_monetize_jwks_conf_t   *conf;
    ngx_http_monetize_jwks_token_t  *tok;

    r = ck->request;
    tok = ck->tok;
    c = tok->claims;
    conf = ck->jwks->conf;
    now = ngx_time();
    leeway = conf->leeway;

    v = json_object_get(c, "exp");
    if (!json_is_number(v)) {
        return ngx_http_monetize_jwks_refuse(ck, "no exp");
    }

    if (json_number_value(v) + leeway <= (double) now) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "monetize: jwt of \"%V\" refused: expired",
                      &conf->issuer);
        return NGX_HTTP_MONETIZE_JWT_EXPIRED;
    }

    v = json_object_get(c, "nbf");
    if (v && (!json_is_number(v)
              || json_number_value(v) > (double) (now + leeway)))
    {
        return ngx_http_monetize_jwks_refuse(ck, "not valid yet (nbf)");
    }

    v = json_object_get(c, "iat");
    if (v && (!json_is_number(v)
              || json_number_value(v) > (double) (now + leeway)))
    {
        return ngx_http_monetize_jwks_refuse(ck, "issued in the future "
                                             "(iat)");
    }

    if (!ngx_http_monetize_jwks_audience(c, &conf->audience)) {
        return ngx_http_monetize_jwks_refuse(ck, "not for our audience");
    }

    v = json_object_get(c, "sub");
    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > NGX_HTTP_MONETIZE_JWKS_SUB_MAX)
    {
        return ngx_http_monetize_jwks_refuse(ck, "no sub");
    }

    tok->issuer = conf->issuer;

    if (ngx_http_monetize_jwks_pstr(r->pool, json_string_value(v),
                                    &tok->subject)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = json_object_get(c, "email");
    verified = json_object_get(c, "email_verified");

    /* Cognito says "true" as a string */

    if (json_is_string(v)
        && (json_is_true(verified)
            || (json_is_string(verified)
                && ngx_strcmp(json_string_value(verified), "true") == 0))
        && ngx_http_monetize_jwks_pstr(r->pool, json_string_value(v),
                                       &tok->email)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * aud: a string, or an array that has ours. Cognito's access tokens have
 * no aud but the app client's id as client_id.
 */

static ngx_uint_t
ngx_http_monetize_jwks_audience(json_t *claims, ngx_str_t *audience)
{
    json_t  *aud, *v;
    size_t   i;

    aud = json_object_get(claims, "aud");

    if (aud == NULL) {
        aud = json_object_get(claims, "client_id");
        if (!json_is_string(aud)) {
            return 0;
        }
    }

    if (json_is_string(aud)) {
        return ngx_strcmp(json_string_value(aud), audience->data) == 0;
    }

    if (!json_is_array(aud)) {
        return 0;
    }

    json_array_foreach(aud, i, v) {
        if (json_is_string(v)
            && ngx_strcmp(json_string_value(v), audience->data) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_monetize_jwks_refuse(ngx_http_monetize_jwks_check_t *ck,
    const char *why)
{
    ngx_log_error(NGX_LOG_INFO, ck->request->connection->log, 0,
                  "monetize: jwt of \"%V\" refused: %s",
                  &ck->jwks->conf->issuer, why);

    return NGX_HTTP_MONETIZE_JWT_INVALID;
}


/* scope (a space-separated string) or scp (Okta, Azure: an array) */

ngx_uint_t
ngx_http_monetize_jwks_has_scope(ngx_http_monetize_jwks_token_t *tok,
    ngx_str_t *scope)
{
    u_char      *p, *last, *start;
    json_t      *v, *e;
    size_t       i;
    ngx_str_t    s;

    v = json_object_get(tok->claims, "scp");

    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            if (json_is_string(e) && json_string_length(e) == scope->len
                && ngx_strncmp(json_string_value(e), scope->data,
                               scope->len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }

    if (!json_is_string(v)) {
        v = json_object_get(tok->claims, "scope");
    }

    if (!json_is_string(v)) {
        return 0;
    }

    s.data = (u_char *) json_string_value(v);
    s.len = json_string_length(v);
    last = s.data + s.len;

    for (start = p = s.data; p <= last; p++) {
        if (p == last || *p == ' ') {
            if ((size_t) (p - start) == scope->len
                && ngx_strncmp(start, scope->data, scope->len) == 0)
            {
                return 1;
            }

            start = p + 1;
        }
    }

    return 0;
}


/*
 * A claim for $monetize_jwt_claim_NAME: a string as is, else its JSON. A
 * string with a control character is given as JSON too, escaped, so that
 * no claim can end a header line it is put in.
 */

ngx_int_t
ngx_http_monetize_jwks_claim(ngx_http_request_t *r,
    ngx_http_monetize_jwks_token_t *tok, ngx_str_t *name, ngx_str_t *value)
{
    char        *key, *text;
    json_t      *v;
    ngx_uint_t   i;

    if (tok->claims == NULL) {
        return NGX_DECLINED;
    }

    key = ngx_pnalloc(r->pool, name->len + 1);
    if (key == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) key, name->data, name->len + 1);

    v = json_object_get(tok->claims, key);
    if (v == NULL) {
        return NGX_DECLINED;
    }

    if (json_is_string(v)) {
        value->data = (u_char *) json_string_value(v);
        value->len = json_string_length(v);

        for (i = 0; i < value->len; i++) {
            if (value->data[i] < 0x20 || value->data[i] == 0x7f) {
                break;
            }
        }

        if (i == value->len) {
            return NGX_OK;
        }
    }

    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        return NGX_ERROR;
    }

    value->len = ngx_strlen(text);
    value->data = ngx_pnalloc(r->pool, value->len);

    if (value->data) {
        ngx_memcpy(value->data, text, value->len);
    }

    free(text);

    return value->data ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_monetize_jwks_check_cleanup(void *data)
{
    ngx_http_monetize_jwks_check_t *ck = data;

    if (ck->queued) {
        ngx_queue_remove(&ck->queue);
        ck->queued = 0;
    }
}


static void
ngx_http_monetize_jwks_json_cleanup(void *data)
{
    json_decref(data);
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


static void
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

    u_char  *p;
    size_t   n, want;

    n = size * nmemb;

    if (jw->len + n > NGX_HTTP_MONETIZE_JWKS_MAX_BODY) {
        jw->overflow = 1;
        return 0;
    }

    if (jw->len + n > jw->size) {
        want = ngx_max(2 * jw->size, jw->len + n);
        want = ngx_min(want, NGX_HTTP_MONETIZE_JWKS_MAX_BODY);

        p = ngx_pnalloc(jw->fetch, want);
        if (p == NULL) {
            return 0;
        }

        if (jw->len) {
            ngx_memcpy(p, jw->body, jw->len);
        }

        jw->body = p;
        jw->size = want;
    }

    ngx_memcpy(jw->body + jw->len, ptr, n);
    jw->len += n;

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

        if (ngx_http_monetize_jwks_parse_key(jw->log, pool, k, key)
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


static ngx_int_t
ngx_http_monetize_jwks_parse_key(ngx_log_t *log, ngx_pool_t *pool, json_t *k,
    ngx_http_monetize_jwk_t *key)
{
    json_t     *kty, *crv, *kid, *alg, *use, *ops, *op;
    size_t      i;
    ngx_str_t   x;

    kty = json_object_get(k, "kty");
    crv = json_object_get(k, "crv");
    kid = json_object_get(k, "kid");
    alg = json_object_get(k, "alg");
    use = json_object_get(k, "use");
    ops = json_object_get(k, "key_ops");

    if (!json_is_string(kty) || !json_is_string(kid)
        || (alg && !json_is_string(alg)))
    {
        return NGX_DECLINED;
    }

    if (ngx_http_monetize_jwks_pstr(pool, json_string_value(kid), &key->kid)
        != NGX_OK
        || (alg && ngx_http_monetize_jwks_pstr(pool, json_string_value(alg),
                                               &key->alg)
                   != NGX_OK))
    {
        return NGX_ERROR;
    }

    key->signs = 1;

    if (use && !(json_is_string(use)
                 && ngx_strcmp(json_string_value(use), "sig") == 0))
    {
        key->signs = 0;
    }

    if (ops) {
        key->signs = 0;

        json_array_foreach(ops, i, op) {
            if (json_is_string(op)
                && ngx_strcmp(json_string_value(op), "verify") == 0)
            {
                key->signs = (use == NULL || key->signs);
            }
        }
    }

    if (ngx_strcmp(json_string_value(kty), "RSA") == 0) {
        key->type = NGX_HTTP_MONETIZE_JWK_RSA;
        key->pkey = ngx_http_monetize_jwks_rsa(pool, k);

    } else if (ngx_strcmp(json_string_value(kty), "EC") == 0
               && json_is_string(crv))
    {
        if (ngx_strcmp(json_string_value(crv), "P-256") == 0) {
            key->type = NGX_HTTP_MONETIZE_JWK_P256;

        } else if (ngx_strcmp(json_string_value(crv), "P-384") == 0) {
            key->type = NGX_HTTP_MONETIZE_JWK_P384;

        } else {
            return NGX_DECLINED;
        }

        key->pkey = ngx_http_monetize_jwks_ec(pool, k, key->type);

    } else if (ngx_strcmp(json_string_value(kty), "OKP") == 0
               && json_is_string(crv)
               && ngx_strcmp(json_string_value(crv), "Ed25519") == 0)
    {
        key->type = NGX_HTTP_MONETIZE_JWK_ED25519;

        if (ngx_http_monetize_jwks_b64(pool, json_object_get(k, "x"), &x)
            == NGX_OK && x.len == 32)
        {
            key->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
                                                    x.data, x.len);
        }

    } else {
        /* oct (a shared secret) above all: never a provider's key here */
        return NGX_DECLINED;
    }

    if (key->pkey == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "monetize: jwks: key \"%V\" is not a valid %s key "
                      "(RSA keys need 2048 bits or more); it is left out",
                      &key->kid, json_string_value(kty));
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static EVP_PKEY *
ngx_http_monetize_jwks_rsa(ngx_pool_t *pool, json_t *k)
{
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    ngx_str_t        nb, eb;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *pc;
    OSSL_PARAM_BLD  *bld;

    if (ngx_http_monetize_jwks_b64(pool, json_object_get(k, "n"), &nb)
        != NGX_OK
        || ngx_http_monetize_jwks_b64(pool, json_object_get(k, "e"), &eb)
           != NGX_OK
        || nb.len < 256 || nb.len > 1024 || eb.len > 8)
    {
        return NULL;
    }

    pkey = NULL;
    params = NULL;
    pc = NULL;

    n = BN_bin2bn(nb.data, (int) nb.len, NULL);
    e = BN_bin2bn(eb.data, (int) eb.len, NULL);
    bld = OSSL_PARAM_BLD_new();

    if (n == NULL || e == NULL || bld == NULL
        || BN_num_bits(n) < 2048
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
        || (pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
        || EVP_PKEY_fromdata_init(pc) != 1
        || EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return pkey;
}


static EVP_PKEY *
ngx_http_monetize_jwks_ec(ngx_pool_t *pool, json_t *k, ngx_uint_t type)
{
    u_char           pub[1 + 2 * 48];
    size_t           size;
    EVP_PKEY        *pkey;
    ngx_str_t        x, y;
    const char      *group;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *pc;
    OSSL_PARAM_BLD  *bld;

    size = (type == NGX_HTTP_MONETIZE_JWK_P256) ? 32 : 48;
    group = (type == NGX_HTTP_MONETIZE_JWK_P256) ? "P-256" : "P-384";

    if (ngx_http_monetize_jwks_b64(pool, json_object_get(k, "x"), &x)
        != NGX_OK
        || ngx_http_monetize_jwks_b64(pool, json_object_get(k, "y"), &y)
           != NGX_OK
        || x.len != size || y.len != size)
    {
        return NULL;
    }

    pub[0] = 0x04;
    ngx_memcpy(pub + 1, x.data, size);
    ngx_memcpy(pub + 1 + size, y.data, size);

    pkey = NULL;
    params = NULL;
    pc = NULL;

    bld = OSSL_PARAM_BLD_new();

    if (bld == NULL
        || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, 0) != 1
        || OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            pub, 1 + 2 * size) != 1
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
        || (pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL
        || EVP_PKEY_fromdata_init(pc) != 1
        || EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

    return pkey;
}


static ngx_int_t
ngx_http_monetize_jwks_b64(ngx_pool_t *pool, json_t *v, ngx_str_t *out)
{
    ngx_str_t  src;

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return NGX_ERROR;
    }

    src.data = (u_char *) json_string_value(v);
    src.len = json_string_length(v);

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    return ngx_decode_base64url(out, &src);
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
    ngx_int_t                        rc;
    ngx_msec_t                       next;
    ngx_queue_t                     *q;
    ngx_http_monetize_jwks_check_t  *ck;

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

    while (!ngx_queue_empty(&jw->waiting)) {
        q = ngx_queue_head(&jw->waiting);
        ngx_queue_remove(q);

        ck = ngx_queue_data(q, ngx_http_monetize_jwks_check_t, queue);
        ck->queued = 0;

        rc = ngx_http_monetize_jwks_finish(ck);
        ck->handler(ck->request, rc);
    }
}


static void
ngx_http_monetize_jwks_timer(ngx_event_t *ev)
{
    ngx_http_monetize_jwks_t *jw = ev->data;

    ngx_http_monetize_jwks_fetch(jw);
}


static ngx_int_t
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
