
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_portal.h"
#include "ngx_http_monetize_portal_dir.h"   /* made by config, in objs/ */


/*
 * The portal: three files, compiled into the module by the assembler's
 * .incbin (make rebuilds this object when one changes: config lists them
 * as dependencies), so an operator needs nothing but the directive. The
 * page is prepared once per location at configuration time (the title
 * and the API's path put in, its ETag computed); a request only picks a
 * file and sends it from memory.
 */


#define ngx_http_monetize_portal_embed(name, file)                            \
    __asm__(".section .rodata\n"                                              \
            ".balign 16\n"                                                    \
            ".globl " #name "\n"                                              \
            ".hidden " #name "\n"                                             \
            #name ":\n"                                                       \
            ".incbin \"" NGX_HTTP_MONETIZE_PORTAL_DIR "/" file "\"\n"         \
            ".globl " #name "_end\n"                                          \
            ".hidden " #name "_end\n"                                         \
            #name "_end:\n"                                                   \
            ".previous\n")

ngx_http_monetize_portal_embed(ngx_http_monetize_portal_html, "index.html");
ngx_http_monetize_portal_embed(ngx_http_monetize_portal_css, "portal.css");
ngx_http_monetize_portal_embed(ngx_http_monetize_portal_js, "portal.js");

extern const u_char  ngx_http_monetize_portal_html[];
extern const u_char  ngx_http_monetize_portal_html_end[];
extern const u_char  ngx_http_monetize_portal_css[];
extern const u_char  ngx_http_monetize_portal_css_end[];
extern const u_char  ngx_http_monetize_portal_js[];
extern const u_char  ngx_http_monetize_portal_js_end[];


#define NGX_HTTP_MONETIZE_PORTAL_TITLE_MAX  200


typedef struct {
    ngx_str_t                  name;      /* the last path segment */
    ngx_str_t                  type;
    ngx_str_t                  body;
    ngx_str_t                  etag;
} ngx_http_monetize_portal_file_t;


struct ngx_http_monetize_portal_s {
    ngx_http_monetize_portal_file_t  files[4];
};


static ngx_int_t ngx_http_monetize_portal_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_monetize_portal_header(ngx_http_request_t *r,
    char *name, char *value, size_t len);
static ngx_int_t ngx_http_monetize_portal_file(ngx_conf_t *cf,
    ngx_http_monetize_portal_file_t *f, char *name, char *type,
    ngx_str_t *body);
static ngx_int_t ngx_http_monetize_portal_page(ngx_conf_t *cf,
    ngx_str_t *page, ngx_str_t *title, ngx_str_t *api);


/*
 * Nothing inline may run (no 'unsafe-inline'), nothing may frame the page,
 * and the page talks only to its own origin: the API is mounted beside it.
 */
static char  ngx_http_monetize_portal_csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'";


static ngx_int_t
ngx_http_monetize_portal_handler(ngx_http_request_t *r)
{
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_str_t                         name;
    ngx_buf_t                        *b;
    ngx_uint_t                        i;
    ngx_chain_t                       out;
    ngx_table_elt_t                  *h;
    ngx_http_monetize_portal_t       *portal;
    ngx_http_monetize_loc_conf_t     *lcf;
    ngx_http_monetize_portal_file_t  *f;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_monetize_module);
    portal = lcf->portal;

    p = r->uri.data + r->uri.len;

    while (p > r->uri.data && p[-1] != '/') {
        p--;
    }

    name.data = p;
    name.len = r->uri.data + r->uri.len - p;

    f = NULL;

    for (i = 0; i < sizeof(portal->files) / sizeof(portal->files[0]); i++) {
        if (portal->files[i].name.len == name.len
            && ngx_strncmp(portal->files[i].name.data, name.data, name.len)
               == 0)
        {
            f = &portal->files[i];
            break;
        }
    }

    if (f == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = f->type;
    r->headers_out.content_type_len = f->type.len;
    r->headers_out.content_length_n = f->body.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value = f->etag;
    r->headers_out.etag = h;

    /* the ETag lets a browser revalidate cheaply; a new build is seen at
     * once, since the page's URLs carry no version */

    if (ngx_http_monetize_portal_header(r, "Cache-Control", "no-cache", 8)
        != NGX_OK
        || ngx_http_monetize_portal_header(r, "Content-Security-Policy",
               ngx_http_monetize_portal_csp,
               sizeof(ngx_http_monetize_portal_csp) - 1) != NGX_OK
        || ngx_http_monetize_portal_header(r, "X-Content-Type-Options",
                                           "nosniff", 7) != NGX_OK
        || ngx_http_monetize_portal_header(r, "X-Frame-Options", "DENY", 4)
           != NGX_OK
        || ngx_http_monetize_portal_header(r, "Referrer-Policy",
                                           "no-referrer", 11) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = f->body.data;
    b->last = f->body.data + f->body.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_monetize_portal_header(ngx_http_request_t *r, char *name,
    char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = len;

    return NGX_OK;
}


char *
ngx_http_monetize_portal(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_monetize_loc_conf_t *lcf = conf;

    u_char                      *p, *last;
    ngx_str_t                   *value, title, api, page, body;
    ngx_uint_t                   i;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_monetize_portal_t  *portal;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler || lcf->portal) {
        return "is duplicate, or the location has another content handler";
    }

    value = cf->args->elts;
    ngx_str_set(&title, "API portal");
    ngx_str_set(&api, "/v1/");

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "title=", 6) == 0) {
            title.data = value[i].data + 6;
            title.len = value[i].len - 6;

            last = title.data + title.len;

            for (p = title.data; p < last; p++) {
                if (*p < 0x20 || *p == 0x7f) {
                    break;
                }
            }

            if (title.len == 0
                || title.len > NGX_HTTP_MONETIZE_PORTAL_TITLE_MAX
                || p != last)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_portal: invalid \"%V\", give "
                                   "title=TEXT of 1 to %d characters",
                                   &value[i],
                                   NGX_HTTP_MONETIZE_PORTAL_TITLE_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "api=", 4) == 0) {
            api.data = value[i].data + 4;
            api.len = value[i].len - 4;

            /* a path of the same origin: the CSP allows no other */

            last = api.data + api.len;

            for (p = api.data; p < last; p++) {
                if (!(isalnum(*p) || *p == '/' || *p == '-' || *p == '_'
                      || *p == '.'))
                {
                    break;
                }
            }

            if (api.len < 2 || api.data[0] != '/' || api.data[1] == '/'
                || last[-1] != '/' || p != last)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "monetize_portal: invalid \"%V\", give "
                                   "api=/PATH/ (the monetize_api location "
                                   "on this server)", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "monetize_portal: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    portal = ngx_pcalloc(cf->pool, sizeof(ngx_http_monetize_portal_t));
    if (portal == NULL) {
        return NGX_CONF_ERROR;
    }

    page.data = (u_char *) ngx_http_monetize_portal_html;
    page.len = ngx_http_monetize_portal_html_end
               - ngx_http_monetize_portal_html;

    if (ngx_http_monetize_portal_page(cf, &page, &title, &api) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_monetize_portal_file(cf, &portal->files[0], "",
                                      "text/html; charset=utf-8", &page)
        != NGX_OK
        || ngx_http_monetize_portal_file(cf, &portal->files[1], "index.html",
                                         "text/html; charset=utf-8", &page)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    body.data = (u_char *) ngx_http_monetize_portal_css;
    body.len = ngx_http_monetize_portal_css_end
               - ngx_http_monetize_portal_css;

    if (ngx_http_monetize_portal_file(cf, &portal->files[2], "portal.css",
                                      "text/css; charset=utf-8", &body)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    body.data = (u_char *) ngx_http_monetize_portal_js;
    body.len = ngx_http_monetize_portal_js_end - ngx_http_monetize_portal_js;

    if (ngx_http_monetize_portal_file(cf, &portal->files[3], "portal.js",
                                      "text/javascript; charset=utf-8", &body)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    lcf->portal = portal;
    clcf->handler = ngx_http_monetize_portal_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_monetize_portal_file(ngx_conf_t *cf,
    ngx_http_monetize_portal_file_t *f, char *name, char *type,
    ngx_str_t *body)
{
    u_char     digest[16];
    ngx_md5_t  md5;

    f->name.data = (u_char *) name;
    f->name.len = ngx_strlen(name);
    f->type.data = (u_char *) type;
    f->type.len = ngx_strlen(type);
    f->body = *body;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, body->data, body->len);
    ngx_md5_final(digest, &md5);

    f->etag.len = 2 + 2 * sizeof(digest);
    f->etag.data = ngx_pnalloc(cf->pool, f->etag.len);
    if (f->etag.data == NULL) {
        return NGX_ERROR;
    }

    f->etag.data[0] = '"';
    ngx_hex_dump(f->etag.data + 1, digest, sizeof(digest));
    f->etag.data[f->etag.len - 1] = '"';

    return NGX_OK;
}


/* the page with {{title}} (escaped for HTML) and {{api}} put in */

static ngx_int_t
ngx_http_monetize_portal_page(ngx_conf_t *cf, ngx_str_t *page,
    ngx_str_t *title, ngx_str_t *api)
{
    u_char     *p, *last, *d, *out;
    size_t      len, tlen;
    ngx_str_t  *v;

    tlen = title->len + ngx_escape_html(NULL, title->data, title->len);

    len = 0;
    last = page->data + page->len;

    for (p = page->data; p < last; p++) {
        if (last - p >= 9 && ngx_strncmp(p, "{{title}}", 9) == 0) {
            len += tlen;
            p += 8;

        } else if (last - p >= 7 && ngx_strncmp(p, "{{api}}", 7) == 0) {
            len += api->len;
            p += 6;

        } else {
            len++;
        }
    }

    out = ngx_pnalloc(cf->pool, len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    d = out;

    for (p = page->data; p < last; p++) {
        v = NULL;

        if (last - p >= 9 && ngx_strncmp(p, "{{title}}", 9) == 0) {
            d = (u_char *) ngx_escape_html(d, title->data, title->len);
            p += 8;
            continue;
        }

        if (last - p >= 7 && ngx_strncmp(p, "{{api}}", 7) == 0) {
            v = api;
            p += 6;
        }

        if (v) {
            d = ngx_cpymem(d, v->data, v->len);

        } else {
            *d++ = *p;
        }
    }

    page->data = out;
    page->len = d - out;

    return NGX_OK;
}
