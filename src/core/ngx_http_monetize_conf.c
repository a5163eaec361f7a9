
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_api.h"


/*
 * The core module's directives: the stores, the secrets, the API's own
 * limit and the links' base; and the parsers other modules' directives
 * share (secrets from the environment, bounded numbers).
 */


#define NGX_HTTP_MONETIZE_SECRET_MIN  16


char *
ngx_http_monetize_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    if (mcf->cache) {
        return "is duplicate";
    }

    return ngx_http_monetize_cache_conf(cf, cf->args->elts, cf->args->nelts,
                                        &mcf->cache);
}


/* monetize_limits zone=NAME:SIZE: where node-local rate limits are kept */

char *
ngx_http_monetize_limits(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (mcf->limits) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "zone=", 5) != 0) {
        goto invalid;
    }

    name.data = value[1].data + 5;
    p = ngx_strlchr(name.data, value[1].data + value[1].len, ':');

    if (p == NULL) {
        goto invalid;
    }

    name.len = p - name.data;
    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (name.len == 0 || size == NGX_ERROR) {
        goto invalid;
    }

    mcf->limits = ngx_http_monetize_shm_add(cf, &name, size, sizeof(int64_t),
                                            "monetize_limits");

    return mcf->limits ? NGX_CONF_OK : NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "monetize_limits: invalid \"%V\", give "
                       "zone=NAME:SIZE", &value[1]);
    return NGX_CONF_ERROR;
}


/* monetize_api_limit off | RATE [burst=N], RATE as 10r/m or 2r/s */

char *
ngx_http_monetize_set_api_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    size_t      len;
    ngx_int_t   rate, burst, scale;
    ngx_str_t  *value;

    if (mcf->api_limit != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        mcf->api_limit = 0;
        return NGX_CONF_OK;
    }

    len = value[1].len;
    scale = 0;

    if (len > 3 && ngx_strncmp(value[1].data + len - 3, "r/s", 3) == 0) {
        scale = 1;

    } else if (len > 3 && ngx_strncmp(value[1].data + len - 3, "r/m", 3) == 0)
    {
        scale = 60;
    }

    rate = scale ? ngx_atoi(value[1].data, len - 3) : NGX_ERROR;

    if (rate <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_api_limit: invalid rate \"%V\", give "
                           "\"off\" or a rate such as 10r/m or 2r/s",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    burst = 5;

    if (cf->args->nelts == 3) {
        burst = (ngx_strncmp(value[2].data, "burst=", 6) == 0)
                ? ngx_atoi(value[2].data + 6, value[2].len - 6) : NGX_ERROR;

        if (burst <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_api_limit: invalid \"%V\", give "
                               "burst=N with N above 0", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    mcf->api_limit = (int64_t) scale * 1000000 / rate;
    mcf->api_limit_burst = burst;

    return NGX_CONF_OK;
}


char *
ngx_http_monetize_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    if (mcf->redis) {
        return "is duplicate";
    }

    return ngx_http_monetize_redis_conf(cf, cf->args->elts, cf->args->nelts,
                                        &mcf->redis);
}


/* monetize_postgres "conninfo" [pool=N] [timeout=T] */

char *
ngx_http_monetize_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i, size;
    ngx_msec_t   timeout;

    if (mcf->pg) {
        return "is duplicate";
    }

    value = cf->args->elts;
    size = 8;
    timeout = 5000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);

            if (n < 1 || n > 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_postgres: invalid \"%V\", the "
                                   "pool takes 1 to 1024 connections",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            size = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            timeout = ngx_parse_time(&s, 0);

            if (timeout == (ngx_msec_t) NGX_ERROR || timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_postgres: invalid \"%V\", give "
                                   "a time such as timeout=5s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_postgres: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    mcf->pg = ngx_http_monetize_pg_pool_create(cf, &value[1], size, timeout);
    if (mcf->pg == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_monetize_key_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    char       *rv;
    ngx_str_t  *value;

    if (mcf->key_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rv = ngx_http_monetize_conf_secret(cf, &value[1], &mcf->key_secret);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (mcf->key_secret.len < NGX_HTTP_MONETIZE_SECRET_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_key_secret: the secret must have at "
                           "least %d characters",
                           NGX_HTTP_MONETIZE_SECRET_MIN);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_monetize_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_monetize_main_conf_t  *mcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another content handler";
    }

    clcf->handler = ngx_http_monetize_api_handler;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_monetize_module);
    mcf->api_used = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_monetize_smtp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    if (mcf->smtp) {
        return "is duplicate";
    }

    return ngx_http_monetize_smtp_conf(cf, cf->args->elts, cf->args->nelts,
                                       &mcf->smtp);
}


/* monetize_public_url URL: the base of the links that mails carry */

char *
ngx_http_monetize_public_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_main_conf_t *mcf = conf;

    u_char     *p, *last;
    ngx_str_t  *value, url;

    if (mcf->public_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = value[1];

    while (url.len && url.data[url.len - 1] == '/') {
        url.len--;
    }

    last = url.data + url.len;

    /* it goes into mails' HTML as it is: nothing that needs escaping */

    for (p = url.data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || ngx_strchr("\"'<>&\\`", *p)) {
            break;
        }
    }

    if (p != last
        || !((url.len > 7 && ngx_strncmp(url.data, "http://", 7) == 0)
             || (url.len > 8 && ngx_strncmp(url.data, "https://", 8) == 0)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_public_url: invalid URL \"%V\", give "
                           "http(s)://host[:port][/path] without quotes, "
                           "\"<\", \">\" or \"&\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->public_url = url;

    return NGX_CONF_OK;
}


/*
 * A secret given in the configuration, or "env:NAME" for one taken from
 * the environment (keep it for reloads with nginx's "env NAME;").
 */

char *
ngx_http_monetize_conf_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *out)
{
    u_char     *name;
    char       *env;
    ngx_str_t  *directive;

    if (value->len <= 4 || ngx_strncmp(value->data, "env:", 4) != 0) {
        *out = *value;
        return NGX_CONF_OK;
    }

    name = ngx_pnalloc(cf->temp_pool, value->len - 3);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(name, value->data + 4, value->len - 3);

    env = getenv((char *) name);
    directive = cf->args->elts;

    if (env == NULL || env[0] == '\0') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: the environment variable \"%s\" is not set "
                           "(export it, and keep it with \"env %s;\")",
                           &directive[0], name, name);
        return NGX_CONF_ERROR;
    }

    out->len = ngx_strlen(env);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(out->data, (u_char *) env, out->len + 1);

    return NGX_CONF_OK;
}


/*
 * ngx_conf_set_num_slot() with bounds (cmd->post: ngx_conf_num_bounds_t)
 * whose error names the directive, the value and the range.
 */

char *
ngx_http_monetize_conf_set_num(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_int_t              *np, n;
    ngx_str_t              *value;
    ngx_conf_num_bounds_t  *bounds;

    np = (ngx_int_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    bounds = cmd->post;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < bounds->low || n > bounds->high) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: invalid value \"%V\", give a whole number "
                           "from %i to %i", &value[0], &value[1],
                           bounds->low, bounds->high);
        return NGX_CONF_ERROR;
    }

    *np = n;

    return NGX_CONF_OK;
}
