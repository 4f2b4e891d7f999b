// DirectAnswers on a real socket pair: when the thread completing a publish may write its answer,
// and what happens to the part of an answer the socket did not take.
#include "src/server/direct_answers.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace cairn::net {
namespace {

class SocketPair {
 public:
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  ~SocketPair() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  int writer() const { return fds_[0]; }
  // What the peer reads, up to `n` bytes; short if nothing comes for 5 s.
  std::string Read(size_t n) {
    std::string got;
    char buf[65536];
    pollfd p{fds_[1], POLLIN, 0};
    while (got.size() < n && ::poll(&p, 1, 5000) > 0) {
      const ssize_t r = ::recv(fds_[1], buf, std::min(sizeof buf, n - got.size()), 0);
      if (r <= 0) break;
      got.append(buf, static_cast<size_t>(r));
    }
    return got;
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(DirectAnswers, WritesOnlyWhileTheIoThreadIsIdleAndOnlyTheOldestAnswer) {
  SocketPair sockets;
  DirectAnswers answers(sockets.writer());
  EXPECT_FALSE(answers.TrySend(0, "a0")) << "not idle yet";
  answers.Idle(0);
  EXPECT_FALSE(answers.TrySend(1, "a1")) << "0 is older and unanswered";
  EXPECT_TRUE(answers.TrySend(0, "a0"));
  EXPECT_TRUE(answers.Sent(0));
  EXPECT_FALSE(answers.Sent(1));
  EXPECT_TRUE(answers.TrySend(1, "a1"));
  answers.Busy();
  EXPECT_FALSE(answers.TrySend(2, "a2")) << "the io thread is writing";
  EXPECT_FALSE(answers.Sent(2));
  // Idle again once the io thread has queued the answer to 2 itself: 3 is the oldest.
  answers.Idle(3);
  EXPECT_FALSE(answers.TrySend(2, "a2"));
  EXPECT_TRUE(answers.TrySend(3, "a3"));
  answers.Disable();
  answers.Idle(4);
  EXPECT_FALSE(answers.TrySend(4, "a4")) << "closing: never again";
  EXPECT_EQ(sockets.Read(6), "a0a1a3");
}

TEST(DirectAnswers, WhatTheSocketDidNotTakeGoesFirstInTheIoThreadsNextWrite) {
  SocketPair sockets;
  const int small = 16 * 1024;
  ASSERT_EQ(::setsockopt(sockets.writer(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  DirectAnswers answers(sockets.writer());
  answers.Idle(0);
  // Larger than the socket takes at once: part of it is written, the rest kept.
  const std::string frame(1 << 20, 'f');
  EXPECT_TRUE(answers.TrySend(0, frame));
  EXPECT_TRUE(answers.Sent(0));
  answers.Idle(1);
  EXPECT_FALSE(answers.TrySend(1, "a1")) << "a frame is half written: nothing may go after it";
  std::string out = "next";
  answers.TakeLeftover(out);
  ASSERT_GT(out.size(), 4u);
  ASSERT_LT(out.size(), frame.size() + 4) << "the socket took none of it";
  EXPECT_EQ(out.substr(out.size() - 4), "next");
  EXPECT_EQ(out.substr(0, out.size() - 4), std::string(out.size() - 4, 'f'));
  // The io thread writes it; with the rest in, the peer has the frame whole, then "next".
  std::thread io([&] {
    std::string_view rest = out;
    while (!rest.empty()) {
      const ssize_t n = ::send(sockets.writer(), rest.data(), rest.size(), 0);
      if (n <= 0) break;
      rest.remove_prefix(static_cast<size_t>(n));
    }
  });
  EXPECT_EQ(sockets.Read(frame.size() + 4), frame + "next");
  io.join();
  // Taken: the io thread may be idle again, and the next answer written directly.
  answers.Idle(1);
  EXPECT_TRUE(answers.TrySend(1, "a1"));
}

}  // namespace
}  // namespace cairn::net
