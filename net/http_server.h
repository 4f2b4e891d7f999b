// An HTTP/1.1 server (Boost.Beast) on the broker's own io_context: keep-alive, a body limit, and
// one handler that may answer later (a publish is answered once it is durable). The routes and
// their semantics live in http_api.h; this file is only the transport.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net/listener.h"

namespace cairn::net {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
// Answers one request by calling `respond` exactly once, now or later, on the io thread.
using HttpHandler =
    std::function<void(const HttpRequest& request, std::function<void(HttpResponse)> respond)>;

// Listener gives local_endpoint(), Start(), Drain() (idle connections close at once, busy ones
// after their response) and CloseAll().
class HttpServer : public Listener {
 public:
  // Binds and listens; throws boost::system::system_error if the address cannot be bound.
  // Requests whose body exceeds `max_body` get `too_large(request)` without reading the body.
  HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
             size_t max_body, HttpHandler handler,
             std::function<HttpResponse(const HttpRequest&)> too_large);
};

}  // namespace cairn::net
