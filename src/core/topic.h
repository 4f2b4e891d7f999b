// A topic: its log (durable, or in memory for #ephemeral topics) and its channels. Publishing
// appends to the log; every channel reads every message from it at its own pace.
//
// Thread-safety: none; every call on the broker's io thread. Publish completions and log growth
// arrive on the store's committer thread and are posted back to the io thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "src/core/channel.h"
#include "src/core/log.h"

namespace cairn {

class Broker;

struct TopicStats {
  uint64_t published = 0;        // messages acknowledged since the broker started
  uint64_t published_bytes = 0;  // their bodies' bytes
  uint64_t publish_failures = 0;
  uint64_t start_offset = 0;
  uint64_t next_offset = 0;
};

class Topic : public std::enable_shared_from_this<Topic> {
 public:
  using PublishCallback = std::function<void(storage::Result<storage::AppendResult>)>;

  Topic(Broker* broker, std::string name, std::unique_ptr<Log> log);
  ~Topic();
  Topic(const Topic&) = delete;
  Topic& operator=(const Topic&) = delete;

  const std::string& name() const { return name_; }
  bool ephemeral() const { return ephemeral_; }
  // The broker's io thread, where the topic's channels run their timers.
  boost::asio::any_io_executor executor();
  Log& log() { return *log_; }

  // Appends the messages as one batch; `done` runs on the io thread once they are durable under
  // the sync policy, or failed. The bodies are copied before Publish returns. `on_result`, if
  // set, runs first, on the thread that completes the append (the committer's, or the caller's
  // for an ephemeral topic): for what must not wait for the io thread to wake. It must be quick
  // and safe on any thread.
  using ResultHook = std::function<void(const storage::Result<storage::AppendResult>&)>;
  void Publish(std::span<const storage::MessageIn> messages, PublishCallback done,
               ResultHook on_result = nullptr);

  // The channel, created if missing. A topic's first channel starts at the start of the retained
  // log, so it also gets what was published while the topic had no channel (as nsqd holds those
  // messages for it); later channels start at the end.
  storage::Result<Channel*> GetOrCreateChannel(std::string_view name);
  // Cairn's create-at: a new channel starting at `start` (clamped to the retained log); an
  // existing channel is returned as it is.
  storage::Result<Channel*> GetOrCreateChannel(std::string_view name,
                                               std::optional<uint64_t> start);
  // Deletes a channel: its subscribers are disconnected and its cursor removed from the store.
  storage::Status DeleteChannel(std::string_view name);
  // nsqd's /topic/empty: every channel moves to the end of the log (retention trims the log).
  void Empty();
  // nsqd's topic pause: no channel delivers until unpaused.
  void SetPaused(bool paused);
  bool paused() const { return paused_; }
  // Messages older than this are skipped by every channel and counted as expired; 0: no limit.
  std::chrono::nanoseconds message_ttl() const { return message_ttl_; }
  void SetMessageTtl(std::chrono::nanoseconds ttl) { message_ttl_ = ttl; }
  // Cairn's topic settings (retention, message TTL, codec), stored with the topic and in force
  // at once: a shorter TTL expires what the channels hold back. Fails for an ephemeral topic,
  // whose settings are the broker's.
  storage::Status Configure(const storage::TopicSettings& settings);
  // Disconnects every subscriber of every channel (the topic is being deleted).
  void KickAll();
  Channel* FindChannel(std::string_view name);
  std::vector<Channel*> channels();
  // Called by the broker on start for channels the store already holds.
  void AttachChannel(std::shared_ptr<storage::ChannelCursor> cursor);

  // An ephemeral channel lost its last subscriber: it is deleted (after the current call).
  void OnEphemeralChannelIdle(const std::string& name);

  // Lets every channel send what it can.
  void Pump();
  TopicStats stats() const;

 private:
  void OnAppended();
  void EraseChannel(const std::string& name);

  Broker* const broker_;
  const std::string name_;
  const bool ephemeral_;
  std::unique_ptr<Log> log_;
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels_;
  std::atomic<bool> wake_posted_{false};
  bool paused_ = false;
  std::chrono::nanoseconds message_ttl_{0};
  TopicStats counters_;
};

}  // namespace cairn
