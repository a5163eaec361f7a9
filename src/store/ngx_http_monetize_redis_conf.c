
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_redis_conn.h"


/*
 * monetize_redis host:port|unix:/path [password=...|password=env:NAME]
 *                [db=N] [timeout=T] [prefix=STRING] [batch=N]
 *
 * A host name is resolved here, once: hiredis 0.14 connects through a
 * blocking getaddrinfo(), which on a numeric address does no lookup.
 */


static char *ngx_http_monetize_redis_address(ngx_conf_t *cf,
    ngx_str_t *value, ngx_http_monetize_redis_t *redis);
static void ngx_http_monetize_redis_script_sha(
    ngx_http_monetize_redis_t *redis);


char *
ngx_http_monetize_redis_conf(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_http_monetize_redis_t **redisp)
{
    char                       *rv;
    ngx_int_t                   n;
    ngx_str_t                   s;
    ngx_uint_t                  i;
    ngx_msec_t                  timeout;
    ngx_http_monetize_redis_t  *redis;

    redis = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_redis_t));
    if (redis == NULL) {
        return NGX_CONF_ERROR;
    }

    redis->name = args[1];
    redis->db = -1;
    redis->timeout = 100;
    ngx_str_set(&redis->prefix, "monetize:");
    redis->batch_max = NGX_HTTP_MONETIZE_REDIS_BATCH;

    for (i = 2; i < nargs; i++) {

        if (ngx_strncmp(args[i].data, "password=", 9) == 0) {
            s.data = args[i].data + 9;
            s.len = args[i].len - 9;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_redis: invalid \"%V\", give "
                                   "password=SECRET or password=env:NAME",
                                   &args[i]);
                return NGX_CONF_ERROR;
            }

            rv = ngx_http_monetize_conf_secret(cf, &s, &redis->password);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_strncmp(args[i].data, "db=", 3) == 0) {
            n = ngx_atoi(args[i].data + 3, args[i].len - 3);

            if (n == NGX_ERROR || n > 0x7fffffff) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_redis: invalid \"%V\", give a "
                                   "database number from 0", &args[i]);
                return NGX_CONF_ERROR;
            }

            redis->db = n;
            continue;
        }

        if (ngx_strncmp(args[i].data, "timeout=", 8) == 0) {
            s.data = args[i].data + 8;
            s.len = args[i].len - 8;

            timeout = ngx_parse_time(&s, 0);

            if (timeout == (ngx_msec_t) NGX_ERROR || timeout == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_redis: invalid \"%V\", give a "
                                   "time such as timeout=100ms", &args[i]);
                return NGX_CONF_ERROR;
            }

            redis->timeout = timeout;
            continue;
        }

        if (ngx_strncmp(args[i].data, "batch=", 6) == 0) {
            n = ngx_atoi(args[i].data + 6, args[i].len - 6);

            if (n < 1 || n > NGX_HTTP_MONETIZE_REDIS_BATCH_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_redis: invalid \"%V\", give "
                                   "batch=N from 1 to %d calls", &args[i],
                                   NGX_HTTP_MONETIZE_REDIS_BATCH_MAX);
                return NGX_CONF_ERROR;
            }

            redis->batch_max = n;
            continue;
        }

        if (ngx_strncmp(args[i].data, "prefix=", 7) == 0) {
            redis->prefix.data = args[i].data + 7;
            redis->prefix.len = args[i].len - 7;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_redis: invalid parameter \"%V\"",
                           &args[i]);
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_monetize_redis_address(cf, &args[1], redis);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    ngx_http_monetize_redis_script_sha(redis);

    *redisp = redis;

    return NGX_CONF_OK;
}


static char *
ngx_http_monetize_redis_address(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_monetize_redis_t *redis)
{
    u_char      *p;
    size_t       len;
    ngx_url_t    u;
    ngx_uint_t   i;
    ngx_addr_t  *addr;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = *value;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_redis: %s in \"%V\"", u.err, value);
        }

        return NGX_CONF_ERROR;
    }

    if (u.family == AF_UNIX) {
        len = value->len - (sizeof("unix:") - 1);

        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(p, value->data + sizeof("unix:") - 1, len + 1);

        redis->host = (char *) p;
        redis->port = 0;

        return NGX_CONF_OK;
    }

    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_redis: no port in \"%V\", give "
                           "host:port (Redis listens on 6379 by default)",
                           value);
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_redis: host not found in \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    /*
     * One connection a worker, to one address: the name's first IPv4 one,
     * as hiredis itself would pick, else its first.
     */

    addr = &u.addrs[0];

    for (i = 0; i < u.naddrs; i++) {
        if (u.addrs[i].sockaddr->sa_family == AF_INET) {
            addr = &u.addrs[i];
            break;
        }
    }

    p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(addr->sockaddr, addr->socklen, p,
                        NGX_SOCKADDR_STRLEN, 0);
    p[len] = '\0';

    redis->host = (char *) p;
    redis->port = ngx_inet_get_port(addr->sockaddr);

    return NGX_CONF_OK;
}


static void
ngx_http_monetize_redis_script_sha(ngx_http_monetize_redis_t *redis)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, ngx_http_monetize_redis_script.data,
                    ngx_http_monetize_redis_script.len);
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(redis->sha, digest, sizeof(digest));
}
