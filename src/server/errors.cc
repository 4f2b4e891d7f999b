#include "src/server/errors.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace cairn::net {

nsq::ProtocolError CommandFailed(std::string_view client, std::string_view verb,
                                 const Error& error) {
  spdlog::error("client={} {} failed: {}", client, verb, error.ToString());
  return {fmt::format("E_{}_FAILED", verb), fmt::format("{} failed {}", verb, error.message), true};
}

HttpFailure HttpFailed(HttpOperation operation, std::string_view what, const Error& error) {
  spdlog::error("HTTP {} failed: {}", what, error.ToString());
  if (operation == HttpOperation::kPublish) {
    return {boost::beast::http::status::service_unavailable, "EXITING"};
  }
  return {boost::beast::http::status::internal_server_error, "INTERNAL_ERROR"};
}

}  // namespace cairn::net
