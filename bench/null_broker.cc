// cairn-null-broker: the ceiling of bench/'s publish scenarios on this machine. It speaks enough
// of NSQ's TCP protocol for a publisher (the magic, IDENTIFY, PUB, MPUB, DPUB, NOP) on the same
// Boost.Asio loop and with the same codec as cairnd, and answers every publish OK at once, storing
// nothing: what cairn-bench's load costs the loopback, the kernel and the client, with no broker
// behind it. bench/run_vs_nsqd runs it beside cairnd and nsqd, so that a ratio can be read against
// what the machine allows.
//
// Each read takes in everything the socket has, parses every whole command in it, and answers
// them with one write. Anything else (SUB, RDY, a malformed command) gets nsqd's error and the
// connection is closed.
//
// With --flush-to=DIR it is the flush-only broker instead, a durable broker that pays for nothing
// but the flush: the answers to a read's publishes wait until their bytes, as received, are
// written to a file in DIR and fdatasync'ed. One thread writes and syncs everything that is
// waiting at once, as a group commit does, and starts the next group as soon as one is synced (no
// linger). The file is written over zeros laid down and synced at start, so each fdatasync
// flushes data only, the cheapest flush the file system has (what cairnd's prepared WAL files give
// RocksDB, storage/wal_files.h). It stores no index, compresses nothing and keeps nothing past the
// file's end, where it wraps: what the flush alone costs a load, with no store behind it. A
// connection sends nothing more until its group is synced, so pipelined publishes are answered a
// read at a time.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/input_buffer.h"
#include "net/listener.h"
#include "net/protocol.h"
#include "src/base/address.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace cairn;

namespace {

// --flush-to's group commit over one file of `kFileBytes`, written over zeros.
class Flusher {
 public:
  static constexpr size_t kFileBytes = 64u << 20;

  // Lays the file down in `dir` and starts the thread; an error says what failed.
  static std::unique_ptr<Flusher> Open(const std::string& dir, std::string& error) {
    const std::string path = dir + "/cairn-null-broker.flush";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    auto fail = [&] {
      error = path + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return nullptr;
    };
    if (fd < 0) return fail();
    const std::string zeros(1u << 20, '\0');
    for (size_t at = 0; at < kFileBytes; at += zeros.size()) {
      if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(at)) !=
          static_cast<ssize_t>(zeros.size())) {
        return fail();
      }
    }
    if (::fsync(fd) != 0) return fail();
    return std::unique_ptr<Flusher>(new Flusher(fd));
  }

  ~Flusher() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    ::close(fd_);
  }

  // `done(true)` runs on the flusher's thread once `bytes` are synced; false if writing failed.
  void Submit(std::string_view bytes, std::function<void(bool)> done) {
    {
      std::lock_guard lock(mu_);
      pending_.append(bytes);
      waiting_.push_back(std::move(done));
    }
    cv_.notify_one();
  }

 private:
  explicit Flusher(int fd) : fd_(fd), thread_([this] { Run(); }) {}

  void Run() {
    std::string group;
    std::vector<std::function<void(bool)>> done;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // stopping
      group.swap(pending_);
      done.swap(waiting_);
      lock.unlock();
      const bool ok = Write(group) && ::fdatasync(fd_) == 0;
      for (auto& d : done) d(ok);
      group.clear();
      done.clear();
      lock.lock();
    }
  }

  // At the file's end it wraps to the start: the file holds the last kFileBytes written.
  bool Write(std::string_view bytes) {
    while (!bytes.empty()) {
      if (at_ == kFileBytes) at_ = 0;
      const size_t n = std::min(bytes.size(), kFileBytes - at_);
      const ssize_t w = ::pwrite(fd_, bytes.data(), n, static_cast<off_t>(at_));
      if (w <= 0) return false;
      at_ += static_cast<size_t>(w);
      bytes.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }

  const int fd_;
  size_t at_ = 0;  // the flusher thread's own
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string pending_;
  std::vector<std::function<void(bool)>> waiting_;
  std::thread thread_;  // last: it starts on members built before it
};

// Completes on the caller's executor once `flusher` has synced `bytes`, with false if it failed.
auto AsyncFlush(Flusher& flusher, std::string_view bytes) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
      [&flusher, bytes](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        flusher.Submit(bytes, [h](bool ok) {
          auto executor = asio::get_associated_executor(*h);
          asio::post(executor, [h, ok] {
            auto resume = std::move(*h);
            resume(ok);
          });
        });
      },
      asio::use_awaitable);
}

// Appends the answers to every whole command at the front of `in` and consumes them; false once
// the connection is to be closed (after an error frame, which is then in `out`). The bytes of
// each publish answered are appended to `published`, unless it is null.
bool Answer(net::InputBuffer& in, std::string& out, std::string* published) {
  for (;;) {
    auto outcome = nsq::ParseCommand(in.data(), nsq::ParseLimits{});
    if (std::holds_alternative<nsq::NeedMore>(outcome)) return true;
    if (auto* error = std::get_if<nsq::ProtocolError>(&outcome)) {
      nsq::AppendError(out, *error);
      return false;
    }
    const auto& parsed = std::get<nsq::Parsed>(outcome);
    const nsq::Verb verb = parsed.command.verb;  // the command's views end with Consume
    switch (verb) {
      case nsq::Verb::kPub:
      case nsq::Verb::kMpub:
      case nsq::Verb::kDpub:
        if (published) published->append(in.data().substr(0, parsed.consumed));
        [[fallthrough]];
      case nsq::Verb::kIdentify:  // "OK": no feature negotiation, as an nsqd without it answers
        nsq::AppendResponse(out, nsq::kOk);
        break;
      case nsq::Verb::kNop:
        break;
      default:
        nsq::AppendError(out, {"E_INVALID", "cairn-null-broker takes publishes only"});
        return false;
    }
    in.Consume(parsed.consumed);
  }
}

// `flusher` is null unless --flush-to was given.
asio::awaitable<void> Serve(tcp::socket socket, Flusher* flusher) {
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  socket.set_option(tcp::no_delay(true), ec);
  net::InputBuffer in;
  std::string out, published;
  bool open = true;
  bool upgraded = false;
  while (open) {
    auto space = in.Prepare(64 * 1024);
    const size_t n =
        co_await socket.async_read_some(asio::buffer(space.data(), space.size()), token);
    if (ec) co_return;
    in.Commit(n);
    if (!upgraded) {
      if (in.size() < nsq::kMagicV2.size()) continue;
      if (in.data().substr(0, nsq::kMagicV2.size()) != nsq::kMagicV2) {
        nsq::AppendFrame(out, nsq::FrameType::kError, "E_BAD_PROTOCOL");  // as cairnd answers
        open = false;
      } else {
        in.Consume(nsq::kMagicV2.size());
        upgraded = true;
      }
    }
    if (open) open = Answer(in, out, flusher ? &published : nullptr);
    if (flusher && !published.empty()) {
      if (!co_await AsyncFlush(*flusher, published)) {
        std::fprintf(stderr, "cairn-null-broker: writing to --flush-to failed\n");
        co_return;
      }
      published.clear();
    }
    if (out.empty()) continue;
    co_await asio::async_write(socket, asio::buffer(out), token);
    if (ec) co_return;
    out.clear();
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cairn-null-broker: answers every NSQ publish OK and stores nothing"};
  std::string address = "127.0.0.1:0";
  std::string flush_to;
  app.add_option("--tcp-address", address, "address to listen on")->capture_default_str();
  app.add_option("--flush-to", flush_to,
                 "directory of a file each publish is written to and fdatasync'ed in before its "
                 "OK, in groups: the flush-only broker, what the flush alone allows");
  CLI11_PARSE(app, argc, argv);
  auto endpoint = ParseAddress(address);
  if (!endpoint) {
    std::fprintf(stderr, "cairn-null-broker: %s\n", endpoint.error().message.c_str());
    return 2;
  }
  std::unique_ptr<Flusher> flusher;
  if (!flush_to.empty()) {
    std::string error;
    flusher = Flusher::Open(flush_to, error);
    if (!flusher) {
      std::fprintf(stderr, "cairn-null-broker: --flush-to: %s\n", error.c_str());
      return 1;
    }
  }
  asio::io_context io(1);
  // cairnd's listener: an address that cannot be bound is an error message, not an exception,
  // and a failing accept (out of descriptors) is retried, not spun on.
  net::Listener listener(io, [&flusher](tcp::socket socket, std::shared_ptr<net::SessionSet>) {
    auto executor = socket.get_executor();
    asio::co_spawn(executor, Serve(std::move(socket), flusher.get()), asio::detached);
  });
  if (auto st = listener.Listen(*endpoint); !st) {
    std::fprintf(stderr, "cairn-null-broker: %s\n", st.error().message.c_str());
    return 1;
  }
  // The line bench/bench_support.py (and anything that starts nsqd) waits for.
  std::fprintf(stderr, "TCP: listening on %s\n", FormatAddress(listener.local_endpoint()).c_str());
  std::fflush(stderr);
  listener.Start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  io.run();
  flusher.reset();  // its last completions are posted to `io`, which must outlive it
  return 0;
}
