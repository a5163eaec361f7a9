
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize.h"


/*
 * Configuration: the conninfo is parsed now, "env:NAME" values are taken
 * from the environment, and a host name is resolved once, here, because
 * libpq would otherwise resolve it synchronously on every connect.
 */

ngx_int_t
ngx_http_monetize_pg_conninfo_parse(ngx_conf_t *cf, ngx_str_t *conninfo,
    ngx_msec_t timeout, ngx_http_monetize_pg_conninfo_t *ci)
{
    char                         *err, *info;
    u_char                       *p;
    ngx_str_t                     value, host, hostaddr, port, dbname;
    ngx_url_t                     u;
    ngx_uint_t                    n, i, has_hostaddr, has_gss, has_app,
                                  options;
    PQconninfoOption             *opts, *o;

    info = ngx_pnalloc(cf->pool, conninfo->len + 1);
    if (info == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) info, conninfo->data, conninfo->len + 1);

    err = NULL;
    opts = PQconninfoParse(info, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_postgres: invalid conninfo: %s",
                           err ? err : "out of memory");
        PQfreemem(err);
        return NGX_ERROR;
    }

    n = 0;
    options = 0;
    has_hostaddr = 0;
    has_gss = 0;
    has_app = 0;
    ngx_str_null(&host);
    ngx_str_null(&hostaddr);
    ngx_str_null(&port);
    ngx_str_null(&dbname);

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        n++;

        if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            has_hostaddr = 1;

        } else if (ngx_strcmp(o->keyword, "gssencmode") == 0) {
            has_gss = 1;

        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            has_app = 1;
        }
    }

    /* room for hostaddr, gssencmode, application_name, options, NULL */

    ci->keywords = ngx_pcalloc(cf->pool, (n + 5) * sizeof(char *));
    ci->values = ngx_pcalloc(cf->pool, (n + 5) * sizeof(char *));

    if (ci->keywords == NULL || ci->values == NULL) {
        goto failed;
    }

    i = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        value.data = (u_char *) o->val;
        value.len = ngx_strlen(o->val);

        if (value.len > 4 && ngx_strncmp(value.data, "env:", 4) == 0) {
            if (ngx_http_monetize_conf_secret(cf, &value, &value)
                != NGX_CONF_OK)
            {
                goto failed;
            }

        } else {
            p = ngx_pnalloc(cf->pool, value.len + 1);
            if (p == NULL) {
                goto failed;
            }

            ngx_cpystrn(p, value.data, value.len + 1);
            value.data = p;
        }

        p = ngx_pnalloc(cf->pool, ngx_strlen(o->keyword) + 1);
        if (p == NULL) {
            goto failed;
        }

        ngx_cpystrn(p, (u_char *) o->keyword, ngx_strlen(o->keyword) + 1);
        ci->keywords[i] = (char *) p;

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = value;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = value;

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = value;

        } else if (ngx_strcmp(o->keyword, "dbname") == 0) {
            dbname = value;

        } else if (ngx_strcmp(o->keyword, "options") == 0) {
            options = i;
        }

        ci->values[i++] = (char *) value.data;
    }

    if (host.len && !has_hostaddr && host.data[0] != '/'
        && host.data[0] != '@')
    {
        if (ngx_strlchr(host.data, host.data + host.len, ',')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_postgres: a list of hosts \"%V\" is "
                               "not supported", &host);
            goto failed;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));
        u.host = host;
        u.port = 5432;

        if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "monetize_postgres: host \"%V\" not found",
                               &host);
            goto failed;
        }

        p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (p == NULL) {
            goto failed;
        }

        value.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                  p, NGX_SOCKADDR_STRLEN, 0);
        p[value.len] = '\0';

        ci->keywords[i] = "hostaddr";
        ci->values[i++] = (char *) p;
    }

    if (!has_gss) {
        /* GSSAPI negotiation may block on a KDC: off unless asked for */
        ci->keywords[i] = "gssencmode";
        ci->values[i++] = "disable";
    }

    if (!has_app) {
        ci->keywords[i] = "application_name";
        ci->values[i++] = "nginx-monetize";
    }

    /*
     * The server ends a statement that runs past the timeout and rolls it
     * back, so a timed-out statement has a definite outcome; our own timer,
     * a grace later, only catches a server or network that went silent.
     */

    if (options == 0) {
        options = i++;
        ci->keywords[options] = "options";
        ci->values[options] = "";
    }

    p = ngx_pnalloc(cf->pool, ngx_strlen(ci->values[options])
                              + sizeof(" -c statement_timeout=ms")
                              + NGX_INT_T_LEN);
    if (p == NULL) {
        goto failed;
    }

    *ngx_sprintf(p, "%s -c statement_timeout=%Mms",
                 ci->values[options], timeout) = '\0';
    ci->values[options] = (char *) p;

    if (host.len == 0) {
        host = hostaddr;
    }

    ci->name.len = host.len + port.len + dbname.len + 2;
    ci->name.data = ngx_pnalloc(cf->pool, ci->name.len);
    if (ci->name.data == NULL) {
        goto failed;
    }

    ngx_sprintf(ci->name.data, "%V:%V/%V", &host, &port, &dbname);

    PQconninfoFree(opts);

    return NGX_OK;

failed:

    PQconninfoFree(opts);

    return NGX_ERROR;
}
