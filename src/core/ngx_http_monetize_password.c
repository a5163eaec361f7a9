
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_http_monetize.h"
#include "ngx_http_monetize_password.h"


/*
 * bcrypt ("$2b$", libxcrypt) costs a quarter of a second of CPU at cost 12:
 * it runs in an nginx thread pool, never on the event loop. The request is
 * "blocked" meanwhile, so nginx cannot free it under the running thread.
 */


typedef struct {
    ngx_http_request_t                  *request;
    ngx_http_monetize_password_done_pt   done;
    char                                *password;
    size_t                               password_len;
    char                                *setting;   /* "$2b$" and salt */
    ngx_uint_t                           ok;
    struct crypt_data                    data;      /* output lands here */
} ngx_http_monetize_password_task_t;


static ngx_int_t ngx_http_monetize_password_post(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *setting,
    ngx_http_monetize_password_done_pt done);
static void ngx_http_monetize_password_thread(void *data, ngx_log_t *log);
static void ngx_http_monetize_password_event(ngx_event_t *ev);


ngx_int_t
ngx_http_monetize_password_hash(ngx_http_request_t *r, ngx_str_t *password,
    ngx_http_monetize_password_done_pt done)
{
    u_char                          rbytes[16];
    char                            salt[CRYPT_GENSALT_OUTPUT_SIZE];
    ngx_str_t                       setting;
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    if (RAND_bytes(rbytes, sizeof(rbytes)) != 1
        || crypt_gensalt_rn("$2b$", mcf->bcrypt_cost, (const char *) rbytes,
                            sizeof(rbytes), salt, sizeof(salt))
           == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                      "monetize: cannot make a bcrypt salt");
        return NGX_ERROR;
    }

    setting.data = (u_char *) salt;
    setting.len = ngx_strlen(salt);

    return ngx_http_monetize_password_post(r, password, &setting, done);
}


/*
 * Checks a password against a stored bcrypt hash: "done" gets the hash of
 * the password with the stored one's salt and cost, to compare with
 * ngx_http_monetize_password_matches(). NGX_DECLINED: the stored hash is
 * no bcrypt hash, so no password matches it.
 */

ngx_int_t
ngx_http_monetize_password_verify(ngx_http_request_t *r, ngx_str_t *password,
    ngx_str_t *hash, ngx_http_monetize_password_done_pt done)
{
    if (hash->len != NGX_HTTP_MONETIZE_PASSWORD_HASH_LEN
        || ngx_strncmp(hash->data, "$2", 2) != 0)
    {
        return NGX_DECLINED;
    }

    return ngx_http_monetize_password_post(r, password, hash, done);
}


ngx_uint_t
ngx_http_monetize_password_matches(ngx_str_t *stored, ngx_str_t *computed)
{
    return computed != NULL && stored->len == computed->len
           && CRYPTO_memcmp(stored->data, computed->data, stored->len) == 0;
}


static ngx_int_t
ngx_http_monetize_password_post(ngx_http_request_t *r, ngx_str_t *password,
    ngx_str_t *setting, ngx_http_monetize_password_done_pt done)
{
    ngx_thread_task_t                  *task;
    ngx_http_monetize_main_conf_t      *mcf;
    ngx_http_monetize_password_task_t  *pt;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_http_monetize_password_task_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    pt = task->ctx;
    pt->request = r;
    pt->done = done;

    pt->password = ngx_pnalloc(r->pool, password->len + 1);
    pt->setting = ngx_pnalloc(r->pool, setting->len + 1);

    if (pt->password == NULL || pt->setting == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) pt->password, password->data, password->len + 1);
    ngx_cpystrn((u_char *) pt->setting, setting->data, setting->len + 1);
    pt->password_len = password->len;

    task->handler = ngx_http_monetize_password_thread;
    task->event.handler = ngx_http_monetize_password_event;
    task->event.data = pt;

    if (ngx_thread_task_post(mcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main->blocked++;

    return NGX_OK;
}


/* Runs in a pool thread: touches nothing but the task. */

static void
ngx_http_monetize_password_thread(void *data, ngx_log_t *log)
{
    ngx_http_monetize_password_task_t *pt = data;

    char  *out;

    out = crypt_rn(pt->password, pt->setting, &pt->data, sizeof(pt->data));

    pt->ok = (out != NULL && out[0] != '*');

    OPENSSL_cleanse(pt->password, pt->password_len);
}


static void
ngx_http_monetize_password_event(ngx_event_t *ev)
{
    ngx_http_monetize_password_task_t *pt = ev->data;

    ngx_str_t            hash;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = pt->request;
    c = r->connection;

    r->main->blocked--;

    if (!pt->ok) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "monetize: bcrypt failed (bad cost or stored hash?)");
        pt->done(r, NULL);
        return;
    }

    hash.data = (u_char *) pt->data.output;
    hash.len = ngx_strlen(pt->data.output);

    pt->done(r, &hash);
}
