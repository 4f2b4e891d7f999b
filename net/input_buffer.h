// A read buffer for a socket: bytes arrive at the end, parsed bytes are consumed from the front.
// Allocates (and zero-fills) only when it grows, never per read: std::string::resize on every
// read zero-filled 64 KiB per call and cost three quarters of the broker's CPU.
#pragma once

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace cairn::net {

class InputBuffer {
 public:
  // The bytes received and not yet consumed.
  std::string_view data() const { return {buf_.data() + begin_, end_ - begin_}; }
  size_t size() const { return end_ - begin_; }

  // Room for at least `min` more bytes at the end; fill some of it, then Commit.
  std::span<char> Prepare(size_t min) {
    if (buf_.size() - end_ < min && begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < min) buf_.resize(std::max(buf_.size() * 2, end_ + min));
    return {buf_.data() + end_, buf_.size() - end_};
  }
  void Commit(size_t n) { end_ += n; }
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ != end_) return;
    begin_ = end_ = 0;
    // An idle connection does not keep the room a large MPUB once needed.
    if (buf_.size() > kKeepBytes) std::string().swap(buf_);
  }

  static constexpr size_t kKeepBytes = 256 * 1024;

 private:
  std::string buf_;
  size_t begin_ = 0, end_ = 0;
};

}  // namespace cairn::net
