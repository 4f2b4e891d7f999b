// The HTTP transport the broker and the workers share (net/http_server.h, net/http_client.h),
// over loopback with no broker: streamed (chunked) responses and their end, and the client's
// keep-alive, ordering, retry on a connection the server closed, and failures.
#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "net/http_client.h"
#include "net/http_server.h"
#include "tests/eventually.h"
#include "tests/server/certificates.h"

namespace cairn::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;

// A server on its own io thread; `handler` runs there.
class Server {
 public:
  // With `tls`, HTTPS.
  explicit Server(net::HttpHandler handler, std::shared_ptr<net::TlsContext> tls = nullptr)
      : work_(io_.get_executor()),
        server_(
            io_, 1 << 20, std::move(handler),
            [](const net::HttpRequest&) { return net::HttpResponse(); }, std::move(tls)) {
    const Status listening = server_.Listen({asio::ip::make_address("127.0.0.1"), 0});
    if (!listening) throw std::runtime_error(listening.error().ToString());
    server_.Start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Server() {
    asio::post(io_, [this] { server_.CloseAll(); });
    work_.reset();
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return server_.local_endpoint().port(); }
  asio::io_context& io() { return io_; }
  // Stops accepting and closes idle connections; returns once it has.
  void Drain() {
    OnIo([this] { server_.Drain(); });
  }
  // Closes every connection (as an idle timeout or a restart would); keeps listening.
  void CloseConnections() {
    OnIo([this] { server_.CloseAll(); });
  }

 private:
  // Runs `fn` on the server's io thread and returns once it has run.
  template <class F>
  void OnIo(F fn) {
    std::packaged_task<void()> task(std::move(fn));
    auto done = task.get_future();
    asio::post(io_, [&task] { task(); });
    done.get();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  net::HttpServer server_;
  std::thread thread_;
};

net::HttpResponse Text(std::string body) {
  net::HttpResponse r;
  r.result(http::status::ok);
  r.body() = std::move(body);
  return r;
}

// A client that asks `server` for a stream (GET /follow) and waits until the handler opened it.
struct Follower {
  Follower(Server& server, std::atomic<bool>& opened, int receive_buffer = 0) : stream(io) {
    stream.connect({asio::ip::make_address("127.0.0.1"), server.port()});
    if (receive_buffer > 0) {
      stream.socket().set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    }
    http::request<http::string_body> req(http::verb::get, "/follow", 11);
    http::write(stream, req);
    ok = Eventually([&] { return opened.load(); });
  }
  asio::io_context io;
  beast::tcp_stream stream;
  bool ok = false;
};

TEST(HttpStream, ChunksArriveAsWrittenAndTheBodyEndsWithTheStream) {
  std::shared_ptr<net::HttpStream> stream;
  std::atomic<bool> opened{false};
  Server server([&](const net::HttpRequest&, net::HttpResponder respond) {
    stream = respond.Stream(Text(""));
    stream->Write("first\n");
    opened = true;
  });
  Follower f(server, opened);
  ASSERT_TRUE(f.ok);
  auto& client = f.stream;
  asio::post(server.io(), [&] {
    stream->Write("second\n");
    stream->End();
  });
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(client, buffer, res);  // reads until the last chunk
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_TRUE(res.chunked());
  EXPECT_EQ(res.body(), "first\nsecond\n");
  // The connection closes after a stream.
  char byte;
  boost::system::error_code ec;
  client.socket().read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(HttpStream, AClientThatHangsUpClosesTheStream) {
  std::shared_ptr<net::HttpStream> stream;
  std::atomic<bool> opened{false}, closed{false};
  Server server([&](const net::HttpRequest&, net::HttpResponder respond) {
    stream = respond.Stream(Text(""));
    stream->OnClose([&] { closed = true; });
    opened = true;
  });
  {
    Follower f(server, opened);
    ASSERT_TRUE(f.ok);
  }  // hangs up
  EXPECT_TRUE(Eventually([&] { return closed.load(); }));
  std::atomic<int> wrote{-1};
  asio::post(server.io(), [&] { wrote = stream->Write("late\n") ? 1 : 0; });
  ASSERT_TRUE(Eventually([&] { return wrote.load() >= 0; }));
  EXPECT_EQ(wrote.load(), 0);
}

TEST(HttpStream, AClientThatDoesNotReadIsCutOffNotBufferedWithoutBound) {
  std::shared_ptr<net::HttpStream> stream;
  std::atomic<bool> opened{false};
  Server server([&](const net::HttpRequest&, net::HttpResponder respond) {
    stream = respond.Stream(Text(""));
    opened = true;
  });
  Follower f(server, opened, 4096);
  ASSERT_TRUE(f.ok);
  // 64 MiB offered, never read: the stream refuses (and closes) long before.
  std::atomic<int> accepted{-1};
  asio::post(server.io(), [&] {
    const std::string chunk(64 * 1024, 'x');
    int n = 0;
    for (; n < 1024; ++n) {
      if (!stream->Write(chunk)) break;
    }
    accepted = n;
  });
  ASSERT_TRUE(Eventually([&] { return accepted.load() >= 0; }));
  EXPECT_LT(accepted.load(), 1024);
  EXPECT_TRUE(stream->closed());
}

TEST(HttpStream, ShutdownEndsAStreamCleanly) {
  std::shared_ptr<net::HttpStream> stream;
  std::atomic<bool> opened{false};
  Server server([&](const net::HttpRequest&, net::HttpResponder respond) {
    stream = respond.Stream(Text(""));
    stream->Write("held\n");
    opened = true;
  });
  Follower f(server, opened);
  ASSERT_TRUE(f.ok);
  server.Drain();
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(f.stream, buffer, res);  // a complete body: the last chunk came
  EXPECT_EQ(res.body(), "held\n");
}

// The client side: one io thread runs the client and the server.
TEST(HttpClient, RequestsAnswerInOrderOnOneConnectionAndSurviveAServerHangUp) {
  std::atomic<int> served{0};
  Server server([&](const net::HttpRequest& req, net::HttpResponder respond) {
    ++served;
    respond(Text(std::string(req.target())));
  });
  asio::io_context io;
  net::HttpClient client(io.get_executor(), "127.0.0.1", server.port(), 5s);
  std::vector<std::string> bodies;
  for (int i = 0; i < 5; ++i) {
    client.Request(http::verb::get, "/r" + std::to_string(i), "", "", [&](net::HttpResult r) {
      EXPECT_TRUE(r.ok()) << r.Describe();
      bodies.push_back(r.body);
    });
  }
  io.run_for(5s);
  EXPECT_EQ(bodies, (std::vector<std::string>{"/r0", "/r1", "/r2", "/r3", "/r4"}));
  // The server drops its idle keep-alive connections; the next request still succeeds (sent
  // again on a fresh connection).
  server.Drain();
  io.restart();
  net::HttpResult after;
  client.Request(http::verb::post, "/again", "x", "text/plain",
                 [&](net::HttpResult r) { after = std::move(r); });
  io.run_for(5s);
  // Drain() stops accepting, so the fresh connection is refused: a transport error, not a hang.
  EXPECT_FALSE(after.answered()) << after.Describe();
  ASSERT_FALSE(after.transport);
  EXPECT_EQ(after.transport.error().code, Errc::kUnavailable);
  EXPECT_NE(after.transport.error().message.find("connect"), std::string::npos)
      << after.transport.error().message;
  EXPECT_EQ(served.load(), 5);
}

TEST(HttpClient, AStaleKeepAliveConnectionIsRetriedOnAFreshOne) {
  Server server([&](const net::HttpRequest&, net::HttpResponder respond) { respond(Text("ok")); });
  asio::io_context io;
  net::HttpClient client(io.get_executor(), "127.0.0.1", server.port(), 5s);
  net::HttpResult first, second;
  client.Request(http::verb::get, "/1", "", "", [&](net::HttpResult r) { first = r; });
  io.run_for(2s);
  ASSERT_TRUE(first.ok()) << first.Describe();
  // The server closes the connection while it is idle (an idle timeout, say); the listener stays
  // open. The client's first try on the stale connection fails; it must try a fresh one.
  server.CloseConnections();
  io.restart();
  client.Request(http::verb::get, "/2", "", "", [&](net::HttpResult r) { second = r; });
  io.run_for(2s);
  EXPECT_TRUE(second.ok()) << second.Describe();
}

TEST(HttpClient, ARefusedConnectionIsAnErrorNotAnAnswer) {
  uint16_t port;
  {
    asio::io_context probe;
    asio::ip::tcp::acceptor a(probe, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }  // nothing listens there any more
  asio::io_context io;
  net::HttpClient client(io.get_executor(), "127.0.0.1", port, 2s);
  net::HttpResult r;
  client.Request(http::verb::get, "/", "", "", [&](net::HttpResult x) { r = std::move(x); });
  io.run_for(3s);
  EXPECT_FALSE(r.answered());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.Describe().find("refused"), std::string::npos) << r.Describe();
}

// A GET on `client`, run to its answer on `io`.
net::HttpResult Get(asio::io_context& io, net::HttpClient& client, const std::string& target) {
  net::HttpResult result;
  client.Request(http::verb::get, target, "", "", [&](net::HttpResult r) { result = r; });
  io.restart();
  io.run_for(5s);
  return result;
}

// HTTPS both ways: the client checks the server's certificate against its CAs, a response
// streamed in chunks arrives whole, and a client told to follow nsqd's TLS_REQUIRED moves to the
// HTTPS port it names.
TEST(HttpClient, SpeaksHttpsCheckingTheServersCertificate) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  auto server_tls = net::MakeServerTls(net::TlsServerFiles{
      certs["server.pem"], certs["server.key"], "", net::ClientAuthPolicy::kNone, "tls1.2"});
  ASSERT_TRUE(server_tls) << server_tls.error().ToString();
  Server https(
      [&](const net::HttpRequest& req, net::HttpResponder respond) {
        if (req.target() != "/follow") return respond(Text("secure " + std::string(req.target())));
        auto stream = respond.Stream(Text(""));
        stream->Write("a\n");
        stream->Write("b\n");
        stream->End();
      },
      *server_tls);
  asio::io_context io;
  auto trusting = net::MakeClientTls(net::TlsClientFiles::Trusting(certs["ca.pem"]));
  ASSERT_TRUE(trusting);
  net::HttpClient client(io.get_executor(), "127.0.0.1", https.port(), 5s, *trusting);
  net::HttpResult r = Get(io, client, "/x");
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.body, "secure /x");
  r = Get(io, client, "/follow");
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.body, "a\nb\n");

  auto untrusting = net::MakeClientTls(net::TlsClientFiles::Trusting(certs["other-ca.pem"]));
  ASSERT_TRUE(untrusting);
  net::HttpClient stranger(io.get_executor(), "127.0.0.1", https.port(), 5s, *untrusting);
  r = Get(io, stranger, "/x");
  EXPECT_FALSE(r.answered());
  EXPECT_NE(r.Describe().find("certificate verify failed"), std::string::npos) << r.Describe();

  // A plain server that requires TLS, as nsqd answers it; one client follows, one was not told.
  Server plain([&](const net::HttpRequest&, net::HttpResponder respond) {
    net::HttpResponse refused =
        Text(fmt::format(R"({{"message": "TLS_REQUIRED", "https_port": {}}})", https.port()));
    refused.result(http::status::forbidden);
    respond(std::move(refused));
  });
  net::HttpClient follower(io.get_executor(), "127.0.0.1", plain.port(), 5s);
  follower.FollowTlsRequired(*trusting);
  net::HttpClient unfollowing(io.get_executor(), "127.0.0.1", plain.port(), 5s);
  r = Get(io, follower, "/y");
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.body, "secure /y");
  EXPECT_EQ(Get(io, follower, "/z").body, "secure /z");  // it stays there
  EXPECT_EQ(Get(io, unfollowing, "/y").status, 403);
}

// A client destroyed while its HTTPS request waits for an answer: the aborted read still uses the
// SSL stream, which must outlive it (ASan would report it otherwise). No callback is called.
TEST(HttpClient, AnHttpsClientDestroyedMidRequestCallsNothingBack) {
  Certificates certs;
  ASSERT_TRUE(certs.ok());
  auto server_tls = net::MakeServerTls(net::TlsServerFiles{
      certs["server.pem"], certs["server.key"], "", net::ClientAuthPolicy::kNone, "tls1.2"});
  ASSERT_TRUE(server_tls);
  std::atomic<bool> asked{false};
  Server https([&](const net::HttpRequest&, net::HttpResponder) { asked = true; },  // no answer
               *server_tls);
  asio::io_context io;
  auto trusting = net::MakeClientTls(net::TlsClientFiles::Trusting(certs["ca.pem"]));
  ASSERT_TRUE(trusting);
  bool called = false;
  auto client = std::make_unique<net::HttpClient>(io.get_executor(), "127.0.0.1", https.port(), 5s,
                                                  *trusting);
  client->Request(http::verb::get, "/wait", "", "", [&](net::HttpResult) { called = true; });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!asked && std::chrono::steady_clock::now() < deadline) io.run_for(10ms);
  ASSERT_TRUE(asked.load());
  client.reset();
  io.restart();
  io.run();  // until the aborted operations have completed: nothing else is left to run
  EXPECT_FALSE(called);
}

TEST(HttpUrl, ParsesWhatTheWorkersAccept) {
  auto u = net::ParseHttpUrl("http://127.0.0.1:9086");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 9086);
  EXPECT_EQ(u->base_path, "");
  u = net::ParseHttpUrl("http://[::1]:9/influx/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->base_path, "/influx");
  EXPECT_EQ(net::ParseHttpUrl("http://localhost")->port, 80);
  EXPECT_FALSE(net::ParseHttpUrl("http://localhost")->https);
  u = net::ParseHttpUrl("https://influx.example:8443/db");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(net::ParseHttpUrl("https://influx.example")->port, 443);
  EXPECT_FALSE(net::ParseHttpUrl("ftp://x:1"));
  EXPECT_FALSE(net::ParseHttpUrl("127.0.0.1:9086"));
  EXPECT_FALSE(net::ParseHttpUrl("http://:9086"));
}

}  // namespace
}  // namespace cairn::testing
