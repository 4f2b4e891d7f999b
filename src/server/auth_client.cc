// QueryAuthServers (auth.h): the HTTP side of AUTH, apart from the answer's parser (auth.cc),
// which the fuzz build compiles alone.
#include <memory>
#include <random>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/url/url.hpp>

#include "net/http_client.h"
#include "src/base/address.h"
#include "src/server/auth.h"

namespace cairn {
namespace {

namespace asio = boost::asio;
using boost::beast::http::verb;

constexpr auto kAuthTimeout = std::chrono::seconds(5);

// The form nsqd sends, keys in the order Go's url.Values encodes them.
std::string EncodeQuery(const AuthQuery& q) {
  boost::urls::url u;
  u.params().append({"common_name", q.common_name});
  u.params().append({"remote_ip", q.remote_ip});
  u.params().append({"secret", q.secret});
  u.params().append({"tls", q.tls ? "true" : "false"});
  return std::string(u.encoded_query());
}

// One AUTH: the servers asked one after another until one answers well.
class AuthRequest : public std::enable_shared_from_this<AuthRequest> {
 public:
  AuthRequest(asio::any_io_executor ex, std::vector<std::string> addresses, bool post,
              std::shared_ptr<net::TlsContext> tls, std::string query,
              std::function<void(Result<AuthState>)> done)
      : ex_(ex),
        addresses_(std::move(addresses)),
        post_(post),
        tls_(std::move(tls)),
        query_(std::move(query)),
        done_(std::move(done)),
        start_(std::random_device{}()) {}

  void Next() {
    if (tried_ == addresses_.size()) {
      return done_(Fail(Errc::kUnavailable, errors_.empty() ? "no auth server" : errors_));
    }
    const std::string& address = addresses_[(start_ + tried_++) % addresses_.size()];
    std::string host, path = "/auth";
    uint16_t port = 0;
    std::shared_ptr<net::TlsContext> tls;
    if (address.find("://") != std::string::npos) {
      auto url = net::ParseHttpUrl(address);
      if (!url) return Failed(address, "not an http:// or https:// URL");
      host = url->host;
      port = url->port;
      path = url->base_path.empty() ? "/" : url->base_path;
      if (url->https) {
        if (!tls_) return Failed(address, "no TLS configuration for https://");
        tls = tls_;
      }
    } else {
      auto split = SplitHostPort(address);
      if (!split) return Failed(address, split.error().message);
      host = split->host;
      port = split->port;
    }
    client_ = std::make_unique<net::HttpClient>(ex_, host, port, kAuthTimeout, std::move(tls));
    client_->Request(post_ ? verb::post : verb::get, post_ ? path : path + "?" + query_,
                     post_ ? query_ : "", post_ ? "application/x-www-form-urlencoded" : "",
                     [self = shared_from_this(), address](net::HttpResult r) {
                       // Not in the client's own callback: it is destroyed next.
                       asio::post(self->ex_, [self, address, r = std::move(r)] {
                         self->client_.reset();
                         self->OnAnswer(address, r);
                       });
                     });
  }

 private:
  void OnAnswer(const std::string& address, const net::HttpResult& r) {
    if (r.status != 200) return Failed(address, r.Describe());
    auto state = ParseAuthAnswer(r.body, std::chrono::steady_clock::now());
    if (!state) return Failed(address, state.error().message);
    done_(std::move(*state));
  }

  void Failed(const std::string& address, const std::string& why) {
    errors_ +=
        fmt::format("{}failed to auth against {} - {}", errors_.empty() ? "" : "; ", address, why);
    Next();
  }

  asio::any_io_executor ex_;
  std::vector<std::string> addresses_;
  bool post_;
  std::shared_ptr<net::TlsContext> tls_;
  std::string query_;
  std::function<void(Result<AuthState>)> done_;
  size_t start_, tried_ = 0;
  std::string errors_;
  std::unique_ptr<net::HttpClient> client_;
};

}  // namespace

void QueryAuthServers(asio::any_io_executor ex, const std::vector<std::string>& addresses,
                      const std::string& method, std::shared_ptr<net::TlsContext> tls,
                      const AuthQuery& query, std::function<void(Result<AuthState>)> done) {
  std::make_shared<AuthRequest>(ex, addresses, method == "post", std::move(tls), EncodeQuery(query),
                                std::move(done))
      ->Next();
}

}  // namespace cairn
