// nsqd's HTTP API on cairnd, plus Cairn's additions (channel start and seek, the topic's log,
// topic settings, Prometheus metrics). Paths, parameters, status codes and bodies follow nsqd
// 1.3.0 so that nsq_stat, nsqadmin, Telegraf's nsq input and curl scripts work unchanged.
//
// Every handler runs on the broker's io thread. A publish is answered 200 only once the store
// says it is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

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
  int64_t start_time = 0;  // seconds since the epoch
};

class HttpApi {
 public:
  HttpApi(Broker& broker, const SessionOptions& options, HttpApiInfo info, const TcpServer* tcp);
  void Handle(const HttpRequest& request, HttpResponder respond);
  // The answer to a body over the server's limit: nsqd's 413 for the path.
  HttpResponse TooLarge(const HttpRequest& request) const;

 private:
  Broker& broker_;
  const SessionOptions options_;
  HttpApiInfo info_;
  const TcpServer* tcp_;
};

}  // namespace cairn::net
