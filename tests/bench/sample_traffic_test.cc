// The sample-traffic generator (bench/sample_traffic.h) and cairn-sample: the same seed gives the
// same bytes (pinned by a digest, so a change to what the benchmarks and tests publish is seen),
// every metrics line is one the project's line-protocol parser takes, in the shape the Deis
// output writes; every log record is JSON that cairn-logger files as the Deis logger would
// (controller lines under their app, the rest under their label); the shares of apps, status
// codes and latencies are skewed as a real cluster's are.
#include "bench/sample_traffic.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "consumers/common/line_protocol.h"
#include "consumers/logger/log_record.h"

namespace cairn::sample {
namespace {

using consumers::FiledRecord;
using Json = nlohmann::json;

uint64_t Fnv1a(const std::vector<std::string>& lines) {
  uint64_t h = 0xcbf29ce484222325;
  for (const auto& l : lines) {
    for (const char c : l + "\n") {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3;
    }
  }
  return h;
}

// What `cairn-sample <args>` prints, and its exit status.
std::pair<std::string, int> RunCairnSample(const std::string& args) {
  const std::string command = std::string(CAIRN_BIN_DIR "/cairn-sample ") + args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {"", -1};
  std::string out;
  char buf[65536];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(SampleTraffic, TheSameSeedGivesTheSameBytesAndAnotherSeedOthers) {
  EXPECT_EQ(Logs(3000, 7), Logs(3000, 7));
  EXPECT_EQ(Metrics(3000, 7), Metrics(3000, 7));
  // More records extend the fewer: the first n do not depend on how many follow.
  const auto more = Logs(3000, 7);
  EXPECT_EQ(Logs(1000, 7), std::vector<std::string>(more.begin(), more.begin() + 1000));
  // Another seed: other records, from the first on.
  const auto logs8 = Logs(3000, 8);
  const auto metrics8 = Metrics(3000, 8);
  EXPECT_NE(Logs(1, 7), Logs(1, 8));
  EXPECT_NE(Metrics(1, 7), Metrics(1, 8));
  size_t same = 0;
  for (size_t i = 0; i < more.size(); ++i) same += more[i] == logs8[i];
  EXPECT_EQ(same, 0u);
  EXPECT_EQ(Logs(10), Logs(10, kDefaultSeed));
}

// Every machine, compiler and standard library gives these bytes (nothing in the generator is
// left to them; GCC 12 and Clang 14 were compared). When the generator changes on purpose, these
// change, and so do the figures quoted from it (deploy/README.md's BM_StoredRatio ratios and
// record size, store_test's disk budgets): measure those again.
TEST(SampleTraffic, TheDefaultSeedsRecordsArePinned) {
  EXPECT_EQ(Fnv1a(Logs(2000)), 14046535960418329215u);
  EXPECT_EQ(Fnv1a(Metrics(3000)), 2181434386502750684u);
  EXPECT_EQ(Fnv1a(Logs(100, 12345)), 7184662151249050607u);
}

TEST(SampleTraffic, RngDrawsStayInTheirRanges) {
  Rng rng(3);
  std::map<int64_t, int> seen;
  for (int i = 0; i < 60'000; ++i) {
    const int64_t v = rng.Between(-2, 3);
    ASSERT_GE(v, -2);
    ASSERT_LE(v, 3);
    ++seen[v];
  }
  EXPECT_EQ(seen.size(), 6u);
  for (const auto& [v, n] : seen) EXPECT_NEAR(n, 10'000, 600) << v;  // ~6 sigma
  std::vector<uint64_t> f;
  for (int i = 0; i < 100'000; ++i) f.push_back(rng.LogNormalPermille());
  std::sort(f.begin(), f.end());
  EXPECT_GE(f.front(), 52u);
  EXPECT_LE(f.back(), 19'326u);
  EXPECT_NEAR(static_cast<double>(f[50'000]), 1000, 40);   // the median
  EXPECT_NEAR(static_cast<double>(f[99'000]), 8113, 400);  // exp(0.9 * 2.326)
}

TEST(SampleTraffic, EveryMetricsLineParsesAsTheDeisOutputWritesIt) {
  const std::vector<std::string> lines = Metrics(30'000);
  const std::vector<std::string> kMeasurements = {
      "deis_router_request_time_ms", "deis_router_response_time_ms", "deis_router_bytes_sent"};
  std::map<std::string, int> statuses;
  std::vector<double> request_ms;
  int64_t previous = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    auto parsed = consumers::ParseLine(line);
    ASSERT_TRUE(parsed.has_value()) << line << ": " << parsed.error().message;
    const consumers::Point& p = *parsed;
    // A request is three points in a row, of one set of tags and one time.
    ASSERT_EQ(p.measurement, kMeasurements[i % 3]) << line;
    ASSERT_EQ(p.tags.size(), 3u) << line;
    EXPECT_EQ(p.tags[0].first, "app");
    EXPECT_EQ(p.tags[1].first, "status_code");
    EXPECT_EQ(p.tags[2].first, "host");
    EXPECT_EQ(p.tags[2].second, p.tags[0].second + ".example.com") << line;
    ASSERT_EQ(p.fields.size(), 1u) << line;
    EXPECT_EQ(p.fields[0].first, "value");
    // tests/consumers/harness.py's expected_totals() reads `value=` between spaces.
    EXPECT_EQ(line.find(" value="), line.find(' ')) << line;
    const consumers::FieldValue& v = p.fields[0].second;
    ASSERT_TRUE(p.timestamp.has_value()) << line;
    if (i % 3 == 0) {
      EXPECT_GT(*p.timestamp, previous) << line;  // each request after the one before
      previous = *p.timestamp;
      ++statuses[p.tags[1].second];
      ASSERT_EQ(v.type, consumers::FieldValue::Type::kFloat) << line;
      EXPECT_GT(v.f, 0) << line;
      request_ms.push_back(v.f);
    } else {
      const consumers::Point first = *consumers::ParseLine(lines[i - i % 3]);
      EXPECT_EQ(p.tags, first.tags) << line;
      EXPECT_EQ(p.timestamp, first.timestamp) << line;
      if (i % 3 == 1) {
        ASSERT_EQ(v.type, consumers::FieldValue::Type::kFloat) << line;
        EXPECT_GT(v.f, 0) << line;
        EXPECT_LE(v.f, first.fields[0].second.f) << line;  // upstream within the request
      } else {
        ASSERT_EQ(v.type, consumers::FieldValue::Type::kInteger) << line;  // `i`, as Deis writes
        EXPECT_GE(v.i, 180) << line;                                       // headers at least
      }
    }
    EXPECT_EQ(consumers::ParseLine(consumers::FormatLine(p)), p) << line;
  }
  // Mostly 2xx and 304; some of every other kind.
  int ok = 0, server_errors = 0;
  for (const auto& [status, n] : statuses) {
    if (status[0] == '2' || status == "304") ok += n;
    if (status[0] == '5') server_errors += n;
  }
  const int requests = 10'000;
  EXPECT_GT(ok, requests * 85 / 100);
  EXPECT_GT(server_errors, 0);
  EXPECT_LT(server_errors, requests * 3 / 100);
  EXPECT_GE(statuses.size(), 10u);
  // Log-normal-ish: a median of milliseconds and a long tail.
  std::sort(request_ms.begin(), request_ms.end());
  const double median = request_ms[request_ms.size() / 2];
  const double p99 = request_ms[request_ms.size() * 99 / 100];
  EXPECT_GT(median, 3);
  EXPECT_LT(median, 40);
  EXPECT_GT(p99, 10 * median);
}

// Deis' controller regex, as README.md gives it, in ECMAScript (none of the generated lines
// holds a character where its classes and RE2's differ).
const std::regex& ControllerRegex() {
  static const std::regex re(R"(^(INFO|WARN|DEBUG|ERROR)\s+(\[(\S+)\])+:(.*))");
  return re;
}

TEST(SampleTraffic, EveryLogRecordIsJsonTheLoggerFilesByItsLabelsOrAsAControllerLine) {
  const std::vector<std::string> records = Logs(20'000);
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)");
  std::map<std::string, int> controller_apps;
  int controller_other = 0, stderr_records = 0;
  std::string previous_time;
  for (const std::string& body : records) {
    ASSERT_EQ(body.find('\n'), std::string::npos) << body;  // one record, one line
    const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << body;
    ASSERT_TRUE(j["log"].is_string()) << body;
    const std::string log = j["log"];
    ASSERT_TRUE(log.ends_with("\n")) << body;
    const std::string text = log.substr(0, log.size() - 1);
    EXPECT_EQ(text.find('\n'), std::string::npos) << body;
    EXPECT_FALSE(text.empty() || text.ends_with("\r")) << body;
    ASSERT_TRUE(j["stream"] == "stdout" || j["stream"] == "stderr") << body;
    stderr_records += j["stream"] == "stderr";
    const std::string time = j["time"];
    EXPECT_TRUE(std::regex_match(time, rfc3339)) << time;
    EXPECT_GT(time, previous_time);
    previous_time = time;
    EXPECT_EQ(j["docker"]["container_id"].get<std::string>().size(), 64u) << body;
    const Json& k8s = j["kubernetes"];
    for (const char* key : {"namespace_name", "pod_name", "container_name", "host"}) {
      ASSERT_TRUE(k8s[key].is_string() && !k8s[key].get<std::string>().empty()) << key << body;
    }
    const std::string pod = k8s["pod_name"];
    const std::string container = k8s["container_name"];
    const std::string app = k8s["labels"]["app"];
    ASSERT_FALSE(app.empty()) << body;
    EXPECT_EQ(k8s["labels"]["heritage"], "deis") << body;

    const FiledRecord r = consumers::FileRecord(body);
    std::smatch m;
    if (container == "deis-controller" && std::regex_match(text, m, ControllerRegex())) {
      ASSERT_EQ(r.kind, FiledRecord::Kind::kController) << body;
      EXPECT_EQ(r.app, m[3].str()) << body;
      EXPECT_NE(r.app, app) << body;  // filed under the app it is about
      const std::string said = m[4].str();
      const size_t first = said.find_first_not_of(' ');
      EXPECT_EQ(r.line, pod + " -- " + m[1].str() + " " + said.substr(first)) << body;
      ++controller_apps[r.app];
    } else {
      ASSERT_EQ(r.kind, FiledRecord::Kind::kApp) << body;
      EXPECT_EQ(r.app, app) << body;
      EXPECT_EQ(r.line, pod + " -- " + text) << body;
      controller_other += container == "deis-controller";
    }
  }
  // Some of each kind: controller lines about several apps, its other lines, errors on stderr.
  EXPECT_GT(controller_apps.size(), 5u);
  int controller_lines = 0;
  for (const auto& [app, n] : controller_apps) controller_lines += n;
  EXPECT_GT(controller_lines, 100);
  EXPECT_GT(controller_other, 10);
  EXPECT_GT(stderr_records, 20'000 / 50);
  EXPECT_LT(stderr_records, 20'000 / 4);
}

TEST(SampleTraffic, AFewAppsDominate) {
  std::map<std::string, int> logs_by_app;
  int app_records = 0;
  for (const std::string& body : Logs(20'000)) {
    const Json j = Json::parse(body);
    const std::string app = j["kubernetes"]["labels"]["app"];
    if (app.starts_with("deis-")) continue;
    ++logs_by_app[app];
    ++app_records;
  }
  std::map<std::string, int> requests_by_app;
  const auto lines = Metrics(30'000);
  for (size_t i = 0; i < lines.size(); i += 3) {
    ++requests_by_app[consumers::ParseLine(lines[i])->tags[0].second];
  }
  for (const auto* by_app : {&logs_by_app, &requests_by_app}) {
    std::vector<int> shares;
    int total = 0;
    for (const auto& [app, n] : *by_app) {
      shares.push_back(n);
      total += n;
    }
    std::sort(shares.rbegin(), shares.rend());
    EXPECT_EQ(shares.size(), 20u);
    EXPECT_GT(shares[0], total / 4);                          // the first, over a quarter
    EXPECT_GT(shares[0] + shares[1] + shares[2], total / 2);  // the first three, over half
    EXPECT_LT(shares.back(), total / 50);                     // the last, under 2%
  }
  // Both streams agree on which app leads.
  EXPECT_EQ(std::max_element(logs_by_app.begin(), logs_by_app.end(),
                             [](auto& a, auto& b) { return a.second < b.second; })
                ->first,
            std::max_element(requests_by_app.begin(), requests_by_app.end(), [](auto& a, auto& b) {
              return a.second < b.second;
            })->first);
}

TEST(SampleTraffic, LogLinesVaryInLength) {
  std::vector<size_t> lengths;
  for (const std::string& body : Logs(20'000)) {
    lengths.push_back(Json::parse(body)["log"].get<std::string>().size());
  }
  std::sort(lengths.begin(), lengths.end());
  EXPECT_LT(lengths[lengths.size() / 10], 100u);        // a tenth under 100 B
  EXPECT_GT(lengths[lengths.size() * 99 / 100], 600u);  // a hundredth over 600 B
  EXPECT_GT(std::set<size_t>(lengths.begin(), lengths.end()).size(), 500u);
}

TEST(SampleTraffic, CairnSamplePrintsTheLibrarysRecords) {
  auto [logs, status] = RunCairnSample("logs 500 --seed 9");
  EXPECT_EQ(status, 0);
  EXPECT_EQ(logs, Joined(Logs(500, 9)));
  auto [metrics, status2] = RunCairnSample("metrics 1000");
  EXPECT_EQ(status2, 0);
  EXPECT_EQ(metrics, Joined(Metrics(1000, kDefaultSeed)));
  EXPECT_EQ(RunCairnSample("metrics 0"), std::make_pair(std::string(), 0));
  // Wrong use: nothing on stdout, a non-zero exit.
  for (const char* args : {"traces 10", "logs", "logs ten", "logs 10 --seed x"}) {
    auto [out, code] = RunCairnSample(args);
    EXPECT_EQ(out, "") << args;
    EXPECT_NE(code, 0) << args;
  }
}

}  // namespace
}  // namespace cairn::sample
