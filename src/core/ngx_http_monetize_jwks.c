
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_jwks.h"
#include "ngx_http_monetize_jwks_keys.h"
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


#define NGX_HTTP_MONETIZE_JWKS_MAX_TOKEN   (16 * 1024)
#define NGX_HTTP_MONETIZE_JWKS_FORCE_MIN   60
#define NGX_HTTP_MONETIZE_JWKS_SUB_MAX     255


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



static const ngx_http_monetize_jwks_alg_t  ngx_http_monetize_jwks_algs[] = {
    { "RS256", EVP_sha256, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "RS384", EVP_sha384, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "RS512", EVP_sha512, NGX_HTTP_MONETIZE_JWK_RSA, 0 },
    { "ES256", EVP_sha256, NGX_HTTP_MONETIZE_JWK_P256, 32 },
    { "ES384", EVP_sha384, NGX_HTTP_MONETIZE_JWK_P384, 48 },
    { "EdDSA", NULL, NGX_HTTP_MONETIZE_JWK_ED25519, 0 },
    { NULL, NULL, 0, 0 }
};


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
    ngx_pool_cleanup_t              *cln;
    ngx_http_monetize_jwks_t        *jw;
    ngx_http_monetize_jwks_check_t  *ck;

    if (!ngx_http_monetize_jwks_configured()
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

    jw = ngx_http_monetize_jwks_of(json_string_value(iss));

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


/* the keys were fetched (or not): the tokens that waited for them go on */

void
ngx_http_monetize_jwks_wake(ngx_http_monetize_jwks_t *jw)
{
    ngx_int_t                        rc;
    ngx_queue_t                     *q;
    ngx_http_monetize_jwks_check_t  *ck;

    while (!ngx_queue_empty(&jw->waiting)) {
        q = ngx_queue_head(&jw->waiting);
        ngx_queue_remove(q);

        ck = ngx_queue_data(q, ngx_http_monetize_jwks_check_t, queue);
        ck->queued = 0;

        rc = ngx_http_monetize_jwks_finish(ck);
        ck->handler(ck->request, rc);
    }
}
