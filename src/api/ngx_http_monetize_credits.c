
/*
 * Copyright (C) nginx-monetize authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_monetize_api.h"


/*
 * Prepaid credits as the account holder sees them. Balances change only
 * through monetize_credit() in SQL, which writes the ledger in the same
 * transaction.
 */


/* GET /verify_credits, GET /credits: the balance came with the caller */

ngx_int_t
ngx_http_monetize_balance_handler(ngx_http_request_t *r,
    ngx_http_monetize_api_ctx_t *ctx)
{
    return ngx_http_monetize_send_json(r, NGX_HTTP_OK,
               json_pack("{s:I}", "balance",
                         (json_int_t) ctx->caller.balance));
}
