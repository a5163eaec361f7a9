
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
    ngx_http_request_t                      *request;
    ngx_http_monetize_password_done_pt       done;
    ngx_http_monetize_password_verified_pt   verified;  /* else: hashing */
    char                                    *password;
    size_t                                   password_len;
    char                                    *setting;   /* "$2b$", salt */
    ngx_uint_t                               ok;
    ngx_uint_t                               match;     /* verifying */
    struct crypt_data                        data;      /* output */
} ngx_http_monetize_password_task_t;


static void ngx_http_monetize_password_thread(void *data, ngx_log_t *log);
static void ngx_http_monetize_password_event(ngx_event_t *ev);
static ngx_int_t ngx_http_monetize_password_post(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *setting,
    ngx_http_monetize_password_done_pt done,
    ngx_http_monetize_password_verified_pt verified);


ngx_int_t
ngx_http_monetize_password_hash(ngx_http_request_t *r, ngx_str_t *password,
    ngx_http_monetize_password_done_pt done)
{
    u_char                              rbytes[16];
    char                                salt[CRYPT_GENSALT_OUTPUT_SIZE];
    ngx_str_t                           setting;
    ngx_http_monetize_main_conf_t      *mcf;

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

    return ngx_http_monetize_password_post(r, password, &setting, done, NULL);
}


/*
 * Checks a password against a stored hash: bcrypt again with the hash as
 * the setting (its cost and salt), then the results compared in constant
 * time. A hash of the configured cost that no password gives (a login for
 * an unknown address) costs the same work as a real one.
 */

/*
 * A well-formed bcrypt hash of the configured cost that no password gives:
 * what an unknown address is checked against.
 */

ngx_int_t
ngx_http_monetize_password_dummy(ngx_http_request_t *r, ngx_str_t *hash)
{
    ngx_http_monetize_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_monetize_module);

    hash->data = ngx_pnalloc(r->pool, NGX_HTTP_MONETIZE_BCRYPT_LEN);
    if (hash->data == NULL) {
        return NGX_ERROR;
    }

    hash->len = ngx_sprintf(hash->data, "$2b$%02i$%s", mcf->bcrypt_cost,
                            "JustAFixedSaltNoMatch.NotTheHashOfAnyPassword"
                            "AtAll...")
                - hash->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_monetize_password_verify(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *hash,
    ngx_http_monetize_password_verified_pt verified)
{
    return ngx_http_monetize_password_post(r, password, hash, NULL, verified);
}


static ngx_int_t
ngx_http_monetize_password_post(ngx_http_request_t *r, ngx_str_t *password,
    ngx_str_t *setting, ngx_http_monetize_password_done_pt done,
    ngx_http_monetize_password_verified_pt verified)
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
    pt->verified = verified;

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

    char    *out;
    size_t   len;

    out = crypt_rn(pt->password, pt->setting, &pt->data, sizeof(pt->data));

    pt->ok = (out != NULL && out[0] != '*');

    if (pt->ok && pt->verified) {
        len = ngx_strlen(pt->setting);
        pt->match = (ngx_strlen(out) == len
                     && CRYPTO_memcmp(out, pt->setting, len) == 0);
        OPENSSL_cleanse(pt->data.output, sizeof(pt->data.output));
    }

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

    if (pt->verified) {
        if (!pt->ok) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "monetize: bcrypt failed on a stored hash");
        }

        pt->verified(r, pt->ok ? (ngx_int_t) pt->match : NGX_ERROR);
        return;
    }

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
