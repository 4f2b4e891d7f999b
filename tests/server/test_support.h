// Helpers for the protocol and broker tests: a broker running in-process on loopback (real store
// in a temporary directory, real sockets, port 0), a blocking raw NSQ client that sees every
// frame as it is on the wire, and a cairnd child process for restart and memory tests.
//
// Declarations only, but for what must be a template: test_support.cc (the cairn_test_support
// library) holds the rest, so that Beast's HTTP and std::regex are compiled once, not in every
// test that includes this.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
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
const std::string& TestAdminSecretFile();

// cairnd's server (src/server/server.h), wired as the daemon wires it, in this process, serving on
// 127.0.0.1 with ports of the kernel's choosing.
class BrokerHarness {
 public:
  // `options`' broker and session options are used; its store and addresses are the harness's.
  explicit BrokerHarness(ServerOptions options = {});
  ~BrokerHarness();

  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  const std::string& path() const { return dir_.path(); }

  // Runs `fn` on the broker's io thread and returns its result.
  template <class F>
  auto Run(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    Post([&task] { task(); });
    return result.get();
  }

  // A clean stop and start on the same data directory and TCP port.
  void Restart();

  storage::Store& store() { return server_->store(); }
  // Only on the io thread: inside Run().
  Broker& broker() { return server_->broker(); }

  // A channel's counters, read on the io thread; all zero if it does not exist.
  ChannelStats Stats(const std::string& topic, const std::string& channel);

 private:
  struct Loop;  // the io_context, its work guard and its thread

  void Post(std::function<void()> fn);
  void Open(uint16_t port = 0);
  void Shut();

  ServerOptions options_;
  TempDir dir_;
  std::unique_ptr<Loop> loop_;
  std::unique_ptr<Server> server_;
  uint16_t http_port_ = 0;
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
  explicit RawClient(uint16_t port, bool send_magic = true);
  ~RawClient() { Close(); }
  RawClient(const RawClient&) = delete;

  void Close();

  // Sends everything; false if the peer is gone.
  bool Send(std::string_view bytes);
  bool Cmd(std::string_view line);
  bool CmdBody(std::string_view line, std::string_view body);
  void Identify(const std::string& json);
  void Subscribe(std::string_view topic, std::string_view channel);
  void Publish(std::string_view topic, std::string_view body);

  // The next frame other than a heartbeat, or nullopt if the connection closed or nothing came
  // within `timeout`. Heartbeats are answered with NOP unless `answer_heartbeats` is off.
  std::optional<RawFrame> Read(std::chrono::milliseconds timeout = 5s);

  void ExpectResponse(std::string_view text);
  void ExpectError(std::string_view text);
  std::optional<RawMessage> ReadMessage(std::chrono::milliseconds timeout = 5s);

  // True if the broker closes the connection within `timeout` (any frames before are dropped).
  bool ClosedByPeer(std::chrono::milliseconds timeout = 5s);

  int fd() const { return fd_; }
  bool answer_heartbeats = true;
  int heartbeats = 0;

 private:
  // Reads more into buf_; false on EOF or at the deadline.
  bool Fill(std::chrono::steady_clock::time_point deadline);

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
 public:
  explicit HttpClient(uint16_t port, std::string_view bearer = kTestAdminSecret);
  ~HttpClient();
  Reply Get(const std::string& target);
  Reply Post(const std::string& target, std::string body = "");
  // The value of an unlabelled sample in /metrics ("name 12"); -1 if there is none.
  double Metric(const std::string& name);

 private:
  struct Connection;  // Beast's stream and buffer
  Reply Do(bool post, const std::string& target, std::string body);

  std::unique_ptr<Connection> connection_;
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
                            Listens listens = Listens::kTcpAndHttp);
  ~ListeningProcess();

  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }
  // The HTTPS port it logged ("HTTPS: listening on 127.0.0.1:<port>", which nsqd may log after
  // the others); 0 if it logs none within 10 s.
  uint16_t https_port() const;
  pid_t pid() const { return pid_; }
  std::string startup_log() const { return log(); }
  // Everything it logged so far (its first MiB).
  std::string log() const;

  // Sends `sig` and returns the exit status (as from waitpid).
  int Signal(int sig);
  int Wait();

  // Resident set size in bytes, from /proc.
  uint64_t RssBytes() const { return StatusBytes("VmRSS:"); }
  // The most it ever was (the kernel's high-water mark).
  uint64_t PeakRssBytes() const { return StatusBytes("VmHWM:"); }

 private:
  uint64_t StatusBytes(const std::string& field) const;

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
                                       std::vector<std::string> extra);
};

// A binary from NSQ v1.3.0 (nsqlookupd, nsq_tail, gonsq_roundtrip2, ...) in $NSQ_BIN_DIR; "" if
// it is not there, and `why` says so (the test then skips).
std::string NsqBinary(const std::string& name, std::string* why);

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
  AuthServer();
  // Over HTTPS, with the certificates' server certificate.
  explicit AuthServer(const Certificates& certs);
  std::string address() const { return fmt::format("127.0.0.1:{}", http_port()); }
  // The queries it received.
  nlohmann::json Seen() const;
};

}  // namespace cairn::testing
