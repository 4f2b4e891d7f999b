#include "net/http_server.h"

#include <set>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace cairn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

class HttpSession : public ListenedSession, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, size_t max_body, std::shared_ptr<HttpHandler> handler,
              std::shared_ptr<std::function<HttpResponse(const HttpRequest&)>> too_large,
              std::shared_ptr<SessionSet> set)
      : stream_(std::move(socket)),
        max_body_(max_body),
        handler_(std::move(handler)),
        too_large_(std::move(too_large)),
        registration_(std::move(set), this) {}

  void Start() {
    asio::co_spawn(
        stream_.get_executor(), [self = shared_from_this()] { return self->Run(); },
        asio::detached);
  }
  void Drain() override {
    if (!busy_) Close();  // a busy one closes after its response (no keep-alive once draining)
  }
  void Close() override {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

 private:
  asio::awaitable<void> Run() {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(max_body_);
      parser.header_limit(64 * 1024);
      boost::system::error_code ec;
      // An idle keep-alive connection is closed after a while, as net/http servers do.
      stream_.expires_after(std::chrono::seconds(120));
      co_await http::async_read(stream_, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      busy_ = true;
      HttpResponse response;
      bool keep_alive = false;
      if (ec == http::error::body_limit) {
        response = (*too_large_)(parser.get());
      } else if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
            ec != beast::error::timeout && ec != asio::error::connection_reset &&
            ec != asio::error::eof) {
          // Garbage that is not HTTP: answer 400 and hang up, as net/http does.
          response.result(http::status::bad_request);
          response.set(http::field::content_type, "text/plain; charset=utf-8");
          response.set(http::field::connection, "close");
          response.body() = "400 Bad Request";
          response.prepare_payload();
          stream_.expires_after(5s);
          co_await http::async_write(stream_, response,
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        break;
      } else {
        const HttpRequest& request = parser.get();
        keep_alive = request.keep_alive() && !registration_.draining();
        response = co_await Dispatch(request);
        response.version(request.version());
      }
      response.keep_alive(keep_alive);
      response.prepare_payload();
      stream_.expires_after(30s);
      co_await http::async_write(stream_, response, asio::redirect_error(asio::use_awaitable, ec));
      busy_ = false;
      if (ec || !keep_alive) break;
    }
    Close();
  }

  // Runs the handler and waits for its answer, which may come later (after a durable write).
  asio::awaitable<HttpResponse> Dispatch(const HttpRequest& request) {
    auto result = std::make_shared<std::optional<HttpResponse>>();
    auto ready = std::make_shared<asio::steady_timer>(stream_.get_executor(),
                                                      asio::steady_timer::time_point::max());
    (*handler_)(request, [result, ready](HttpResponse r) {
      *result = std::move(r);
      ready->cancel();
    });
    if (!result->has_value()) {
      boost::system::error_code ec;
      co_await ready->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return std::move(**result);
  }

  beast::tcp_stream stream_;
  size_t max_body_;
  std::shared_ptr<HttpHandler> handler_;
  std::shared_ptr<std::function<HttpResponse(const HttpRequest&)>> too_large_;
  SessionRegistration registration_;
  bool busy_ = false;
};

HttpServer::HttpServer(asio::io_context& io, const tcp::endpoint& endpoint, size_t max_body,
                       HttpHandler handler,
                       std::function<HttpResponse(const HttpRequest&)> too_large)
    : Listener(io, endpoint,
               [max_body, handler = std::make_shared<HttpHandler>(std::move(handler)),
                too_large = std::make_shared<std::function<HttpResponse(const HttpRequest&)>>(
                    std::move(too_large))](tcp::socket socket, std::shared_ptr<SessionSet> set) {
                 std::make_shared<HttpSession>(std::move(socket), max_body, handler, too_large,
                                               std::move(set))
                     ->Start();
               }) {}

}  // namespace cairn::net
