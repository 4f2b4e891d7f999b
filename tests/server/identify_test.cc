// IDENTIFY's body as cairnd's sessions read it: defaults, negotiation, and nsqd's error texts.
#include "src/server/identify.h"

#include <chrono>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace cairn::nsq {
namespace {

TEST(Identify, DefaultsAndNegotiation) {
  SessionOptions options;
  BrokerOptions broker;
  auto s = net::IdentifySettings::Defaults(options);
  auto r = net::ApplyIdentify(R"({"feature_negotiation":true,"msg_timeout":5000,)"
                              R"("heartbeat_interval":1000,"sample_rate":10,)"
                              R"("client_id":"c1","user_agent":"ua"})",
                              options, broker, &s);
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(*r);
  EXPECT_EQ(s.msg_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(s.heartbeat_interval, std::chrono::milliseconds(1000));
  EXPECT_EQ(s.client_id, "c1");
  EXPECT_EQ(net::NegotiatedJson(s, options, broker),
            R"({"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,)"
            R"("msg_timeout":5000,"tls_v1":false,"deflate":false,"deflate_level":6,)"
            R"("max_deflate_level":6,"snappy":false,"sample_rate":10,"auth_required":false,)"
            R"("output_buffer_size":16384,"output_buffer_timeout":250,"topology_region":"",)"
            R"("topology_zone":""})");
  // TLS and compression are asked for but not supported: negotiated off, not an error.
  auto t = net::ApplyIdentify(R"({"feature_negotiation":true,"tls_v1":true,"snappy":true,)"
                              R"("deflate":true})",
                              options, broker, &s);
  ASSERT_TRUE(t);
  EXPECT_NE(net::NegotiatedJson(s, options, broker).find(R"("tls_v1":false)"), std::string::npos);
  // Without feature negotiation the answer is a plain OK; null and {} are all defaults.
  auto plain = net::IdentifySettings::Defaults(options);
  EXPECT_EQ(net::ApplyIdentify("{}", options, broker, &plain), false);
  EXPECT_EQ(net::ApplyIdentify("null", options, broker, &plain), false);
  // Go matches keys case-insensitively.
  EXPECT_TRUE(net::ApplyIdentify(R"({"Heartbeat_Interval":2000})", options, broker, &plain));
  EXPECT_EQ(plain.heartbeat_interval, std::chrono::milliseconds(2000));
  EXPECT_TRUE(net::ApplyIdentify(R"({"heartbeat_interval":-1})", options, broker, &plain));
  EXPECT_EQ(plain.heartbeat_interval.count(), 0);
}

TEST(Identify, InvalidValuesGetNsqdsTexts) {
  SessionOptions options;
  BrokerOptions broker;
  auto err = [&](std::string_view json) {
    auto s = net::IdentifySettings::Defaults(options);
    auto r = net::ApplyIdentify(json, options, broker, &s);
    return r ? std::string("(accepted)") : r.error().message;
  };
  EXPECT_EQ(err(R"({"heartbeat_interval":999})"), "heartbeat interval (999) is invalid");
  EXPECT_EQ(err(R"({"heartbeat_interval":60001})"), "heartbeat interval (60001) is invalid");
  EXPECT_EQ(err(R"({"output_buffer_timeout":10})"), "output buffer timeout (10) is invalid");
  EXPECT_EQ(err(R"({"output_buffer_size":63})"), "output buffer size (63) is invalid");
  EXPECT_EQ(err(R"({"sample_rate":100})"), "sample rate (100) is invalid");
  EXPECT_EQ(err(R"({"msg_timeout":999})"), "msg timeout (999) is invalid");
  EXPECT_EQ(err(R"({"msg_timeout":900001})"), "msg timeout (900001) is invalid");
  EXPECT_EQ(err(R"({"heartbeat_interval":"1000"})"), "failed to decode JSON body");
  EXPECT_EQ(err(R"({"heartbeat_interval":1000.5})"), "failed to decode JSON body");
  EXPECT_EQ(err(R"({"feature_negotiation":1})"), "failed to decode JSON body");
  EXPECT_EQ(err("[]"), "failed to decode JSON body");
  EXPECT_EQ(err("{"), "failed to decode JSON body");
  EXPECT_EQ(err(R"({"sample_rate":4294967296})"), "failed to decode JSON body");
  EXPECT_EQ(err(R"({"unknown":[1,2,3]})"), "(accepted)");
}

}  // namespace
}  // namespace cairn::nsq
