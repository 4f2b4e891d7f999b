#include "src/core/broker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "src/base/names.h"
#include "storage/group_commit.h"

namespace cairn {

Broker::Broker(boost::asio::io_context& io, storage::Store& store, BrokerOptions options)
    : io_(io), store_(store), options_(options) {}

Broker::~Broker() { Stop(); }

void Broker::Start() {
  for (auto& log : store_.Topics()) {
    auto topic = std::make_shared<Topic>(this, log->name(), std::make_unique<DurableLog>(log));
    topic->SetMessageTtl(log->Info().settings.message_ttl.value_or(std::chrono::milliseconds(0)));
    for (auto& cursor : log->Channels()) topic->AttachChannel(cursor);
    topics_.emplace(log->name(), std::move(topic));
  }
}

void Broker::Stop() {
  stopped_ = true;
  for (auto& [_, topic] : topics_) {
    for (Channel* channel : topic->channels()) channel->StopTimer();
  }
}

storage::Result<std::shared_ptr<Topic>> Broker::GetOrCreateTopic(std::string_view name) {
  if (auto it = topics_.find(name); it != topics_.end()) return it->second;
  std::unique_ptr<Log> log;
  if (IsEphemeral(name)) {
    log = std::make_unique<MemoryLog>(options_.ephemeral_queue_size);
  } else {
    auto created = store_.CreateTopic(name);
    if (!created) return tl::unexpected(created.error());
    log = std::make_unique<DurableLog>(std::move(*created));
  }
  auto topic = std::make_shared<Topic>(this, std::string(name), std::move(log));
  topics_.emplace(std::string(name), topic);
  spdlog::info("topic={} created", name);
  Announce(true, name);
  return topic;
}

std::shared_ptr<Topic> Broker::FindTopic(std::string_view name) const {
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : it->second;
}

storage::Status Broker::DeleteTopic(std::string_view name) {
  auto it = topics_.find(name);
  if (it == topics_.end()) {
    return storage::Fail(storage::Errc::kNotFound, fmt::format("no topic {}", name));
  }
  auto topic = it->second;
  topic->KickAll();
  if (topic->log().durable()) {
    if (auto st = store_.DeleteTopic(name); !st) return st;
  }
  const std::string deleted = it->first;
  topics_.erase(it);
  spdlog::info("topic={} deleted", deleted);
  Announce(false, deleted);
  return {};
}

std::vector<std::shared_ptr<Topic>> Broker::topics() const {
  std::vector<std::shared_ptr<Topic>> out;
  for (const auto& [_, t] : topics_) out.push_back(t);
  return out;
}

void Broker::SetRegistryListener(std::function<void(const RegistryChange&)> listener) {
  registry_listener_ = std::move(listener);
}

std::vector<RegistryChange> Broker::Registrations() const {
  std::vector<RegistryChange> out;
  for (const auto& [name, topic] : topics_) {
    const std::vector<Channel*> channels = topic->channels();
    if (channels.empty()) out.push_back({true, name, ""});
    for (const Channel* c : channels) out.push_back({true, name, c->name()});
  }
  return out;
}

void Broker::Announce(bool registered, std::string_view topic, std::string_view channel) {
  if (registry_listener_) {
    registry_listener_({registered, std::string(topic), std::string(channel)});
  }
}

void Broker::OnEphemeralTopicIdle(const std::string& name) {
  Post([this, name] {
    auto it = topics_.find(name);
    if (it == topics_.end() || !it->second->channels().empty()) return;
    topics_.erase(it);
    spdlog::info("topic={} deleted (ephemeral, no channels left)", name);
    Announce(false, name);
  });
}

void Broker::Post(std::function<void()> fn) {
  bool first;
  {
    std::lock_guard lock(posted_mu_);
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // On the committer thread, the io thread is woken once the whole group is in `posted_`.
  if (first) {
    storage::AfterGroupCompleted([this] { boost::asio::post(io_, [this] { DrainPosted(); }); });
  }
}

void Broker::DrainPosted() {
  {
    std::lock_guard lock(posted_mu_);
    running_.swap(posted_);
  }
  for (auto& fn : running_) fn();
  running_.clear();
}

}  // namespace cairn
