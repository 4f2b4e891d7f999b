// The broker's options. Where nsqd has the same concept the name and the default are nsqd's, so
// that an operator's flags carry over; each says what it bounds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cairn {

struct BrokerOptions {
  using ms = std::chrono::milliseconds;

  // Time a consumer has to finish a message before it is delivered again (attempts + 1).
  // A client may ask for its own in IDENTIFY, up to max_msg_timeout.
  ms msg_timeout{60'000};
  ms max_msg_timeout{15 * 60'000};

  // Largest message body accepted by PUB, DPUB and each message of MPUB.
  uint32_t max_msg_size = 1024 * 1024;
  // Largest MPUB body (all its messages together).
  uint32_t max_body_size = 5 * 1024 * 1024;

  // Largest RDY a client may send.
  int64_t max_rdy_count = 2500;
  // Largest REQ delay and DPUB defer.
  ms max_req_timeout{60 * 60'000};

  // Heartbeats: the default a client gets, and the most it may ask for.
  ms heartbeat_interval{30'000};
  ms max_heartbeat_interval{60'000};

  // Output buffering a client may ask for in IDENTIFY. Cairn writes whatever is ready as soon as
  // the socket takes it, so these only bound what a client can negotiate.
  int64_t max_output_buffer_size = 64 * 1024;
  ms min_output_buffer_timeout{25};
  ms max_output_buffer_timeout{30'000};

  // Messages an ephemeral topic keeps in memory; older ones are dropped (nsqd's mem-queue-size).
  size_t ephemeral_queue_size = 10'000;

  // How much of the log a channel reads ahead of its consumers: memory per channel is bounded by
  // this (plus its messages in flight), whatever the backlog.
  size_t window_messages = 4096;
  size_t window_bytes = 4u << 20;

  // Bytes a client's unsent output may reach before the broker stops sending it messages,
  // checked before every message (a slow reader costs memory up to this plus one message). Its
  // commands are still read, so its NOPs and FINs keep working; only once answers it does not
  // read add another MiB is reading paused too.
  size_t max_pending_output = 4u << 20;

  // Appends a connection may have waiting for durability at once (pipelined PUB/MPUB).
  size_t max_pending_publishes = 64;

  // A channel with messages in flight or deferred checks their deadlines this often at most (a
  // channel with none has no timer at all, so idle channels cost nothing).
  ms timer_resolution{10};
};

}  // namespace cairn
