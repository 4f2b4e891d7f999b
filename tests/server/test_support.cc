#include "tests/server/test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <variant>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace cairn::testing {

const std::string& TestAdminSecretFile() {
  static const TempDir dir;
  static const std::string path = [] {
    const std::string p = dir.path() + "/admin-secret";
    std::ofstream(p) << kTestAdminSecret << "\n";
    return p;
  }();
  return path;
}

// ---- BrokerHarness ----

struct BrokerHarness::Loop {
  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
};

BrokerHarness::BrokerHarness(ServerOptions options) : options_(std::move(options)) { Open(); }

BrokerHarness::~BrokerHarness() { Shut(); }

void BrokerHarness::Restart() {
  Shut();
  Open(port_);
}

ChannelStats BrokerHarness::Stats(const std::string& topic, const std::string& channel) {
  return Run([&] {
    auto t = broker().FindTopic(topic);
    Channel* c = t ? t->FindChannel(channel) : nullptr;
    return c ? c->stats() : ChannelStats{};
  });
}

void BrokerHarness::Post(std::function<void()> fn) { boost::asio::post(loop_->io, std::move(fn)); }

void BrokerHarness::Open(uint16_t port) {
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
  loop_ = std::make_unique<Loop>();
  auto server = Server::Open(loop_->io, o);
  ASSERT_TRUE(server) << server.error();
  server_ = std::move(*server);
  server_->Start();
  port_ = server_->tcp_endpoint().port();
  http_port_ = server_->http_endpoint().port();
  loop_->thread = std::thread([loop = loop_.get()] { loop->io.run(); });
}

void BrokerHarness::Shut() {
  if (!loop_) return;
  if (server_) {
    Run([this] {
      server_->Stop();
      return 0;
    });
  }
  loop_->work.reset();
  loop_->io.stop();
  if (loop_->thread.joinable()) loop_->thread.join();
  if (server_) (void)server_->Close();
  server_.reset();
  loop_.reset();
}

// ---- RawClient ----

RawClient::RawClient(uint16_t port, bool send_magic) {
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

void RawClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawClient::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawClient::Cmd(std::string_view line) {
  std::string b;
  nsq::AppendCommand(b, line);
  return Send(b);
}

bool RawClient::CmdBody(std::string_view line, std::string_view body) {
  std::string b;
  nsq::AppendCommandWithBody(b, line, body);
  return Send(b);
}

void RawClient::Identify(const std::string& json) {
  CmdBody("IDENTIFY", json);
  auto f = Read();
  ASSERT_TRUE(f);
  ASSERT_EQ(f->type, nsq::FrameType::kResponse) << f->data;
}

void RawClient::Subscribe(std::string_view topic, std::string_view channel) {
  Cmd(fmt::format("SUB {} {}", topic, channel));
  ExpectResponse("OK");
}

void RawClient::Publish(std::string_view topic, std::string_view body) {
  CmdBody(fmt::format("PUB {}", topic), body);
  ExpectResponse("OK");
}

std::optional<RawFrame> RawClient::Read(std::chrono::milliseconds timeout) {
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

void RawClient::ExpectResponse(std::string_view text) {
  auto f = Read();
  ASSERT_TRUE(f) << "no response, expected " << text;
  EXPECT_EQ(f->type, nsq::FrameType::kResponse) << f->data;
  EXPECT_EQ(f->data, text);
}

void RawClient::ExpectError(std::string_view text) {
  auto f = Read();
  ASSERT_TRUE(f) << "no frame, expected error " << text;
  EXPECT_EQ(f->type, nsq::FrameType::kError) << f->data;
  EXPECT_EQ(f->data, text);
}

std::optional<RawMessage> RawClient::ReadMessage(std::chrono::milliseconds timeout) {
  auto f = Read(timeout);
  if (!f) return std::nullopt;
  EXPECT_EQ(f->type, nsq::FrameType::kMessage) << f->data;
  if (f->type != nsq::FrameType::kMessage) return std::nullopt;
  auto m = nsq::ParseMessage(f->data);
  if (!m) return std::nullopt;
  return RawMessage{std::string(m->id), m->attempts, m->timestamp_ns, std::string(m->body)};
}

bool RawClient::ClosedByPeer(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    buf_.clear();
    if (!Fill(deadline)) return eof_;
  }
}

bool RawClient::Fill(std::chrono::steady_clock::time_point deadline) {
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

// ---- HttpClient ----

struct HttpClient::Connection {
  boost::asio::io_context io;
  boost::beast::tcp_stream stream{io};
  boost::beast::flat_buffer buffer;
};

HttpClient::HttpClient(uint16_t port, std::string_view bearer)
    : connection_(std::make_unique<Connection>()), bearer_(bearer) {
  connection_->stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
}

HttpClient::~HttpClient() = default;

Reply HttpClient::Get(const std::string& target) { return Do(false, target, ""); }

Reply HttpClient::Post(const std::string& target, std::string body) {
  return Do(true, target, std::move(body));
}

Reply HttpClient::Do(bool post, const std::string& target, std::string body) {
  namespace http = boost::beast::http;
  http::request<http::string_body> req{post ? http::verb::post : http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!bearer_.empty()) req.set(http::field::authorization, "Bearer " + bearer_);
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();
  http::write(connection_->stream, req);
  http::response<http::string_body> res;
  http::read(connection_->stream, connection_->buffer, res);
  return {static_cast<int>(res.result_int()), res.body(),
          std::string(res[http::field::content_type]), std::string(res["X-NSQ-Content-Type"])};
}

double HttpClient::Metric(const std::string& name) {
  const Reply r = Get("/metrics");
  const std::string key = "\n" + name + " ";
  const size_t at = ("\n" + r.body).find(key);
  return at == std::string::npos ? -1 : std::stod(r.body.substr(at + key.size() - 1));
}

// ---- ListeningProcess ----

ListeningProcess::ListeningProcess(std::vector<std::string> args, bool wait_until_listening,
                                   Listens listens) {
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

ListeningProcess::~ListeningProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
  if (drain_.joinable()) drain_.join();
  if (err_ != nullptr) fclose(err_);
}

uint16_t ListeningProcess::https_port() const {
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

std::string ListeningProcess::log() const {
  std::lock_guard lock(log_mu_);
  return log_;
}

int ListeningProcess::Signal(int sig) {
  kill(pid_, sig);
  return Wait();
}

int ListeningProcess::Wait() {
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

uint64_t ListeningProcess::StatusBytes(const std::string& field) const {
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

// ---- The processes ----

std::vector<std::string> CairndProcess::Args(const std::string& data_path,
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

std::string NsqBinary(const std::string& name, std::string* why) {
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

AuthServer::AuthServer()
    : ListeningProcess({"/usr/bin/python3", CAIRN_SOURCE_DIR "/tests/cairnd/auth_server.py"}, true,
                       Listens::kHttp) {}

AuthServer::AuthServer(const Certificates& certs)
    : ListeningProcess({"/usr/bin/python3", CAIRN_SOURCE_DIR "/tests/cairnd/auth_server.py",
                        certs["server.pem"], certs["server.key"]},
                       true, Listens::kHttp) {}

nlohmann::json AuthServer::Seen() const {
  return nlohmann::json::parse(HttpClient(http_port()).Get("/seen").body);
}

}  // namespace cairn::testing
