#include "src/server/direct_answers.h"

#include <sys/socket.h>

#include <algorithm>

namespace cairn::net {

bool DirectAnswers::TrySend(uint64_t seq, std::string_view frame) {
  std::lock_guard lock(mu_);
  if (!idle_.load() || next_.load() != seq) {
    return false;
  }
  const ssize_t n = ::send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n <= 0) return false;  // full, or failing: the io thread writes it, and sees the error
  next_.store(seq + 1);
  if (static_cast<size_t>(n) < frame.size()) {
    // The socket took part of it: the rest goes before anything else the io thread writes.
    leftover_.assign(frame.substr(static_cast<size_t>(n)));
    has_leftover_.store(true);
    idle_.store(false);
  }
  return true;
}

uint64_t DirectAnswers::AnsweredBelow() const {
  std::lock_guard lock(mu_);
  return next_.load();
}

void DirectAnswers::Idle(uint64_t oldest) {
  std::lock_guard lock(mu_);
  if (disabled_ || has_leftover_.load()) return;
  next_.store(std::max(next_.load(), oldest));
  idle_.store(true);
}

void DirectAnswers::SetBusy() {
  std::lock_guard lock(mu_);
  idle_.store(false);
}

void DirectAnswers::TakeLeftover(std::string& out) {
  if (!has_leftover_.load()) return;
  std::lock_guard lock(mu_);
  out.insert(0, leftover_);
  leftover_.clear();
  has_leftover_.store(false);
}

void DirectAnswers::Disable() {
  std::lock_guard lock(mu_);
  disabled_ = true;
  idle_.store(false);
}

}  // namespace cairn::net
