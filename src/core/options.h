// The broker core's options (the sessions' own are in src/server/options.h). Where nsqd has the
// same concept the name and the default are nsqd's, so that an operator's flags carry over; each
// says what it bounds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cairn {

struct BrokerOptions {
  using ms = std::chrono::milliseconds;

  // The longest a message may stay in flight: a client's msg_timeout (src/server/options.h) is
  // at most this, and TOUCH extends a deadline to at most this after delivery.
  ms max_msg_timeout{15 * 60'000};

  // Largest message body accepted by PUB, DPUB and each message of MPUB; a redelivery reads at
  // most this much.
  uint32_t max_msg_size = 1024 * 1024;

  // Messages an ephemeral topic keeps in memory; older ones are dropped (nsqd's mem-queue-size).
  size_t ephemeral_queue_size = 10'000;

  // How much of the log a channel reads ahead of its consumers: memory per channel is bounded by
  // this (plus its messages in flight), whatever the backlog.
  size_t window_messages = 4096;
  size_t window_bytes = 4u << 20;

  // A channel with messages in flight or deferred checks their deadlines this often at most (a
  // channel with none has no timer at all, so idle channels cost nothing).
  ms timer_resolution{10};
};

}  // namespace cairn
