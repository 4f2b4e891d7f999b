// An HTTP/1.1 client for one server (Boost.Beast): one keep-alive connection, requests sent one
// after another in the order given, a fresh connection when the old one dropped. The workers use
// it for InfluxDB (/write, /query) and for cairnd's channel API; the tests use it too.
//
// Threading: everything runs on the executor given to the constructor; callbacks are called
// there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/beast/http/verb.hpp>

#include "net/tls.h"
#include "src/base/error.h"

namespace cairn::net {

// An answered request is a value whatever its status (callers treat 4xx and 5xx differently);
// `transport` fails (kUnavailable) when there was no answer: refused, reset, timed out.
struct HttpResult {
  Status transport;
  int status = 0;
  std::string body;

  bool answered() const { return transport.has_value(); }
  bool ok() const { return answered() && status >= 200 && status < 300; }
  // For logs: "HTTP 500: <body>" or the transport error.
  std::string Describe() const;
};

// "http://host:port[/base]" or "https://...": the parts an HttpClient needs.
struct HttpUrl {
  std::string host;
  uint16_t port = 80;     // 443 for https:// without a port
  std::string base_path;  // without a trailing '/'; "" for the root
  bool https = false;
};
std::optional<HttpUrl> ParseHttpUrl(std::string_view url);

class HttpClient {
 public:
  using Done = std::function<void(HttpResult)>;

  // With `tls`, HTTPS: each connection's handshake checks the server's certificate against the
  // context's CAs and its name against `host` (a DNS name or an IP address), and sends `host` as
  // the server name (SNI) when it is a DNS name.
  HttpClient(boost::asio::any_io_executor ex, std::string host, uint16_t port,
             std::chrono::milliseconds timeout = std::chrono::seconds(30),
             std::shared_ptr<TlsContext> tls = nullptr);
  ~HttpClient();  // requests still queued are dropped: their callbacks are not called
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Queues a request. A request that fails on a reused keep-alive connection before any answer
  // arrived (the server closed it while idle) is sent once more on a fresh one; so only send
  // requests that are safe to repeat (InfluxDB writes of timestamped points are).
  void Request(boost::beast::http::verb method, std::string target, std::string body,
               std::string content_type, Done done);

  // The same, for coroutines: co_await client.AsyncRequest(..., asio::use_awaitable).
  template <typename Token>
  auto AsyncRequest(boost::beast::http::verb method, std::string target, std::string body,
                    std::string content_type, Token&& token) {
    return boost::asio::async_initiate<Token, void(HttpResult)>(
        [this](auto handler, boost::beast::http::verb m, std::string t, std::string b,
               std::string ct) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          Request(m, std::move(t), std::move(b), std::move(ct),
                  [h](HttpResult r) { (*h)(std::move(r)); });
        },
        token, method, std::move(target), std::move(body), std::move(content_type));
  }

  // As NSQ's HTTP clients do (nsqadmin's, the tools'): a broker's 403 TLS_REQUIRED moves this
  // client to HTTPS on the `https_port` the answer names, with `tls`, and the request is sent
  // again there; later requests go there too.
  void FollowTlsRequired(std::shared_ptr<TlsContext> tls);

  size_t queued() const;
  // Sent as the Authorization header of every request from now on ("" sends none).
  void SetAuthorization(std::string value);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cairn::net
