#include "net/tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>

namespace cairn::net {
namespace ssl = boost::asio::ssl;

namespace {

tl::unexpected<Error> Invalid(std::string what) {
  return Fail(Errc::kInvalidArgument, std::move(what));
}

Result<int> ProtocolVersion(std::string_view name) {
  if (name == "ssl3.0") return SSL3_VERSION;
  if (name == "tls1.0" || name.empty()) return TLS1_VERSION;
  if (name == "tls1.1") return TLS1_1_VERSION;
  if (name == "tls1.2") return TLS1_2_VERSION;
  if (name == "tls1.3") return TLS1_3_VERSION;
  return Invalid(fmt::format("unknown tls version {:?} (ssl3.0, tls1.0, tls1.1, tls1.2 or tls1.3)",
                             std::string(name)));
}

// The CAs to verify the peer against: the file, or the system's when none is named.
Status LoadCas(TlsContext& ctx, const std::string& root_ca) {
  boost::system::error_code ec;
  if (root_ca.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(root_ca, ec);
  }
  if (ec) return Invalid(fmt::format("cannot load CA file {:?}: {}", root_ca, ec.message()));
  return {};
}

Status LoadKeyPair(TlsContext& ctx, const std::string& cert, const std::string& key) {
  boost::system::error_code ec;
  ctx.use_certificate_chain_file(cert, ec);
  if (ec) return Invalid(fmt::format("cannot load certificate {:?}: {}", cert, ec.message()));
  ctx.use_private_key_file(key, ssl::context::pem, ec);
  if (ec) return Invalid(fmt::format("cannot load key {:?}: {}", key, ec.message()));
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    return Invalid(fmt::format("key {:?} does not match certificate {:?}", key, cert));
  }
  return {};
}

}  // namespace

Result<ClientAuthPolicy> ParseClientAuthPolicy(std::string_view text) {
  if (text.empty()) return ClientAuthPolicy::kNone;
  if (text == "require") return ClientAuthPolicy::kRequire;
  if (text == "require-verify") return ClientAuthPolicy::kRequireVerify;
  return Invalid(fmt::format("unknown client auth policy {:?} (require or require-verify)",
                             std::string(text)));
}

Result<std::shared_ptr<TlsContext>> MakeServerTls(const TlsServerFiles& files) {
  auto version = ProtocolVersion(files.min_version);
  if (!version) return tl::unexpected(version.error());
  auto ctx = std::make_shared<TlsContext>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), *version);
  if (auto st = LoadKeyPair(*ctx, files.cert, files.key); !st) return tl::unexpected(st.error());
  switch (files.client_auth) {
    case ClientAuthPolicy::kNone:
      ctx->set_verify_mode(ssl::verify_none);
      break;
    case ClientAuthPolicy::kRequire:
      // Any certificate will do: it only names the client (its common name goes to the auth
      // server).
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
      break;
    case ClientAuthPolicy::kRequireVerify:
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      if (auto st = LoadCas(*ctx, files.root_ca); !st) return tl::unexpected(st.error());
      break;
  }
  return ctx;
}

Result<std::shared_ptr<TlsContext>> MakeClientTls(const TlsClientFiles& files) {
  auto ctx = std::make_shared<TlsContext>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  if (files.verify) {
    ctx->set_verify_mode(ssl::verify_peer);
    if (auto st = LoadCas(*ctx, files.root_ca); !st) return tl::unexpected(st.error());
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  if (!files.cert.empty() || !files.key.empty()) {
    if (auto st = LoadKeyPair(*ctx, files.cert, files.key); !st) return tl::unexpected(st.error());
  }
  return ctx;
}

void ExpectServerName(SSL* ssl, const std::string& name) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(name, ec);
  if (!ec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    return;
  }
  SSL_set_tlsext_host_name(ssl, name.c_str());
  SSL_set1_host(ssl, name.c_str());
}

std::string PeerCommonName(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::string name;
  if (X509_NAME* subject = X509_get_subject_name(cert)) {
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at >= 0) {
      ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
      unsigned char* utf8 = nullptr;
      const int n = ASN1_STRING_to_UTF8(&utf8, data);
      if (n > 0) name.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  X509_free(cert);
  return name;
}

}  // namespace cairn::net
