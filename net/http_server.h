// An HTTP/1.1 server (Boost.Beast) on the caller's io_context: keep-alive, a body limit, and one
// handler that may answer later (a publish is answered once it is durable) or stream its answer
// (a log follow). cairnd's routes live in http_api.h, the workers' in consumers/; this file is
// only the transport.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net/listener.h"
#include "net/query.h"
#include "net/tls.h"

namespace cairn::net {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// The body of a streamed (chunked) response, written as it comes until the handler ends it or
// the client hangs up. Used on the io thread only.
template <typename Stream>
class HttpSession;

class HttpStream {
 public:
  // Queues `data` as one chunk. Returns false once the stream is closed: the client hung up, the
  // server is shutting down, or the client read so slowly that more than `max_queued` bytes
  // waited (the connection is then closed rather than buffered without bound).
  bool Write(std::string_view data);
  // Ends the body (the last chunk) and closes the connection.
  void End();
  bool closed() const { return closed_; }
  // Called once when the stream closes for any reason.
  void OnClose(std::function<void()> fn) { on_close_ = std::move(fn); }

 private:
  template <typename Stream>
  friend class HttpSession;
  void MarkClosed();

  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  size_t max_queued_ = 1u << 20;
  bool ended_ = false, closed_ = false;
  std::function<void()> on_close_;
  std::function<void()> wake_;  // the session's writer
};

// How a handler answers a request, exactly once, now or later, on the io thread: with a whole
// response (call it), or with a streamed one (Stream: `head` gives the status and headers, the
// body follows through the returned stream).
class HttpResponder {
 public:
  struct State;
  explicit HttpResponder(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void operator()(HttpResponse response) const;
  std::shared_ptr<HttpStream> Stream(HttpResponse head) const;

 private:
  std::shared_ptr<State> state_;
};

using HttpHandler = std::function<void(const HttpRequest& request, HttpResponder respond)>;

// Listener gives local_endpoint(), Start(), Drain() (idle connections close at once, busy ones
// after their response) and CloseAll().
class HttpServer : public Listener {
 public:
  // Listen() binds it. Requests whose body exceeds `max_body` get `too_large(request)` without
  // reading the body. With `tls` it serves HTTPS: each connection's handshake comes first, and
  // has 10 s.
  HttpServer(boost::asio::io_context& io, size_t max_body, HttpHandler handler,
             std::function<HttpResponse(const HttpRequest&)> too_large,
             std::shared_ptr<TlsContext> tls = nullptr);
};

}  // namespace cairn::net
