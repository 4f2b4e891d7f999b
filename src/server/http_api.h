// nsqd's HTTP API on cairnd, plus Cairn's additions (channel start and seek, the topic's log,
// topic settings, Prometheus metrics). Paths, parameters, status codes and bodies follow nsqd
// 1.3.0 so that nsq_stat, nsqadmin, Telegraf's nsq input and curl scripts work unchanged.
//
// Every handler runs on the broker's io thread. A publish is answered 200 only once the store
// says it is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "net/http_server.h"
#include "src/core/broker.h"
#include "src/server/options.h"

namespace cairn::net {

class TcpServer;

struct HttpApiInfo {
  std::string hostname;
  std::string broadcast_address;
  int tcp_port = 0;
  int http_port = 0;
  int https_port = 0;      // 0: no HTTPS
  int64_t start_time = 0;  // seconds since the epoch
  // Each nsqlookupd the broker registers with (--lookupd-tcp-address) and whether it is
  // registered there now; for /metrics.
  std::function<std::vector<std::pair<std::string, bool>>()> lookupd_registrations;
};

class HttpApi {
 public:
  HttpApi(Broker& broker, const SessionOptions& options, HttpApiInfo info, const TcpServer* tcp);
  // Finds the request's route (404 if none, 405 for another method, nsqd's OPTIONS answer) and
  // runs its handler. Under --tls-required=true a request that did not come `over_tls` gets
  // nsqd's 403 TLS_REQUIRED, with the port to retry on.
  void Handle(const HttpRequest& request, HttpResponder respond, bool over_tls);
  // The answer to a body over the server's limit: nsqd's 413 for the path.
  HttpResponse TooLarge(const HttpRequest& request) const;

 private:
  // One request as a handler sees it. `respond` may be called later (a publish answers once
  // durable), exactly once.
  struct Call {
    const HttpRequest& request;
    const Query& query;
    HttpResponder respond;
  };
  // One handler per route, as nsqd's http.go has them.
  void Ping(const Call& call);
  void Info(const Call& call);
  void Stats(const Call& call);
  void Metrics(const Call& call);
  void Pub(const Call& call);  // /pub and /dpub
  void Mpub(const Call& call);
  void TopicCreate(const Call& call);
  void TopicDelete(const Call& call);
  void TopicEmpty(const Call& call);
  void TopicPause(const Call& call);
  void TopicUnpause(const Call& call);
  void TopicLog(const Call& call);
  void TopicOffset(const Call& call);
  void TopicConfig(const Call& call);
  void ChannelCreate(const Call& call);
  void ChannelDelete(const Call& call);
  void ChannelEmpty(const Call& call);
  void ChannelPause(const Call& call);
  void ChannelUnpause(const Call& call);
  void ChannelSeek(const Call& call);

  // Whether the call may erase acknowledged messages (SessionOptions::admin_secret); if not,
  // answers 401 ADMIN_SECRET_REQUIRED and says why in the log.
  bool AdminAllowed(const Call& call) const;

  // Appends the messages to the topic (created if missing) and answers once they are durable.
  void Publish(const std::string& topic, std::vector<storage::MessageIn> messages,
               HttpResponder respond);
  // The existing topic the query names, or nsqd's answer: MISSING_ARG_TOPIC, INVALID_TOPIC
  // (only if `validate`: nsqd does not check the name of a topic it only looks up) or
  // TOPIC_NOT_FOUND.
  tl::expected<std::shared_ptr<Topic>, HttpResponse> FindTopic(const Query& query, bool validate);
  // The topic and channel the query names, or nsqd's answer (MISSING_ARG_TOPIC,
  // INVALID_ARG_TOPIC, MISSING_ARG_CHANNEL, INVALID_ARG_CHANNEL, TOPIC_NOT_FOUND, and
  // CHANNEL_NOT_FOUND if `must_exist`; otherwise a channel that does not exist is nullptr).
  tl::expected<std::pair<std::shared_ptr<Topic>, Channel*>, HttpResponse> FindChannel(
      const Query& query, bool must_exist);

  struct Route {
    std::string_view path;
    boost::beast::http::verb method;
    void (HttpApi::*handler)(const Call&);
  };
  static const Route kRoutes[];

  Broker& broker_;
  const SessionOptions options_;
  HttpApiInfo info_;
  const TcpServer* tcp_;
};

}  // namespace cairn::net
