// Helpers for the protocol and broker tests: a broker running in-process on loopback (real store
// in a temporary directory, real sockets, port 0), a blocking raw NSQ client that sees every
// frame as it is on the wire, and a cairnd child process for restart and memory tests.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "net/protocol.h"
#include "src/server/server.h"
#include "tests/eventually.h"
#include "tests/server/certificates.h"
#include "tests/storage/test_util.h"

namespace cairn::testing {

using storage::testing::SampleLines;
using storage::testing::TempDir;
using namespace std::chrono_literals;

// The admin credential the tests' brokers require (BrokerHarness, CairndProcess) and their
// HttpClient sends, unless a test says otherwise.
inline constexpr std::string_view kTestAdminSecret = "cairn-test-admin";

// A file holding kTestAdminSecret, for --admin-secret-file; one per test process.
inline const std::string& TestAdminSecretFile() {
  static const TempDir dir;
  static const std::string path = [] {
    const std::string p = dir.path() + "/admin-secret";
    std::ofstream(p) << kTestAdminSecret << "\n";
    return p;
  }();
  return path;
}

// cairnd's server (src/server/server.h), wired as the daemon wires it, in this process, serving on
// 127.0.0.1 with ports of the kernel's choosing.
class BrokerHarness {
 public:
  // `options`' broker and session options are used; its store and addresses are the harness's.
  explicit BrokerHarness(ServerOptions options = {}) : options_(std::move(options)) { Open(); }
  ~BrokerHarness() { Shut(); }

  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  const std::string& path() const { return dir_.path(); }

  // Runs `fn` on the broker's io thread and returns its result.
  template <class F>
  auto Run(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    boost::asio::post(*io_, [&task] { task(); });
    return result.get();
  }

  // A clean stop and start on the same data directory and TCP port.
  void Restart() {
    Shut();
    Open(port_);
  }

  storage::Store& store() { return server_->store(); }
  // Only on the io thread: inside Run().
  Broker& broker() { return server_->broker(); }

  // A channel's counters, read on the io thread; all zero if it does not exist.
  ChannelStats Stats(const std::string& topic, const std::string& channel) {
    return Run([&] {
      auto t = broker().FindTopic(topic);
      Channel* c = t ? t->FindChannel(channel) : nullptr;
      return c ? c->stats() : ChannelStats{};
    });
  }

 private:
  void Open(uint16_t port = 0) {
    ServerOptions o = options_;
    o.store = storage::testing::TestOptions(dir_.path());
    if (o.session.admin_secret.empty() && !o.session.admin_open) {
      o.session.admin_secret = std::string(kTestAdminSecret);
    }
    const auto loopback = boost::asio::ip::make_address("127.0.0.1");
    o.tcp_address = boost::asio::ip::tcp::endpoint(loopback, port);
    o.http_address = boost::asio::ip::tcp::endpoint(loopback, 0);
    o.broadcast_address = "127.0.0.1";
    o.start_time = 1'700'000'000;
    io_ = std::make_unique<boost::asio::io_context>(1);
    auto server = Server::Open(*io_, o);
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    server_->Start();
    port_ = server_->tcp_endpoint().port();
    http_port_ = server_->http_endpoint().port();
    work_ =
        std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            io_->get_executor());
    thread_ = std::thread([this] { io_->run(); });
  }

  void Shut() {
    if (!io_) return;
    Run([this] {
      server_->Stop();
      return 0;
    });
    work_.reset();
    io_->stop();
    thread_.join();
    (void)server_->Close();
    server_.reset();
    io_.reset();
  }

  ServerOptions options_;
  TempDir dir_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<Server> server_;
  uint16_t http_port_ = 0;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
  uint16_t port_ = 0;
};

struct RawFrame {
  nsq::FrameType type;
  std::string data;
};

struct RawMessage {
  std::string id;
  uint16_t attempts = 0;
  int64_t timestamp_ns = 0;
  std::string body;
};

// A blocking NSQ connection that hands back every frame as it came.
class RawClient {
 public:
  explicit RawClient(uint16_t port, bool send_magic = true) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "connect: " << strerror(errno);
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (send_magic) Send(nsq::kMagicV2);
  }
  ~RawClient() { Close(); }
  RawClient(const RawClient&) = delete;

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends everything; false if the peer is gone.
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool Cmd(std::string_view line) {
    std::string b;
    nsq::AppendCommand(b, line);
    return Send(b);
  }
  bool CmdBody(std::string_view line, std::string_view body) {
    std::string b;
    nsq::AppendCommandWithBody(b, line, body);
    return Send(b);
  }
  void Identify(const std::string& json) {
    CmdBody("IDENTIFY", json);
    auto f = Read();
    ASSERT_TRUE(f);
    ASSERT_EQ(f->type, nsq::FrameType::kResponse) << f->data;
  }
  void Subscribe(std::string_view topic, std::string_view channel) {
    Cmd(fmt::format("SUB {} {}", topic, channel));
    ExpectResponse("OK");
  }
  void Publish(std::string_view topic, std::string_view body) {
    CmdBody(fmt::format("PUB {}", topic), body);
    ExpectResponse("OK");
  }

  // The next frame other than a heartbeat, or nullopt if the connection closed or nothing came
  // within `timeout`. Heartbeats are answered with NOP unless `answer_heartbeats` is off.
  std::optional<RawFrame> Read(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto outcome = nsq::ParseFrame(buf_, 64u << 20);
      if (auto* p = std::get_if<nsq::FrameParsed>(&outcome)) {
        RawFrame f{p->frame.type, std::string(p->frame.data)};
        buf_.erase(0, p->consumed);
        if (f.type == nsq::FrameType::kResponse && f.data == nsq::kHeartbeat) {
          ++heartbeats;
          if (answer_heartbeats) Cmd("NOP");
          continue;
        }
        return f;
      }
      if (std::holds_alternative<nsq::FrameError>(outcome)) {
        ADD_FAILURE() << "bad frame from the broker";
        return std::nullopt;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  void ExpectResponse(std::string_view text) {
    auto f = Read();
    ASSERT_TRUE(f) << "no response, expected " << text;
    EXPECT_EQ(f->type, nsq::FrameType::kResponse) << f->data;
    EXPECT_EQ(f->data, text);
  }
  void ExpectError(std::string_view text) {
    auto f = Read();
    ASSERT_TRUE(f) << "no frame, expected error " << text;
    EXPECT_EQ(f->type, nsq::FrameType::kError) << f->data;
    EXPECT_EQ(f->data, text);
  }
  std::optional<RawMessage> ReadMessage(std::chrono::milliseconds timeout = 5s) {
    auto f = Read(timeout);
    if (!f) return std::nullopt;
    EXPECT_EQ(f->type, nsq::FrameType::kMessage) << f->data;
    if (f->type != nsq::FrameType::kMessage) return std::nullopt;
    auto m = nsq::ParseMessage(f->data);
    if (!m) return std::nullopt;
    return RawMessage{std::string(m->id), m->attempts, m->timestamp_ns, std::string(m->body)};
  }

  // True if the broker closes the connection within `timeout` (any frames before are dropped).
  bool ClosedByPeer(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      buf_.clear();
      if (!Fill(deadline)) return eof_;
    }
  }

  int fd() const { return fd_; }
  bool answer_heartbeats = true;
  int heartbeats = 0;

 private:
  // Reads more into buf_; false on EOF or at the deadline.
  bool Fill(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
};

// An HTTP reply as a test looks at it.
struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string nsq_header;
};

// One keep-alive HTTP/1.1 connection to 127.0.0.1. It sends the tests' admin credential unless
// given another `bearer` ("" sends none).
class HttpClient {
  using verb = boost::beast::http::verb;

 public:
  explicit HttpClient(uint16_t port, std::string_view bearer = kTestAdminSecret)
      : stream_(io_), bearer_(bearer) {
    stream_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  Reply Do(verb method, const std::string& target, std::string body = "") {
    namespace http = boost::beast::http;
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!bearer_.empty()) req.set(http::field::authorization, "Bearer " + bearer_);
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    http::write(stream_, req);
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res);
    return {static_cast<int>(res.result_int()), res.body(),
            std::string(res[http::field::content_type]), std::string(res["X-NSQ-Content-Type"])};
  }
  Reply Get(const std::string& t) { return Do(verb::get, t); }
  Reply Post(const std::string& t, std::string body = "") {
    return Do(verb::post, t, std::move(body));
  }
  // The value of an unlabelled sample in /metrics ("name 12"); -1 if there is none.
  double Metric(const std::string& name) {
    const Reply r = Get("/metrics");
    const std::string key = "\n" + name + " ";
    const size_t at = ("\n" + r.body).find(key);
    return at == std::string::npos ? -1 : std::stod(r.body.substr(at + key.size() - 1));
  }

 private:
  boost::asio::io_context io_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::string bearer_;
};

// A server as a child process (cairnd, nsqlookupd: both log "TCP: listening on
// 127.0.0.1:<port>" and the same for HTTP), for what only a real process shows.
class ListeningProcess {
 public:
  // What a process listens on, and so which "listening" lines it is waited for.
  enum class Listens { kTcpAndHttp, kHttp, kTcp };
  // Starts `args` and waits until it listens (port() is 0 if it exited first); with
  // `wait_until_listening` off it returns at once, for a test that kills it while it starts.
  explicit ListeningProcess(std::vector<std::string> args, bool wait_until_listening = true,
                            Listens listens = Listens::kTcpAndHttp) {
    int pipefd[2];
    if (pipe(pipefd) != 0) std::abort();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(pipefd[1], 2);
      close(pipefd[0]);
      close(pipefd[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(pipefd[1]);
    err_ = fdopen(pipefd[0], "r");
    // The bound address, from the line cairnd logs for scripts.
    const std::regex listening("(TCP|HTTP): listening on 127\\.0\\.0\\.1:([0-9]+)");
    char line[4096];
    while (wait_until_listening && fgets(line, sizeof line, err_) != nullptr) {
      log_ += line;
      std::cmatch m;
      if (std::regex_search(line, m, listening)) {
        const auto p = static_cast<uint16_t>(std::stoi(m[2].str()));
        (m[1] == "TCP" ? port_ : http_port_) = p;
        if ((port_ != 0 || listens == Listens::kHttp) &&
            (http_port_ != 0 || listens == Listens::kTcp)) {
          break;
        }
      }
    }
    // Keep draining stderr so cairnd never blocks on a full pipe; the first MiB is kept.
    drain_ = std::thread([this] {
      char buf[4096];
      while (fgets(buf, sizeof buf, err_) != nullptr) {
        std::lock_guard lock(log_mu_);
        if (log_.size() < (1u << 20)) log_ += buf;
      }
    });
  }
  ~ListeningProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (drain_.joinable()) drain_.join();
    if (err_ != nullptr) fclose(err_);
  }

  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  // The HTTPS port it logged ("HTTPS: listening on 127.0.0.1:<port>", which nsqd may log after
  // the others); 0 if it logs none within 10 s.
  uint16_t https_port() const {
    const std::regex listening("HTTPS: listening on 127\\.0\\.0\\.1:([0-9]+)");
    uint16_t port = 0;
    Eventually([&] {
      const std::string text = log();
      std::smatch m;
      if (std::regex_search(text, m, listening)) port = static_cast<uint16_t>(std::stoi(m[1]));
      return port != 0;
    });
    return port;
  }
  pid_t pid() const { return pid_; }
  std::string startup_log() const { return log(); }
  // Everything it logged so far (its first MiB).
  std::string log() const {
    std::lock_guard lock(log_mu_);
    return log_;
  }

  // Sends `sig` and returns the exit status (as from waitpid).
  int Signal(int sig) {
    kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // Resident set size in bytes, from /proc.
  uint64_t RssBytes() const { return StatusBytes("VmRSS:"); }
  // The most it ever was (the kernel's high-water mark).
  uint64_t PeakRssBytes() const { return StatusBytes("VmHWM:"); }

 private:
  uint64_t StatusBytes(const std::string& field) const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string key;
    while (f >> key) {
      if (key == field) {
        uint64_t kb = 0;
        f >> kb;
        return kb * 1024;
      }
      std::string rest;
      std::getline(f, rest);
    }
    return 0;
  }

  pid_t pid_ = -1;
  FILE* err_ = nullptr;
  std::thread drain_;
  mutable std::mutex log_mu_;
  std::string log_;
  uint16_t port_ = 0, http_port_ = 0;
};

// cairnd as a child process, for what only a real process shows: kill -9, resident memory.
// $CAIRND runs the test against another build (an older one, to see a fix's test fail).
class CairndProcess : public ListeningProcess {
 public:
  CairndProcess(const std::string& data_path, std::vector<std::string> extra = {},
                bool wait_until_listening = true)
      : ListeningProcess(Args(data_path, std::move(extra)), wait_until_listening) {}

 private:
  static std::vector<std::string> Args(const std::string& data_path,
                                       std::vector<std::string> extra) {
    const char* binary = std::getenv("CAIRND");
    std::vector<std::string> args = {binary != nullptr ? binary : CAIRN_BIN_DIR "/cairnd",
                                     "--data-path=" + data_path, "--tcp-address=127.0.0.1:0",
                                     "--http-address=127.0.0.1:0", "--https-address=127.0.0.1:0"};
    // The tests' admin credential, unless the test sets the admin policy itself.
    if (std::none_of(extra.begin(), extra.end(),
                     [](const std::string& a) { return a.starts_with("--admin-"); })) {
      args.push_back("--admin-secret-file=" + TestAdminSecretFile());
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

// A binary from NSQ v1.3.0 (nsqlookupd, nsq_tail, gonsq_roundtrip2, ...) in $NSQ_BIN_DIR; "" if
// it is not there, and `why` says so (the test then skips).
inline std::string NsqBinary(const std::string& name, std::string* why) {
  const char* dir = std::getenv("NSQ_BIN_DIR");
  if (dir == nullptr || *dir == '\0') {
    *why = "NSQ_BIN_DIR is not set: it names the folder holding NSQ's binaries (" + name + ")";
    return "";
  }
  std::string path = std::string(dir) + "/" + name;
  if (access(path.c_str(), X_OK) != 0) {
    *why = path + " is not an executable";
    return "";
  }
  return path;
}

// Declares `var`, the path of NSQ's binary `name`, or skips the test saying why it is missing.
#define REQUIRE_NSQ_BINARY(var, name)     \
  std::string var;                        \
  {                                       \
    std::string why;                      \
    var = NsqBinary(name, &why);          \
    if (var.empty()) GTEST_SKIP() << why; \
  }

// nsqadmin from $NSQ_BIN_DIR on loopback, reading the fleet from nsqlookupd.
class NsqadminProcess : public ListeningProcess {
 public:
  NsqadminProcess(const std::string& binary, const std::string& lookupd_http_address)
      : ListeningProcess({binary, "--http-address=127.0.0.1:0",
                          "--lookupd-http-address=" + lookupd_http_address},
                         true, Listens::kHttp) {}
};

// nsqlookupd from $NSQ_BIN_DIR on loopback; ports 0 pick free ones (a restart may ask for the
// ones it had).
class LookupdProcess : public ListeningProcess {
 public:
  LookupdProcess(const std::string& binary, uint16_t tcp_port = 0, uint16_t http_port = 0)
      : ListeningProcess({binary, fmt::format("--tcp-address=127.0.0.1:{}", tcp_port),
                          fmt::format("--http-address=127.0.0.1:{}", http_port)}) {}
  std::string tcp_address() const { return fmt::format("127.0.0.1:{}", port()); }
  std::string http_address() const { return fmt::format("127.0.0.1:{}", http_port()); }
};

// The auth server the tests run (tests/cairnd/auth_server.py): it says which secrets may do what.
class AuthServer : public ListeningProcess {
 public:
  AuthServer()
      : ListeningProcess({"/usr/bin/python3", CAIRN_SOURCE_DIR "/tests/cairnd/auth_server.py"},
                         true, Listens::kHttp) {}
  // Over HTTPS, with the certificates' server certificate.
  explicit AuthServer(const Certificates& certs)
      : ListeningProcess({"/usr/bin/python3", CAIRN_SOURCE_DIR "/tests/cairnd/auth_server.py",
                          certs["server.pem"], certs["server.key"]},
                         true, Listens::kHttp) {}
  std::string address() const { return fmt::format("127.0.0.1:{}", http_port()); }
  // The queries it received.
  nlohmann::json Seen() const {
    return nlohmann::json::parse(HttpClient(http_port()).Get("/seen").body);
  }
};

}  // namespace cairn::testing
