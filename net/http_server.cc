#include "net/http_server.h"

#include <optional>
#include <set>
#include <type_traits>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace cairn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct HttpResponder::State {
  std::optional<HttpResponse> response;
  std::shared_ptr<HttpStream> stream;
  std::function<void()> ready;  // wakes the session waiting for the answer
};

void HttpResponder::operator()(HttpResponse response) const {
  state_->response = std::move(response);
  if (state_->ready) state_->ready();
}

std::shared_ptr<HttpStream> HttpResponder::Stream(HttpResponse head) const {
  state_->stream = std::make_shared<HttpStream>();
  auto stream = state_->stream;
  (*this)(std::move(head));
  return stream;
}

bool HttpStream::Write(std::string_view data) {
  if (closed_ || ended_) return false;
  if (data.empty()) return true;  // an empty chunk would end the body
  if (queued_bytes_ + data.size() > max_queued_) {
    MarkClosed();
    return false;
  }
  queued_bytes_ += data.size();
  queue_.emplace_back(data);
  if (wake_) wake_();
  return true;
}

void HttpStream::End() {
  if (closed_ || ended_) return;
  ended_ = true;
  if (wake_) wake_();
}

void HttpStream::MarkClosed() {
  if (closed_) return;
  closed_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  if (wake_) wake_();
  if (on_close_) {
    auto fn = std::move(on_close_);
    on_close_ = nullptr;
    fn();
  }
}

using TlsHttpStream = beast::ssl_stream<beast::tcp_stream>;

// What every connection of one server shares.
struct HttpServerShared {
  size_t max_body;
  HttpHandler handler;
  std::function<HttpResponse(const HttpRequest&)> too_large;
  std::shared_ptr<TlsContext> tls;  // HTTPS when set
};

// One connection: plain (Stream = beast::tcp_stream) or HTTPS (TlsHttpStream, whose handshake
// comes first).
template <typename Stream>
class HttpSession : public ListenedSession,
                    public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Stream stream, std::shared_ptr<const HttpServerShared> shared,
              std::shared_ptr<SessionSet> set)
      : stream_(std::move(stream)),
        shared_(std::move(shared)),
        registration_(std::move(set), this) {}

  void Start() {
    asio::co_spawn(
        stream_.get_executor(), [self = this->shared_from_this()] { return self->Run(); },
        asio::detached);
  }
  void Drain() override {
    if (streaming_) {
      streaming_->End();
    } else if (!busy_) {
      Close();  // a busy one closes after its response (no keep-alive once draining)
    }
  }
  void Close() override {
    boost::system::error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }

 private:
  static constexpr bool kTls = std::is_same_v<Stream, TlsHttpStream>;

  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }
  tcp::socket& socket() { return tcp().socket(); }

  asio::awaitable<void> Run() {
    if constexpr (kTls) {
      // A client that connects and never finishes its handshake holds nothing for long.
      boost::system::error_code ec;
      tcp().expires_after(10s);
      co_await stream_.async_handshake(asio::ssl::stream_base::server,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        spdlog::debug("HTTPS: handshake with {} failed: {}", Peer(), ec.message());
        Close();
        co_return;
      }
    }
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(shared_->max_body);
      parser.header_limit(64 * 1024);
      boost::system::error_code ec;
      // An idle keep-alive connection is closed after a while, as net/http servers do.
      tcp().expires_after(std::chrono::seconds(120));
      co_await http::async_read(stream_, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      busy_ = true;
      HttpResponse response;
      bool keep_alive = false;
      if (ec == http::error::body_limit) {
        response = shared_->too_large(parser.get());
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
          tcp().expires_after(5s);
          co_await http::async_write(stream_, response,
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        break;
      } else {
        const HttpRequest& request = parser.get();
        keep_alive = request.keep_alive() && !registration_.draining();
        std::shared_ptr<HttpStream> stream;
        response = co_await Dispatch(request, &stream);
        response.version(request.version());
        if (stream) {
          co_await RunStream(std::move(response), std::move(stream));
          break;
        }
      }
      response.keep_alive(keep_alive);
      response.prepare_payload();
      tcp().expires_after(30s);
      co_await http::async_write(stream_, response, asio::redirect_error(asio::use_awaitable, ec));
      busy_ = false;
      // Draining may have begun while this response was written (Drain then left the busy
      // session alone): close now rather than wait for a request that may never come.
      if (ec || !keep_alive || registration_.draining()) break;
    }
    Close();
  }

  // Runs the handler and waits for its answer, which may come later (after a durable write).
  asio::awaitable<HttpResponse> Dispatch(const HttpRequest& request,
                                         std::shared_ptr<HttpStream>* stream) {
    auto state = std::make_shared<HttpResponder::State>();
    auto ready = std::make_shared<asio::steady_timer>(stream_.get_executor(),
                                                      asio::steady_timer::time_point::max());
    state->ready = [ready] { ready->cancel(); };
    shared_->handler(request, HttpResponder(state));
    if (!state->response.has_value()) {
      boost::system::error_code ec;
      co_await ready->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    state->ready = nullptr;
    *stream = std::move(state->stream);
    co_return std::move(*state->response);
  }

  // Writes `head` with chunked encoding, then the stream's chunks as they come, until the
  // handler ends it or the client hangs up. The connection closes afterwards.
  asio::awaitable<void> RunStream(HttpResponse head, std::shared_ptr<HttpStream> s) {
    streaming_ = s;
    http::response<http::empty_body> h(head.result(), head.version());
    for (const auto& field : head.base()) h.set(field.name_string(), field.value());
    h.chunked(true);
    h.keep_alive(false);
    boost::system::error_code ec;
    tcp().expires_never();  // a follow may stay quiet for hours; a hang-up ends it
    http::response_serializer<http::empty_body> sr(h);
    co_await http::async_write_header(stream_, sr, asio::redirect_error(asio::use_awaitable, ec));
    asio::steady_timer wake(stream_.get_executor(), asio::steady_timer::time_point::max());
    if (!ec) {
      s->wake_ = [&wake] { wake.cancel(); };
      asio::co_spawn(
          stream_.get_executor(),
          [self = this->shared_from_this(), s] { return self->WatchHangUp(s); }, asio::detached);
    }
    while (!ec && !s->closed_) {
      if (!s->queue_.empty()) {
        std::string data = std::move(s->queue_.front());
        s->queue_.pop_front();
        s->queued_bytes_ -= data.size();
        co_await asio::async_write(stream_, http::make_chunk(asio::buffer(data)),
                                   asio::redirect_error(asio::use_awaitable, ec));
      } else if (s->ended_) {
        co_await asio::async_write(stream_, http::make_chunk_last(),
                                   asio::redirect_error(asio::use_awaitable, ec));
        break;
      } else {
        wake.expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code wait_ec;
        co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
      }
    }
    s->wake_ = nullptr;
    s->MarkClosed();
    streaming_ = nullptr;
  }

  // The client sends nothing while it follows a stream; a read that ends means it hung up. (An
  // SSL stream allows one read beside one write, on the same thread.)
  asio::awaitable<void> WatchHangUp(std::shared_ptr<HttpStream> s) {
    char buf[512];
    boost::system::error_code ec;
    while (!ec && !s->closed_) {
      co_await stream_.async_read_some(asio::buffer(buf),
                                       asio::redirect_error(asio::use_awaitable, ec));
    }
    s->MarkClosed();
  }

  std::string Peer() {
    boost::system::error_code ec;
    auto endpoint = socket().remote_endpoint(ec);
    return ec ? std::string("a client") : endpoint.address().to_string();
  }

  Stream stream_;
  std::shared_ptr<const HttpServerShared> shared_;
  SessionRegistration registration_;
  bool busy_ = false;
  std::shared_ptr<HttpStream> streaming_;
};

HttpServer::HttpServer(asio::io_context& io, size_t max_body, HttpHandler handler,
                       std::function<HttpResponse(const HttpRequest&)> too_large,
                       std::shared_ptr<TlsContext> tls)
    : Listener(io, [shared = std::make_shared<const HttpServerShared>(HttpServerShared{
                        max_body, std::move(handler), std::move(too_large), std::move(tls)})](
                       tcp::socket socket, std::shared_ptr<SessionSet> set) {
        if (shared->tls) {
          std::make_shared<HttpSession<TlsHttpStream>>(
              TlsHttpStream(beast::tcp_stream(std::move(socket)), *shared->tls), shared,
              std::move(set))
              ->Start();
        } else {
          std::make_shared<HttpSession<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)),
                                                           shared, std::move(set))
              ->Start();
        }
      }) {}

}  // namespace cairn::net
