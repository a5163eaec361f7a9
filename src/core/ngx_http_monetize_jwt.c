
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/rand.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_jwt.h"


/*
 * Session access tokens: JWTs signed with HMAC-SHA256 under
 * monetize_jwt_secret, with the claims sub (the user id), iat, exp, jti and
 * typ "access". libjwt signs and checks them. A token is trusted only once
 * its header says HS256, read by us before libjwt sees it: a token that
 * names another algorithm (above all "none") is refused before anything
 * in it is used.
 */


#define NGX_HTTP_MONETIZE_JWT_HEADER_MAX  512


static ngx_int_t ngx_http_monetize_jwt_check_header(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_uint_t ngx_http_monetize_jwt_is_uuid(const char *s);


/* monetize_jwt_secret SECRET | env:NAME, at least 32 bytes */

char *
ngx_http_monetize_jwt_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char       *rv;
    ngx_str_t  *value;

    if (mcf->jwt_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rv = ngx_http_monetize_conf_secret(cf, &value[1], &mcf->jwt_secret);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (mcf->jwt_secret.len < NGX_HTTP_MONETIZE_JWT_SECRET_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_jwt_secret: the secret must have at "
                           "least %d bytes, it has %uz",
                           NGX_HTTP_MONETIZE_JWT_SECRET_MIN,
                           mcf->jwt_secret.len);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* monetize_jwt_ttl [access=TIME] [refresh=TIME] */

char *
ngx_http_monetize_jwt_ttl(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    time_t      t, *slot;
    ngx_str_t  *value, s;
    ngx_uint_t  i;

    if (mcf->jwt_access_ttl != NGX_CONF_UNSET
        || mcf->jwt_refresh_ttl != NGX_CONF_UNSET)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "access=", 7) == 0) {
            slot = &mcf->jwt_access_ttl;
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

        } else if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            slot = &mcf->jwt_refresh_ttl;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_jwt_ttl: invalid parameter \"%V\", "
                               "give access=TIME and/or refresh=TIME",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        t = ngx_parse_time(&s, 1);

        if (*slot != NGX_CONF_UNSET || t == (time_t) NGX_ERROR || t <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_jwt_ttl: invalid or repeated \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        *slot = t;
    }

    return NGX_CONF_OK;
}


void
ngx_http_monetize_jwt_init_conf(void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    ngx_conf_init_value(mcf->jwt_access_ttl, 15 * 60);
    ngx_conf_init_value(mcf->jwt_refresh_ttl, 30 * 24 * 60 * 60);
    ngx_conf_init_value(mcf->require_verified_email, 0);
}


/* A JWT has three base64url parts; an API key has no dot. */

ngx_uint_t
ngx_http_monetize_jwt_is_token(ngx_str_t *credential)
{
    ngx_uint_t   dots;
    u_char      *p, *last;

    dots = 0;
    last = credential->data + credential->len;

    for (p = credential->data; p < last; p++) {
        if (*p == '.') {
            dots++;
        }
    }

    return dots == 2;
}


ngx_int_t
ngx_http_monetize_jwt_issue(ngx_http_request_t *r, ngx_str_t *user_id,
    ngx_str_t *token)
{
    u_char                          rnd[16], jti[33], *sub;
    char                           *out;
    jwt_t                          *jwt;
    time_t                          now;
    ngx_int_t                       rc;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    sub = ngx_pnalloc(r->pool, user_id->len + 1);
    if (sub == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    ngx_cpystrn(sub, user_id->data, user_id->len + 1);
    *ngx_hex_dump(jti, rnd, sizeof(rnd)) = '\0';

    now = ngx_time();
    jwt = NULL;
    out = NULL;
    rc = NGX_ERROR;

    if (jwt_new(&jwt) != 0
        || jwt_add_grant(jwt, "sub", (char *) sub) != 0
        || jwt_add_grant_int(jwt, "iat", (long) now) != 0
        || jwt_add_grant_int(jwt, "exp", (long) (now + mcf->jwt_access_ttl))
           != 0
        || jwt_add_grant(jwt, "jti", (char *) jti) != 0
        || jwt_add_grant(jwt, "typ", "access") != 0
        || jwt_set_alg(jwt, JWT_ALG_HS256, mcf->jwt_secret.data,
                       (int) mcf->jwt_secret.len) != 0
        || (out = jwt_encode_str(jwt)) == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                      "monetize: cannot make an access token");
        goto done;
    }

    token->len = ngx_strlen(out);
    token->data = ngx_pnalloc(r->pool, token->len);

    if (token->data) {
        ngx_memcpy(token->data, out, token->len);
        rc = NGX_OK;
    }

done:

    if (out) {
        free(out);
    }

    if (jwt) {
        jwt_free(jwt);
    }

    return rc;
}


/*
 * NGX_OK and the token's user, or NGX_HTTP_MONETIZE_JWT_INVALID (any
 * doubt), NGX_HTTP_MONETIZE_JWT_EXPIRED (a good token past its exp), or
 * NGX_ERROR.
 */

ngx_int_t
ngx_http_monetize_jwt_verify(ngx_http_request_t *r, ngx_str_t *token,
    ngx_str_t *user_id)
{
    long                            exp, nbf;
    char                           *text;
    jwt_t                          *jwt;
    time_t                          now;
    ngx_int_t                       rc;
    const char                     *typ, *sub;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (mcf->jwt_secret.len == 0) {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    rc = ngx_http_monetize_jwt_check_header(r, token);
    if (rc != NGX_OK) {
        return rc;
    }

    text = ngx_pnalloc(r->pool, token->len + 1);
    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) text, token->data, token->len + 1);

    jwt = NULL;

    /* with a key, jwt_decode() checks the signature of the alg it reads */

    if (jwt_decode(&jwt, text, mcf->jwt_secret.data,
                   (int) mcf->jwt_secret.len)
        != 0 || jwt == NULL)
    {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    rc = NGX_HTTP_MONETIZE_JWT_INVALID;

    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        goto done;
    }

    typ = jwt_get_grant(jwt, "typ");
    sub = jwt_get_grant(jwt, "sub");

    if (typ == NULL || ngx_strcmp(typ, "access") != 0
        || sub == NULL || !ngx_http_monetize_jwt_is_uuid(sub))
    {
        goto done;
    }

    now = ngx_time();

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0) {
        goto done;
    }

    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    if (errno == 0 && nbf > (long) now) {
        goto done;
    }

    if (exp <= (long) now) {
        rc = NGX_HTTP_MONETIZE_JWT_EXPIRED;
        goto done;
    }

    user_id->len = ngx_strlen(sub);
    user_id->data = ngx_pnalloc(r->pool, user_id->len);
    if (user_id->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(user_id->data, sub, user_id->len);
    rc = NGX_OK;

done:

    jwt_free(jwt);

    return rc;
}


/* The header, read before anything else: {"alg":"HS256"} and no other. */

static ngx_int_t
ngx_http_monetize_jwt_check_header(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char        *dot, buf[NGX_HTTP_MONETIZE_JWT_HEADER_MAX];
    json_t        *header, *alg, *typ;
    ngx_str_t      src, dst;
    ngx_int_t      rc;
    json_error_t   error;

    dot = ngx_strlchr(token->data, token->data + token->len, '.');
    if (dot == NULL) {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    src.data = token->data;
    src.len = dot - token->data;

    if (src.len == 0
        || ngx_base64_decoded_length(src.len) > sizeof(buf))
    {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    dst.data = buf;

    if (ngx_decode_base64url(&dst, &src) != NGX_OK) {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    header = json_loadb((char *) dst.data, dst.len, JSON_REJECT_DUPLICATES,
                        &error);
    if (header == NULL) {
        return NGX_HTTP_MONETIZE_JWT_INVALID;
    }

    rc = NGX_HTTP_MONETIZE_JWT_INVALID;

    alg = json_object_get(header, "alg");
    typ = json_object_get(header, "typ");

    if (json_is_object(header)
        && json_is_string(alg) && ngx_strcmp(json_string_value(alg),
                                             "HS256") == 0
        && (typ == NULL || (json_is_string(typ)
                            && ngx_strcasecmp((u_char *) json_string_value(typ),
                                              (u_char *) "JWT") == 0))
        && json_object_get(header, "crit") == NULL)
    {
        rc = NGX_OK;
    }

    json_decref(header);

    return rc;
}


static ngx_uint_t
ngx_http_monetize_jwt_is_uuid(const char *s)
{
    ngx_uint_t  i;

    for (i = 0; s[i]; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }

        } else if (!((s[i] >= '0' && s[i] <= '9')
                     || (s[i] >= 'a' && s[i] <= 'f')))
        {
            return 0;
        }
    }

    return i == 36;
}
