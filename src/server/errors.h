// What a client of cairnd is told when the core fails an operation. One place, so that every
// command and every endpoint answers alike and as nsqd answers, and every failure is logged once
// with its cause (the client sees only nsqd's short form).
//
// - TCP: a PUB, MPUB, DPUB or SUB the core failed gets nsqd's fatal E_<VERB>_FAILED
//   "<VERB> failed <message>"; the connection closes after it, as nsqd's does.
// - HTTP: a publish the core failed is 503 EXITING, nsqd's answer when a topic cannot take a
//   message, and what clients and HTTP collectors retry; any other operation is 500
//   INTERNAL_ERROR.
//
// Requests that are wrong in themselves (bad names, missing parameters, values out of range) are
// answered where they are checked, with nsqd's E_INVALID / E_BAD_* codes and HTTP 4xx texts.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/status.hpp>

#include "net/protocol.h"
#include "src/base/error.h"

namespace cairn::net {

nsq::ProtocolError CommandFailed(std::string_view client, std::string_view verb,
                                 const Error& error);

enum class HttpOperation { kPublish, kManage };

struct HttpFailure {
  boost::beast::http::status status;
  std::string_view message;  // the JSON body's "message"
};
// `what` names the request for the log ("/topic/create?topic=t").
HttpFailure HttpFailed(HttpOperation operation, std::string_view what, const Error& error);

}  // namespace cairn::net
