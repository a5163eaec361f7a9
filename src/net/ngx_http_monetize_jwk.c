
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "ngx_http_monetize_jwks_keys.h"


/*
 * One JWK (RFC 7517) into an OpenSSL public key: RSA (2048 bits or more),
 * EC on P-256 or P-384, OKP Ed25519. A key of another kind (above all
 * "oct", a shared secret) is left out of the set: an identity provider's
 * tokens are checked with public keys only.
 */


static EVP_PKEY *ngx_http_monetize_jwks_rsa(ngx_pool_t *pool, json_t *k);
static EVP_PKEY *ngx_http_monetize_jwks_ec(ngx_pool_t *pool, json_t *k,
    ngx_uint_t type);
static ngx_int_t ngx_http_monetize_jwks_b64(ngx_pool_t *pool, json_t *v,
    ngx_str_t *out);


/* NGX_OK; NGX_DECLINED, a key to leave out; NGX_ERROR */

ngx_int_t
ngx_http_monetize_jwk_parse(ngx_log_t *log, ngx_pool_t *pool, json_t *k,
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
