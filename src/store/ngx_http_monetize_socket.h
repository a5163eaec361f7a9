
/*
 * Copyright (C) nginx-monetize authors
 */


#ifndef _NGX_HTTP_MONETIZE_SOCKET_H_INCLUDED_
#define _NGX_HTTP_MONETIZE_SOCKET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


void ngx_http_monetize_socket_release(ngx_connection_t *c);


#endif /* _NGX_HTTP_MONETIZE_SOCKET_H_INCLUDED_ */
