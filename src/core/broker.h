// The broker core: topics and their channels over the store, driven by one io thread.
//
// Threading: Broker, Topic and Channel are touched only on the io_context's thread (the TCP and
// HTTP sessions run there too), so delivery state needs no locks. The store's committer thread
// reports durable appends, which are posted back here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "src/core/options.h"
#include "src/core/topic.h"
#include "storage/store.h"

namespace cairn {

// A topic or channel came into being or went away: what a broker announces to nsqlookupd
// (REGISTER and UNREGISTER). `channel` is empty for the topic itself.
struct RegistryChange {
  bool registered = true;
  std::string topic;
  std::string channel;
};

class Broker {
 public:
  Broker(boost::asio::io_context& io, storage::Store& store, BrokerOptions options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Loads the topics and channels the store holds.
  void Start();
  // Stops the channels' timers; topics stay until the broker is destroyed.
  void Stop();
  bool stopped() const { return stopped_; }

  const BrokerOptions& options() const { return options_; }
  // The io thread's executor: channels arm their timers on it.
  boost::asio::any_io_executor executor() { return io_.get_executor(); }
  // Whether the store can write (false after a failed write, until one succeeds), and its
  // counters: what /ping, /stats and /metrics report.
  bool healthy() const { return store_.healthy(); }
  storage::StoreStats store_stats() const { return store_.stats(); }

  // The topic, created if missing; names ending in "#ephemeral" live in memory only. Names are
  // assumed valid (the protocol layer checks them).
  storage::Result<std::shared_ptr<Topic>> GetOrCreateTopic(std::string_view name);
  std::shared_ptr<Topic> FindTopic(std::string_view name) const;
  // Deletes a topic: its subscribers are disconnected, then its log, channels and cursors are
  // removed from the store in one atomic write.
  storage::Status DeleteTopic(std::string_view name);
  std::vector<std::shared_ptr<Topic>> topics() const;

  // An ephemeral topic lost its last channel: it is deleted (after the current call).
  void OnEphemeralTopicIdle(const std::string& name);

  // Called on the io thread for every topic and channel created or deleted from now on, by a
  // client, an operator or the broker itself (ephemeral ones going idle); ephemeral ones
  // included, as nsqd announces them.
  void SetRegistryListener(std::function<void(const RegistryChange&)> listener);
  // Every topic and channel now, as announced on a fresh connection to nsqlookupd (nsqd's
  // order of things): each channel as (topic, channel), a topic without channels as (topic, "").
  std::vector<RegistryChange> Registrations() const;

  // Runs `fn` on the io thread. Safe from any thread. Calls made while the io thread has not
  // yet drained earlier ones share one wake-up: a group commit of 64 publishes completes with one
  // hand-off to the io thread, not 64.
  void Post(std::function<void()> fn);

 private:
  void DrainPosted();
  // Topics create and delete their channels' cursors in the store, and announce their channels.
  friend class Topic;
  storage::Store& store() { return store_; }
  void Announce(bool registered, std::string_view topic, std::string_view channel = {});

  boost::asio::io_context& io_;
  storage::Store& store_;
  const BrokerOptions options_;
  std::map<std::string, std::shared_ptr<Topic>, std::less<>> topics_;
  bool stopped_ = false;
  std::function<void(const RegistryChange&)> registry_listener_;

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;   // guarded by posted_mu_
  std::vector<std::function<void()>> running_;  // io thread only
};

}  // namespace cairn
