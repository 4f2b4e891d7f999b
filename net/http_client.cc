#include "net/http_client.h"

#include <deque>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

namespace cairn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string HttpResult::Describe() const {
  if (!answered()) return transport.error().message;
  std::string_view b(body);
  while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.remove_suffix(1);
  if (b.size() > 300) b = b.substr(0, 300);
  return fmt::format("HTTP {}: {}", status, b);
}

std::optional<HttpUrl> ParseHttpUrl(std::string_view text) {
  auto url = boost::urls::parse_uri(text);
  if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty()) {
    return std::nullopt;
  }
  HttpUrl out;
  out.https = url->scheme() == "https";
  if (out.https) out.port = 443;
  out.host = url->host();
  if (out.host.size() > 2 && out.host.front() == '[')
    out.host = out.host.substr(1, out.host.size() - 2);
  if (url->has_port()) {
    if (url->port_number() == 0) return std::nullopt;
    out.port = url->port_number();
  }
  out.base_path = url->path();
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  return out;
}

struct HttpClient::Impl : std::enable_shared_from_this<Impl> {
  struct Pending {
    http::request<http::string_body> request;
    Done done;
  };

  Impl(asio::any_io_executor ex, std::string h, uint16_t p, std::chrono::milliseconds t,
       std::shared_ptr<TlsContext> c)
      : stream(ex), resolver(ex), host(std::move(h)), port(p), timeout(t), tls(std::move(c)) {}

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    while (!queue.empty() && !stopped) {
      Pending& p = queue.front();
      HttpResult result;
      for (int attempt = 0; attempt < 2; ++attempt) {
        const bool reused = connected;
        result = co_await Exchange(p.request);
        if (stopped) co_return;
        if (result.answered() || !reused) break;  // a fresh connection that fails is final
      }
      if (MovedToHttps(result)) {
        result = co_await Exchange(p.request);
        if (stopped) co_return;
      }
      Done done = std::move(p.done);
      queue.pop_front();
      if (done) done(std::move(result));
    }
    running = false;
  }

  asio::awaitable<HttpResult> Exchange(http::request<http::string_body>& request) {
    HttpResult result;
    boost::system::error_code ec;
    if (!connected) {
      co_await Connect(ec);
      if (ec) {
        Disconnect();
        result.transport =
            Fail(Errc::kUnavailable, fmt::format("connect {}:{}: {}", host, port, ec.message()));
        co_return result;
      }
      connected = true;
    }
    request.set(http::field::host, fmt::format("{}:{}", host, port));  // the port may have moved
    stream.expires_after(timeout);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    if (secure) {
      co_await WriteRead(*secure, request, parser, ec);
    } else {
      co_await WriteRead(stream, request, parser, ec);
    }
    if (ec) {
      Disconnect();
      result.transport =
          Fail(Errc::kUnavailable,
               fmt::format("{}:{}{}: {}", host, port, std::string(request.target()),
                           ec == beast::error::timeout ? "timed out" : ec.message()));
      co_return result;
    }
    auto& response = parser.get();
    result.status = static_cast<int>(response.result_int());
    result.body = std::move(response.body());
    if (!response.keep_alive()) Disconnect();
    co_return result;
  }

  // Whether `result` is nsqd's TLS_REQUIRED and this client, told to follow it, now speaks
  // HTTPS on the port it names.
  bool MovedToHttps(const HttpResult& result) {
    if (!follow_tls || tls || result.status != 403) return false;
    const auto body = nlohmann::json::parse(result.body, nullptr, false);
    if (!body.is_object() || body.value("message", "") != "TLS_REQUIRED") return false;
    const int https_port = body.value("https_port", 0);
    if (https_port <= 0 || https_port > 65535) return false;
    Disconnect();
    port = static_cast<uint16_t>(https_port);
    tls = std::move(follow_tls);
    return true;
  }

  // A fresh connection, and with TLS its handshake; the stream's deadline covers both.
  asio::awaitable<void> Connect(boost::system::error_code& ec) {
    stream.expires_after(timeout);
    auto endpoints = co_await resolver.async_resolve(host, std::to_string(port),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec || !tls) co_return;
    secure.emplace(stream, *tls);
    ExpectServerName(secure->native_handle(), host);
    co_await secure->async_handshake(asio::ssl::stream_base::client,
                                     asio::redirect_error(asio::use_awaitable, ec));
  }

  template <typename Stream>
  asio::awaitable<void> WriteRead(Stream& s, http::request<http::string_body>& request,
                                  http::response_parser<http::string_body>& parser,
                                  boost::system::error_code& ec) {
    co_await http::async_write(s, request, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await http::async_read(s, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // Between exchanges only: nothing may be using `secure`.
  void Disconnect() {
    secure.reset();  // an SSL session does not outlive its connection
    CloseSocket();
    buffer.clear();
    connected = false;
  }

  void CloseSocket() {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
  }

  beast::tcp_stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buffer;
  std::string host;
  std::string authorization;  // the header, on every request when set
  uint16_t port;
  std::chrono::milliseconds timeout;
  std::shared_ptr<TlsContext> tls;
  std::shared_ptr<TlsContext> follow_tls;  // FollowTlsRequired's, until it is followed
  std::optional<asio::ssl::stream<beast::tcp_stream&>> secure;  // over `stream`, with `tls`
  std::deque<Pending> queue;
  bool connected = false, running = false, stopped = false;
};

HttpClient::HttpClient(asio::any_io_executor ex, std::string host, uint16_t port,
                       std::chrono::milliseconds timeout, std::shared_ptr<TlsContext> tls)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(host), port, timeout, std::move(tls))) {
}

HttpClient::~HttpClient() {
  // The queue stays with the Impl (which the running coroutine shares): a request being written
  // must outlive the aborted write. Nothing is called back once stopped.
  // Closing the socket aborts whatever the coroutine waits for; the SSL stream, which an aborted
  // operation still uses, goes with the Impl.
  impl_->stopped = true;
  impl_->resolver.cancel();
  impl_->CloseSocket();
}

void HttpClient::Request(http::verb method, std::string target, std::string body,
                         std::string content_type, Done done) {
  http::request<http::string_body> request(method, target, 11);
  request.set(http::field::user_agent, "cairn/0.1");
  if (!content_type.empty()) request.set(http::field::content_type, content_type);
  if (!impl_->authorization.empty()) request.set(http::field::authorization, impl_->authorization);
  request.keep_alive(true);
  request.body() = std::move(body);
  request.prepare_payload();
  impl_->queue.push_back({std::move(request), std::move(done)});
  if (!impl_->running) {
    impl_->running = true;
    asio::co_spawn(
        impl_->stream.get_executor(), [impl = impl_] { return impl->Run(); }, asio::detached);
  }
}

void HttpClient::FollowTlsRequired(std::shared_ptr<TlsContext> tls) {
  impl_->follow_tls = std::move(tls);
}

size_t HttpClient::queued() const { return impl_->queue.size(); }

void HttpClient::SetAuthorization(std::string value) { impl_->authorization = std::move(value); }

}  // namespace cairn::net
