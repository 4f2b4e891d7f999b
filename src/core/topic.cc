#include "src/core/topic.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "src/base/names.h"
#include "src/core/broker.h"

namespace cairn {

Topic::Topic(Broker* broker, std::string name, std::unique_ptr<Log> log)
    : broker_(broker),
      name_(std::move(name)),
      ephemeral_(IsEphemeral(name_)),
      log_(std::move(log)) {
  // The listener runs on the committer thread: post one wake-up at a time to the io thread.
  log_->SetAppendListener([this](uint64_t) {
    if (wake_posted_.exchange(true)) return;
    broker_->Post([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->OnAppended();
    });
  });
}

Topic::~Topic() { log_->SetAppendListener(nullptr); }

void Topic::Publish(std::span<const storage::MessageIn> messages, PublishCallback done,
                    ResultHook on_result) {
  uint64_t bytes = 0;
  for (const auto& m : messages) bytes += m.body.size();
  log_->Append(messages, [self = shared_from_this(), bytes, done = std::move(done),
                          on_result = std::move(on_result)](
                             storage::Result<storage::AppendResult> result) mutable {
    if (on_result) on_result(result);
    self->broker_->Post(
        [self, bytes, done = std::move(done), result = std::move(result)]() mutable {
          if (result) {
            self->counters_.published += result->count;
            self->counters_.published_bytes += bytes;
          } else {
            ++self->counters_.publish_failures;
          }
          done(std::move(result));
        });
  });
}

boost::asio::any_io_executor Topic::executor() { return broker_->executor(); }

void Topic::OnAppended() {
  wake_posted_.store(false);
  Pump();
}

storage::Status Topic::Configure(const storage::TopicSettings& settings) {
  if (!log_->durable()) {
    return storage::Fail(storage::Errc::kInvalidArgument,
                         fmt::format("topic {} is ephemeral: it has no settings", name_));
  }
  if (auto st = broker_->store().ConfigureTopic(name_, settings); !st) return st;
  SetMessageTtl(settings.message_ttl.value_or(std::chrono::milliseconds(0)));
  Pump();
  return {};
}

void Topic::Pump() {
  for (auto& [_, channel] : channels_) channel->Pump();
}

storage::Result<Channel*> Topic::GetOrCreateChannel(std::string_view name) {
  return GetOrCreateChannel(name, std::nullopt);
}

storage::Result<Channel*> Topic::GetOrCreateChannel(std::string_view name,
                                                    std::optional<uint64_t> at) {
  if (auto* existing = FindChannel(name)) return existing;
  // The first channel takes the retained log; later ones start at its end.
  const uint64_t start =
      std::clamp(at.value_or(channels_.empty() ? log_->start_offset() : log_->next_offset()),
                 log_->start_offset(), log_->next_offset());
  std::shared_ptr<storage::ChannelCursor> cursor;
  if (ephemeral_ || IsEphemeral(name)) {
    // Nothing on disk: the cursor lives as long as the channel.
    cursor = std::make_shared<storage::ChannelCursor>(0, 0, std::string(name),
                                                      storage::AckSet(start), 0);
  } else {
    auto created = broker_->store().CreateChannel(name_, name, start);
    if (!created) return tl::unexpected(created.error());
    cursor = std::move(*created);
  }
  auto channel =
      std::make_unique<Channel>(this, std::string(name), std::move(cursor), broker_->options());
  Channel* raw = channel.get();
  channels_.emplace(std::string(name), std::move(channel));
  spdlog::info("topic={} channel={} created start_offset={}", name_, name, start);
  broker_->Announce(true, name_, name);
  return raw;
}

void Topic::AttachChannel(std::shared_ptr<storage::ChannelCursor> cursor) {
  std::string name = cursor->name();
  channels_.emplace(name,
                    std::make_unique<Channel>(this, name, std::move(cursor), broker_->options()));
}

Channel* Topic::FindChannel(std::string_view name) {
  auto it = channels_.find(name);
  return it == channels_.end() ? nullptr : it->second.get();
}

std::vector<Channel*> Topic::channels() {
  std::vector<Channel*> out;
  out.reserve(channels_.size());
  for (auto& [_, c] : channels_) out.push_back(c.get());
  return out;
}

void Topic::OnEphemeralChannelIdle(const std::string& name) {
  broker_->Post([weak = weak_from_this(), name] {
    if (auto self = weak.lock()) self->EraseChannel(name);
  });
}

void Topic::EraseChannel(const std::string& name) {
  auto it = channels_.find(name);
  // A subscriber may have arrived since the channel went idle.
  if (it == channels_.end() || it->second->subscriber_count() > 0) return;
  channels_.erase(it);
  spdlog::info("topic={} channel={} deleted (ephemeral, no subscribers left)", name_, name);
  broker_->Announce(false, name_, name);
  if (ephemeral_ && channels_.empty()) broker_->OnEphemeralTopicIdle(name_);
}

storage::Status Topic::DeleteChannel(std::string_view name) {
  auto it = channels_.find(name);
  if (it == channels_.end()) {
    return storage::Fail(storage::Errc::kNotFound, fmt::format("no channel {}", name));
  }
  it->second->KickSubscribers();
  if (log_->durable() && !it->second->ephemeral()) {
    if (auto st = broker_->store().DeleteChannel(name_, name); !st) return st;
  }
  const std::string deleted = it->first;
  channels_.erase(it);
  spdlog::info("topic={} channel={} deleted", name_, deleted);
  broker_->Announce(false, name_, deleted);
  return {};
}

void Topic::Empty() {
  for (auto& [_, channel] : channels_) channel->Seek(log_->next_offset());
}

void Topic::SetPaused(bool paused) {
  paused_ = paused;
  if (!paused_) {
    for (auto& [_, channel] : channels_) channel->Pump();
  }
}

void Topic::KickAll() {
  for (auto& [_, channel] : channels_) channel->KickSubscribers();
}

TopicStats Topic::stats() const {
  TopicStats s = counters_;
  s.start_offset = log_->start_offset();
  s.next_offset = log_->next_offset();
  return s;
}

}  // namespace cairn
