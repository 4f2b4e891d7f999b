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
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
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

// Appends the answers to every whole command at the front of `in` and consumes them; false once
// the connection is to be closed (after an error frame, which is then in `out`).
bool Answer(net::InputBuffer& in, std::string& out) {
  for (;;) {
    auto outcome = nsq::ParseCommand(in.data(), nsq::ParseLimits{});
    if (std::holds_alternative<nsq::NeedMore>(outcome)) return true;
    if (auto* error = std::get_if<nsq::ProtocolError>(&outcome)) {
      nsq::AppendError(out, *error);
      return false;
    }
    const auto& parsed = std::get<nsq::Parsed>(outcome);
    const nsq::Verb verb = parsed.command.verb;  // the command's views end with Consume
    in.Consume(parsed.consumed);
    switch (verb) {
      case nsq::Verb::kIdentify:  // "OK": no feature negotiation, as an nsqd without it answers
      case nsq::Verb::kPub:
      case nsq::Verb::kMpub:
      case nsq::Verb::kDpub:
        nsq::AppendResponse(out, nsq::kOk);
        break;
      case nsq::Verb::kNop:
        break;
      default:
        nsq::AppendError(out, {"E_INVALID", "cairn-null-broker takes publishes only"});
        return false;
    }
  }
}

asio::awaitable<void> Serve(tcp::socket socket) {
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  socket.set_option(tcp::no_delay(true), ec);
  net::InputBuffer in;
  std::string out;
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
    if (open) open = Answer(in, out);
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
  app.add_option("--tcp-address", address, "address to listen on")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto endpoint = ParseAddress(address);
  if (!endpoint) {
    std::fprintf(stderr, "cairn-null-broker: %s\n", endpoint.error().message.c_str());
    return 2;
  }
  asio::io_context io(1);
  // cairnd's listener: an address that cannot be bound is an error message, not an exception,
  // and a failing accept (out of descriptors) is retried, not spun on.
  net::Listener listener(io, [](tcp::socket socket, std::shared_ptr<net::SessionSet>) {
    auto executor = socket.get_executor();
    asio::co_spawn(executor, Serve(std::move(socket)), asio::detached);
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
  return 0;
}
