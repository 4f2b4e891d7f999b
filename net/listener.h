// A listening socket and the connections it accepted: the part the TCP (NSQ) and HTTP servers
// share. Sessions register themselves in the listener's SessionSet while they live, so shutdown
// can reach them: Drain() asks each to finish what it is doing and close, CloseAll() closes them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "src/base/error.h"

namespace cairn::net {

class ListenedSession {
 public:
  virtual ~ListenedSession() = default;
  // Shutdown: stop taking requests, finish (and answer) the ones in progress, then close.
  virtual void Drain() = 0;
  virtual void Close() = 0;
};

// Shared by the listener and its sessions, so that either may go first.
struct SessionSet {
  std::set<ListenedSession*> sessions;
  bool draining = false;
};

// Registers a session in a SessionSet for as long as it lives.
class SessionRegistration {
 public:
  SessionRegistration(std::shared_ptr<SessionSet> set, ListenedSession* session)
      : set_(std::move(set)), session_(session) {
    set_->sessions.insert(session_);
  }
  ~SessionRegistration() { set_->sessions.erase(session_); }
  SessionRegistration(const SessionRegistration&) = delete;
  SessionRegistration& operator=(const SessionRegistration&) = delete;
  bool draining() const { return set_->draining; }

 private:
  std::shared_ptr<SessionSet> set_;
  ListenedSession* session_;
};

class Listener {
 public:
  // Starts a session for an accepted socket.
  using Factory = std::function<void(boost::asio::ip::tcp::socket, std::shared_ptr<SessionSet>)>;

  Listener(boost::asio::io_context& io, Factory factory);
  ~Listener();

  // Binds and listens (port 0 picks one); kUnavailable names the address and the reason when
  // it cannot be bound. Start() then accepts.
  Status Listen(const boost::asio::ip::tcp::endpoint& endpoint);
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void Start();
  void Drain();
  void CloseAll();
  size_t connection_count() const { return set_->sessions.size(); }
  const std::set<ListenedSession*>& sessions() const { return set_->sessions; }

 private:
  void Accept();

  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  Factory factory_;
  std::shared_ptr<SessionSet> set_ = std::make_shared<SessionSet>();
};

}  // namespace cairn::net
