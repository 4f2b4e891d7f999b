#include "bench/sample_traffic.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <span>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace cairn::sample {
namespace {

// ---- Time as the logs write it ----

// 2025-11-24T16:00:00Z: a fixed start, so the records do not depend on when they are made.
constexpr int64_t kStartNs = 1'764'000'000'000'000'000;

struct Civil {
  int year;
  unsigned month, day, hour, minute, second;
  int64_t ns;  // within the second
  int64_t epoch_seconds;
};

Civil ToCivil(int64_t ns) {
  using namespace std::chrono;
  const int64_t secs = ns / 1'000'000'000;
  const int64_t days = secs / 86'400;
  const int64_t in_day = secs % 86'400;
  const year_month_day ymd{sys_days{std::chrono::days{days}}};
  return {static_cast<int>(ymd.year()),
          static_cast<unsigned>(ymd.month()),
          static_cast<unsigned>(ymd.day()),
          static_cast<unsigned>(in_day / 3600),
          static_cast<unsigned>(in_day / 60 % 60),
          static_cast<unsigned>(in_day % 60),
          ns % 1'000'000'000,
          secs};
}

constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Docker's json-file `time`: RFC 3339 with nanoseconds, UTC.
std::string Rfc3339Nano(int64_t ns) {
  const Civil c = ToCivil(ns);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", c.year, c.month, c.day, c.hour,
                     c.minute, c.second, c.ns);
}

// nginx's $time_iso8601, as the deis-router writes it.
std::string Iso8601Seconds(int64_t ns) {
  const Civil c = ToCivil(ns);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00", c.year, c.month, c.day, c.hour,
                     c.minute, c.second);
}

// The common log format's time (morgan, gunicorn): 24/Nov/2025:16:00:00 +0000.
std::string CommonLogTime(int64_t ns) {
  const Civil c = ToCivil(ns);
  return fmt::format("{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000", c.day, kMonths[c.month - 1], c.year,
                     c.hour, c.minute, c.second);
}

// Appends `us` microseconds as milliseconds with three decimals ("12.345"), or seconds
// (`unit` 1,000,000: "0.012"), without floating point.
void AppendDecimal(std::string* out, uint64_t us, uint64_t unit) {
  if (unit == 1000) {
    fmt::format_to(std::back_inserter(*out), "{}.{:03}", us / 1000, us % 1000);
  } else {
    const uint64_t ms = us / 1000;  // nginx's resolution
    fmt::format_to(std::back_inserter(*out), "{}.{:03}", ms / 1000, ms % 1000);
  }
}

// ---- JSON text, written by hand so that the bytes are ours to fix ----

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\r':
        *out += "\\r";
        break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(*out), "\\u{:04x}", c);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// ---- Draws ----

template <class T>
const T& Pick(Rng& rng, std::span<const T> items) {
  return items[rng.Below(items.size())];
}

// An index into `weights`, each drawn in proportion to its weight.
size_t PickWeighted(Rng& rng, std::span<const uint32_t> weights) {
  uint64_t total = 0;
  for (const uint32_t w : weights) total += w;
  uint64_t r = rng.Below(total);
  for (size_t i = 0; i < weights.size(); ++i) {
    if (r < weights[i]) return i;
    r -= weights[i];
  }
  return weights.size() - 1;  // not reached
}

std::string Hex(Rng& rng, int digits) {
  std::string out;
  out.reserve(static_cast<size_t>(digits));
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < digits; ++i) out.push_back(kDigits[rng.Below(16)]);
  return out;
}

// The characters Kubernetes uses in generated name suffixes (no vowels, no look-alikes).
std::string K8sSuffix(Rng& rng, int n) {
  static constexpr std::string_view kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(kAlphabet[rng.Below(kAlphabet.size())]);
  return out;
}

std::string Uuid(Rng& rng) {
  std::string out = Hex(rng, 8);
  out += '-';
  out += Hex(rng, 4);
  out += "-4";
  out += Hex(rng, 3);
  out += '-';
  out += Hex(rng, 4);
  out += '-';
  out += Hex(rng, 12);
  return out;
}

// The next record's time: 10 us to 2 ms on, about 1,000 records a second.
void Tick(Rng& rng, int64_t* ns) { *ns += rng.Between(10'000, 2'000'000); }

// ---- The cluster ----

enum class Stack { kRails, kNode, kGo, kPython };

struct App {
  std::string_view name;
  uint32_t weight;       // share of the traffic: Zipf, 1000 / rank^1.1
  Stack stack;           // decides how its log lines look
  uint32_t latency_pct;  // scales every latency median
  int web, workers;      // replicas of each process type
};

constexpr App kApps[] = {
    {"checkout", 1000, Stack::kRails, 120, 4, 2},
    {"catalog", 467, Stack::kGo, 60, 4, 0},
    {"search", 299, Stack::kGo, 150, 3, 1},
    {"accounts", 218, Stack::kPython, 100, 2, 1},
    {"gateway", 170, Stack::kNode, 50, 3, 0},
    {"images", 139, Stack::kGo, 80, 2, 1},
    {"inventory", 118, Stack::kPython, 110, 2, 1},
    {"pricing", 101, Stack::kNode, 70, 2, 0},
    {"mailer", 89, Stack::kPython, 100, 1, 2},
    {"billing", 79, Stack::kRails, 130, 2, 1},
    {"reviews", 71, Stack::kNode, 90, 2, 0},
    {"shipping", 65, Stack::kPython, 100, 1, 1},
    {"auth", 59, Stack::kGo, 40, 2, 0},
    {"profile", 55, Stack::kRails, 100, 1, 0},
    {"feeds", 51, Stack::kNode, 100, 1, 1},
    {"chat", 47, Stack::kNode, 60, 2, 0},
    {"export", 44, Stack::kPython, 300, 1, 2},
    {"scheduler", 41, Stack::kGo, 100, 1, 1},
    {"reports", 39, Stack::kPython, 400, 1, 1},
    {"audit", 37, Stack::kGo, 100, 1, 0},
};
constexpr size_t kAppCount = std::size(kApps);

constexpr std::array<uint32_t, kAppCount> AppWeights() {
  std::array<uint32_t, kAppCount> out{};
  for (size_t i = 0; i < kAppCount; ++i) out[i] = kApps[i].weight;
  return out;
}
constexpr std::array<uint32_t, kAppCount> kAppWeights = AppWeights();

const App& PickApp(Rng& rng) { return kApps[PickWeighted(rng, kAppWeights)]; }

// ---- A router request, as the deis-router logs it and the Deis output turns it into points ----

struct RequestKind {
  uint32_t weight;
  uint64_t median_us;                       // latency, before the app's factor
  uint64_t median_bytes;                    // body
  std::array<uint32_t, 12> status_weights;  // in the order of kStatuses
};

constexpr int kStatuses[12] = {200, 201, 204, 301, 302, 304, 400, 401, 404, 422, 500, 502};

enum Kind { kHealthz, kStatic, kPage, kApiRead, kApiWrite, kReport };
// In the order of Kind. Status weights, in the order of kStatuses:
//   200, 201, 204, 301, 302, 304, 400, 401, 404, 422, 500, 502
constexpr RequestKind kKinds[] = {
    {12, 800, 2, {995, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}},                // healthz
    {18, 2'000, 35'000, {700, 0, 0, 0, 0, 280, 0, 0, 20, 0, 0, 0}},      // static
    {15, 45'000, 14'000, {880, 0, 0, 30, 30, 0, 0, 0, 40, 0, 15, 5}},    // page
    {40, 12'000, 1'800, {860, 0, 0, 0, 0, 50, 10, 25, 40, 0, 10, 5}},    // API read
    {13, 35'000, 600, {350, 300, 150, 0, 0, 0, 80, 40, 20, 40, 15, 5}},  // API write
    {2, 600'000, 250'000, {950, 0, 0, 0, 0, 0, 0, 0, 30, 0, 10, 10}},    // report
};
constexpr std::array<uint32_t, std::size(kKinds)> KindWeights() {
  std::array<uint32_t, std::size(kKinds)> out{};
  for (size_t i = 0; i < std::size(kKinds); ++i) out[i] = kKinds[i].weight;
  return out;
}
constexpr std::array<uint32_t, std::size(kKinds)> kKindWeights = KindWeights();

constexpr std::string_view kAgents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "python-requests/2.32.3",
    "curl/8.5.0",
};
constexpr uint32_t kAgentWeights[] = {30, 12, 18, 15, 12, 8, 5};

constexpr std::string_view kWords[] = {"shoes",  "red dress", "lamp", "usb-c cable", "tent",
                                       "coffee", "gift card", "desk", "headphones",  "socks"};

struct Request {
  const App* app = nullptr;
  Kind kind = kApiRead;
  std::string_view method;
  std::string path;
  int status = 200;
  uint64_t request_us = 0;   // nginx's $request_time
  uint64_t upstream_us = 0;  // $upstream_response_time
  uint64_t bytes = 0;        // $bytes_sent, headers included
  std::string_view agent;
  std::string client;  // $remote_addr
};

std::string_view Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 422:
      return "Unprocessable Entity";
    case 500:
      return "Internal Server Error";
    default:
      return "Bad Gateway";
  }
}

std::string QueryEscaped(std::string_view word) {
  std::string out;
  for (const char c : word) out += c == ' ' ? std::string("+") : std::string(1, c);
  return out;
}

Request MakeRequest(Rng& rng, const App& app) {
  Request r;
  r.app = &app;
  r.kind = static_cast<Kind>(PickWeighted(rng, kKindWeights));
  const RequestKind& kind = kKinds[r.kind];
  r.method = "GET";
  const int64_t id = rng.Between(1, 99'999);
  switch (r.kind) {
    case kHealthz:
      r.path = "/healthz";
      break;
    case kStatic: {
      static constexpr std::string_view kAssets[] = {
          "/static/js/app.{}.js", "/static/css/site.{}.css", "/static/js/vendor.{}.js",
          "/favicon.ico", "/static/img/{}.webp"};
      const std::string_view asset = Pick<std::string_view>(rng, kAssets);
      r.path = fmt::format(fmt::runtime(asset), Hex(rng, 8));
      break;
    }
    case kPage: {
      static constexpr std::string_view kPages[] = {"/",        "/cart",        "/login",
                                                    "/account", "/products/{}", "/orders/{}"};
      r.path = fmt::format(fmt::runtime(Pick<std::string_view>(rng, kPages)), id);
      break;
    }
    case kApiRead: {
      switch (rng.Below(4)) {
        case 0:
          r.path = fmt::format("/api/v1/items/{}", id);
          break;
        case 1:
          r.path = fmt::format("/api/v1/items?page={}&per_page=50", rng.Between(1, 40));
          break;
        case 2:
          r.path = fmt::format("/api/v1/users/{}/orders", id);
          break;
        default: {
          const std::string q = QueryEscaped(Pick<std::string_view>(rng, kWords));
          r.path = fmt::format("/api/v2/search?q={}&page={}", q, rng.Between(1, 5));
        }
      }
      break;
    }
    case kApiWrite: {
      switch (rng.Below(4)) {
        case 0:
          r.method = "POST";
          r.path = "/api/v1/orders";
          break;
        case 1:
          r.method = "PUT";
          r.path = fmt::format("/api/v1/items/{}", id);
          break;
        case 2:
          r.method = "DELETE";
          r.path = fmt::format("/api/v1/cart/items/{}", id);
          break;
        default:
          r.method = "POST";
          r.path = "/api/v1/sessions";
      }
      break;
    }
    case kReport:
      r.path = fmt::format("/api/v1/reports/{}.csv", id);
      break;
  }
  r.status = kStatuses[PickWeighted(rng, kind.status_weights)];
  r.agent = r.kind == kHealthz ? "kube-probe/1.30" : kAgents[PickWeighted(rng, kAgentWeights)];
  const int64_t net = rng.Between(0, 3);
  const int64_t subnet = rng.Between(0, 255);
  r.client = fmt::format("10.{}.{}.{}", net, subnet, rng.Between(1, 254));

  uint64_t us = kind.median_us * app.latency_pct / 100 * rng.LogNormalPermille() / 1000;
  if (r.status == 502) us = us / 20;  // the upstream refused or reset at once
  r.request_us = std::max<uint64_t>(us, 150);
  r.upstream_us = r.request_us * static_cast<uint64_t>(rng.Between(82, 99)) / 100;

  const uint64_t headers = static_cast<uint64_t>(rng.Between(180, 420));
  uint64_t body = 0;
  if (r.status == 204 || r.status == 304) {
    body = 0;
  } else if (r.status == 301 || r.status == 302) {
    body = static_cast<uint64_t>(rng.Between(0, 170));
  } else if (r.status >= 400) {
    body = static_cast<uint64_t>(rng.Between(40, 600));
  } else if (r.kind == kHealthz) {
    body = 2;  // "OK"
  } else {
    body = kind.median_bytes * rng.LogNormalPermille() / 1000;
  }
  r.bytes = headers + body;
  return r;
}

// ---- Pods ----

struct Pod {
  const App* app = nullptr;  // null: a Deis component
  bool worker = false;
  std::string name;
  std::string ip;
  int pid = 1;
  // Everything after the record's time: ,"docker":{...},"kubernetes":{...}}
  std::string tail;
};

// What every pod of one Deployment shares: the image and labels of its release, and its
// ReplicaSet's hash in their names.
struct Deployment {
  const App* app = nullptr;  // null: a Deis component
  bool worker = false;
  std::string name;  // <app>-<type>, or the component; also its pods' container
  std::string ns;
  std::string image;
  std::string labels;  // a JSON object
  int64_t replica_set = 0;
};

// An app's release (all its process types run the same build) as Deployments per process type.
std::vector<Deployment> AppDeployments(Rng& rng, const App& app) {
  const int64_t version = rng.Between(2, 60);
  const std::string image = fmt::format("127.0.0.1:5555/{}:git-{}", app.name, Hex(rng, 8));
  std::vector<Deployment> out;
  for (const bool worker : {false, true}) {
    if (worker && app.workers == 0) break;
    Deployment d;
    d.app = &app;
    d.worker = worker;
    const std::string_view type = worker ? "worker" : "web";
    d.name = fmt::format("{}-{}", app.name, type);
    d.ns = std::string(app.name);
    d.image = image;
    d.labels = fmt::format(R"({{"app":"{}","heritage":"deis","type":"{}","version":"v{}"}})",
                           app.name, type, version);
    d.replica_set = rng.Between(1'000'000'000, 4'294'967'295);
    out.push_back(std::move(d));
  }
  return out;
}

Deployment DeisDeployment(Rng& rng, std::string_view component) {
  Deployment d;
  d.name = std::string(component);
  d.ns = "deis";
  d.image = fmt::format("quay.io/deis/{}:v2.{}.0", component.substr(5), rng.Between(10, 22));
  d.labels = fmt::format(R"({{"app":"{}","heritage":"deis"}})", component);
  d.replica_set = rng.Between(1'000'000'000, 4'294'967'295);
  return d;
}

// One pod of `d`, scheduled on node-<node>.
Pod MakePod(Rng& rng, const Deployment& d, int node) {
  Pod p;
  p.app = d.app;
  p.worker = d.worker;
  p.name = fmt::format("{}-{}-{}", d.name, d.replica_set, K8sSuffix(rng, 5));
  p.ip = fmt::format("10.244.{}.{}", node, rng.Between(2, 250));
  p.pid = static_cast<int>(rng.Between(7, 64));
  const std::string container_id = Hex(rng, 64);
  const std::string pod_id = Uuid(rng);
  p.tail =
      fmt::format(R"(,"docker":{{"container_id":"{}"}},"kubernetes":{{"container_name":"{}",)"
                  R"("namespace_name":"{}","pod_name":"{}","container_image":"{}","pod_id":"{}",)"
                  R"("host":"node-{}","labels":{}}}}})",
                  container_id, d.name, d.ns, p.name, d.image, pod_id, node, d.labels);
  return p;
}

// ---- An app's log lines ----

enum class Level { kDebug, kInfo, kWarn, kError, kFatal };

struct Field {
  std::string_view key;
  std::string value;
  bool number = false;  // JSON: written bare; text: never quoted
};

Field Num(std::string_view key, int64_t v) { return {key, std::to_string(v), true}; }
Field Str(std::string_view key, std::string v) { return {key, std::move(v), false}; }

// One line of an app's own logging, in its stack's format: Rails' Logger, Python's logging,
// zap's JSON (Go), pino's JSON (Node).
std::string Render(Stack stack, Level level, int64_t ns, const Pod& pod, std::string_view logger,
                   std::string_view msg, const std::vector<Field>& fields) {
  std::string out;
  auto it = std::back_inserter(out);
  const Civil c = ToCivil(ns);
  auto text_fields = [&] {
    for (const Field& f : fields) {
      if (f.number || f.value.find(' ') == std::string::npos) {
        fmt::format_to(it, " {}={}", f.key, f.value);
      } else {
        fmt::format_to(it, " {}=\"{}\"", f.key, f.value);
      }
    }
  };
  auto json_fields = [&] {
    for (const Field& f : fields) {
      out += ",\"";
      out += f.key;
      out += "\":";
      if (f.number) {
        out += f.value;
      } else {
        AppendJsonString(&out, f.value);
      }
    }
  };
  static constexpr std::string_view kRails[] = {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
  static constexpr std::string_view kPython[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
  static constexpr std::string_view kZap[] = {"debug", "info", "warn", "error", "fatal"};
  static constexpr int kPino[] = {20, 30, 40, 50, 60};
  const auto l = static_cast<size_t>(level);
  switch (stack) {
    case Stack::kRails:
      fmt::format_to(it, "{}, [{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06} #{}] {:>5} -- : {}",
                     kRails[l][0], c.year, c.month, c.day, c.hour, c.minute, c.second, c.ns / 1000,
                     pod.pid, kRails[l], msg);
      text_fields();
      break;
    case Stack::kPython:
      fmt::format_to(it, "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03} {} [{}.{}] {}", c.year, c.month,
                     c.day, c.hour, c.minute, c.second, c.ns / 1'000'000, kPython[l], pod.app->name,
                     logger, msg);
      text_fields();
      break;
    case Stack::kGo:
      fmt::format_to(it, R"({{"level":"{}","ts":{}.{:06},"caller":"{}","msg":)", kZap[l],
                     c.epoch_seconds, c.ns / 1000, logger);
      AppendJsonString(&out, msg);
      json_fields();
      out += '}';
      break;
    case Stack::kNode:
      fmt::format_to(it, R"({{"level":{},"time":{}{:03},"pid":{},"hostname":"{}")", kPino[l],
                     c.epoch_seconds, c.ns / 1'000'000, pod.pid, pod.name);
      json_fields();
      out += ",\"msg\":";
      AppendJsonString(&out, msg);
      out += '}';
      break;
  }
  return out;
}

std::string_view LoggerName(Stack stack, Rng& rng) {
  static constexpr std::string_view kGo[] = {"server/http.go:142", "store/postgres.go:88",
                                             "jobs/worker.go:57", "cache/redis.go:31",
                                             "clients/upstream.go:64"};
  static constexpr std::string_view kPython[] = {"views", "tasks", "db", "cache", "clients"};
  switch (stack) {
    case Stack::kGo:
      return Pick<std::string_view>(rng, kGo);
    case Stack::kPython:
      return Pick<std::string_view>(rng, kPython);
    default:
      return "";
  }
}

constexpr std::string_view kJobs[] = {"send_receipt", "sync_inventory", "resize_image",
                                      "export_csv",   "charge_card",    "reindex_search",
                                      "expire_carts", "deliver_webhook"};
constexpr std::string_view kQueues[] = {"default", "mail", "export", "webhooks", "critical"};

std::string SlowQuery(Rng& rng) {
  static constexpr std::string_view kTables[] = {"items", "orders",           "order_lines",
                                                 "users", "inventory_levels", "prices"};
  const std::string_view table = Pick<std::string_view>(rng, kTables);
  std::string sql = fmt::format(
      "SELECT {0}.id, {0}.created_at, {0}.updated_at, {0}.status, {0}.payload FROM {0} "
      "WHERE {0}.deleted_at IS NULL AND {0}.id IN (",
      table);
  const int64_t n = rng.Between(5, 150);
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0) sql += ", ";
    sql += std::to_string(rng.Between(1, 9'999'999));
  }
  fmt::format_to(std::back_inserter(sql), ") ORDER BY {}.created_at DESC LIMIT {}", table,
                 rng.Between(1, 20) * 50);
  return sql;
}

// A stack trace as the stack prints it: the first line, then the frames, one record each.
std::vector<std::string> Trace(Stack stack, Rng& rng, const App& app, std::string_view upstream) {
  std::vector<std::string> lines;
  const int frames = static_cast<int>(rng.Between(2, 6));
  switch (stack) {
    case Stack::kPython: {
      lines.push_back("Traceback (most recent call last):");
      static constexpr std::string_view kFiles[] = {"views.py", "services.py", "clients.py",
                                                    "tasks.py"};
      static constexpr std::string_view kFuncs[] = {"handle", "place_order", "fetch", "dispatch",
                                                    "run"};
      for (int i = 0; i < frames; ++i) {
        const std::string_view file = Pick<std::string_view>(rng, kFiles);
        const int64_t line = rng.Between(12, 900);
        lines.push_back(fmt::format("  File \"/app/{}/{}\", line {}, in {}", app.name, file, line,
                                    Pick<std::string_view>(rng, kFuncs)));
        lines.push_back(
            fmt::format("    resp = self.session.get(url, timeout={})", rng.Between(2, 30)));
      }
      lines.push_back(fmt::format(
          "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{}', port=80): Read timed "
          "out. (read timeout=30)",
          upstream));
      break;
    }
    case Stack::kRails: {
      static constexpr std::string_view kCtl[] = {"items", "orders", "carts", "sessions"};
      static constexpr std::string_view kModels[] = {"Item", "Order", "Cart", "Session"};
      static constexpr std::string_view kActions[] = {"show", "create", "update", "index"};
      const size_t which = rng.Below(std::size(kCtl));
      const std::string_view ctl = kCtl[which];
      lines.push_back(fmt::format("ActiveRecord::RecordNotFound (Couldn't find {} with 'id'={}):",
                                  kModels[which], rng.Between(1, 99'999)));
      for (int i = 0; i < frames; ++i) {
        const int64_t line = rng.Between(5, 240);
        lines.push_back(fmt::format("app/controllers/{}_controller.rb:{}:in `{}'", ctl, line,
                                    Pick<std::string_view>(rng, kActions)));
      }
      break;
    }
    case Stack::kNode: {
      const int64_t subnet = rng.Between(0, 255);
      lines.push_back(
          fmt::format("Error: connect ECONNREFUSED 10.96.{}.{}:80", subnet, rng.Between(1, 254)));
      lines.push_back("    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1607:16)");
      for (int i = 1; i < frames; ++i) {
        const int64_t line = rng.Between(10, 400);
        lines.push_back(fmt::format("    at async {} (/app/src/{}.js:{}:{})",
                                    i == 1 ? "fetchUpstream" : "handler",
                                    i == 1 ? "clients/" + std::string(upstream) : "routes/items",
                                    line, rng.Between(3, 40)));
      }
      break;
    }
    case Stack::kGo:
      break;  // zap puts the stack in the record's own line
  }
  return lines;
}

enum Event { kRequest, kCache, kPool, kSlowQuery, kUserEvent, kRetry, kJob, kError, kMisc };
constexpr uint32_t kWebEvents[] = {50, 10, 6, 3, 14, 5, 0, 3, 9};
constexpr uint32_t kWorkerEvents[] = {0, 8, 6, 5, 6, 6, 55, 5, 9};

}  // namespace

// ---- Rng ----

Rng::Rng(uint64_t seed) {
  // splitmix64: every seed, 0 included, gives a well-mixed, non-zero state.
  for (auto& s : s_) {
    seed += 0x9e3779b97f4a7c15;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::Next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t Rng::Below(uint64_t n) {
  unsigned __int128 m = static_cast<unsigned __int128>(Next()) * n;
  auto low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(Next()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

int64_t Rng::Between(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
}

uint64_t Rng::LogNormalPermille() {
  // 1000 * exp(0.9 * z) at z = the standard normal's quantile of i/128 (i = 0 and 128 taken at
  // 0.0005 and 0.9995), rounded: python3 -c 'from statistics import NormalDist; import math;
  // print([round(1000*math.exp(0.9*NormalDist().inv_cdf(min(max(i/128,5e-4),1-5e-4))))
  // for i in range(129)])'
  static constexpr uint32_t kQuantiles[129] = {
      52,   114,  144,  167,  187,  205,  221,  237,  251,  266,  279,  292,  305,  318,  331,
      343,  355,  367,  379,  391,  403,  415,  427,  438,  450,  462,  474,  485,  497,  509,
      521,  533,  545,  557,  569,  581,  594,  606,  619,  631,  644,  657,  670,  683,  696,
      710,  723,  737,  751,  765,  779,  793,  808,  823,  837,  853,  868,  884,  899,  916,
      932,  948,  965,  983,  1000, 1018, 1036, 1054, 1073, 1092, 1112, 1132, 1152, 1173, 1194,
      1216, 1238, 1261, 1284, 1308, 1332, 1357, 1383, 1409, 1436, 1464, 1493, 1522, 1553, 1584,
      1616, 1650, 1684, 1720, 1757, 1795, 1835, 1876, 1919, 1964, 2011, 2060, 2112, 2165, 2222,
      2282, 2345, 2411, 2482, 2557, 2637, 2723, 2816, 2916, 3025, 3144, 3275, 3420, 3582, 3766,
      3978, 4225, 4519, 4882, 5347, 5982, 6948, 8809, 19326};
  const uint64_t i = Below(128);
  const uint64_t lo = kQuantiles[i];
  return lo + Below(kQuantiles[i + 1] - lo + 1);
}

// ---- LogRecords ----

struct LogRecords::State {
  explicit State(uint64_t seed) : rng(seed), ns(kStartNs) {
    // Nodes are drawn per pod, so apps spread over the cluster as a scheduler spreads them.
    auto node = [this] { return static_cast<int>(rng.Between(1, 12)); };
    for (const App& app : kApps) {
      std::vector<size_t> mine;  // web pods first, then workers
      for (const Deployment& d : AppDeployments(rng, app)) {
        for (int i = 0; i < (d.worker ? app.workers : app.web); ++i) {
          mine.push_back(pods.size());
          pods.push_back(MakePod(rng, d, node()));
        }
      }
      pods_of_app.push_back(std::move(mine));
    }
    const Deployment router = DeisDeployment(rng, "deis-router");
    for (int i = 0; i < 2; ++i) {
      routers.push_back(pods.size());
      pods.push_back(MakePod(rng, router, node()));
    }
    const Deployment controller_deployment = DeisDeployment(rng, "deis-controller");
    controller = pods.size();
    pods.push_back(MakePod(rng, controller_deployment, node()));
  }

  std::string Next() {
    Tick(rng, &ns);
    size_t pod;
    bool to_stderr = false;
    std::string line;
    if (!continuation.empty()) {
      // The rest of what a pod was writing (a trace, a request's later lines) comes next, as
      // fluentd reads one container's file in order.
      pod = continuation_pod;
      to_stderr = continuation_stderr;
      line = std::move(continuation.front());
      continuation.erase(continuation.begin());
    } else {
      const uint64_t who = rng.Below(1000);
      if (who < 300) {
        pod = routers[rng.Below(routers.size())];
        line = RouterLine(PickApp(rng));
      } else if (who < 325) {
        pod = controller;
        line = ControllerLine(&to_stderr);
      } else {
        const App& app = PickApp(rng);
        const auto& mine = pods_of_app[static_cast<size_t>(&app - kApps)];
        // Web pods take three quarters of an app's lines when it has workers.
        if (app.workers > 0 && rng.Chance(1, 4)) {
          pod = mine[static_cast<size_t>(app.web + rng.Between(0, app.workers - 1))];
        } else {
          pod = mine[static_cast<size_t>(rng.Between(0, app.web - 1))];
        }
        line = AppLine(pods[pod], &to_stderr);
      }
    }
    std::string out;
    out.reserve(line.size() + pods[pod].tail.size() + 96);
    out += R"({"log":)";
    AppendJsonString(&out, line + "\n");
    out += to_stderr ? R"(,"stream":"stderr","time":")" : R"(,"stream":"stdout","time":")";
    out += Rfc3339Nano(ns);
    out += '"';
    out += pods[pod].tail;
    return out;
  }

  // The deis-router's nginx log format (its `upstreaminfo`).
  std::string RouterLine(const App& app) {
    const Request r = MakeRequest(rng, app);
    const auto& mine = pods_of_app[static_cast<size_t>(&app - kApps)];
    const Pod& upstream = pods[mine[static_cast<size_t>(rng.Between(0, app.web - 1))]];
    std::string out = fmt::format(
        "[{}] - {} - {} - - - {} - \"{} {} HTTP/1.1\" - {} - \"{}\" - \"{}\" - "
        "\"~^{}\\.(?<domain>.+)$\" "
        "- {}:5000 - {}.example.com - ",
        Iso8601Seconds(ns), app.name, r.client, r.status, r.method, r.path, r.bytes,
        r.kind == kStatic ? fmt::format("https://{}.example.com/", app.name) : "-", r.agent,
        app.name, upstream.ip, app.name);
    AppendDecimal(&out, r.upstream_us, 1'000'000);
    out += " - ";
    AppendDecimal(&out, r.request_us, 1'000'000);
    return out;
  }

  // Mostly the controller's own record of what happened to an app, which the logger files under
  // that app; some of its gunicorn access lines, which it files under deis-controller.
  std::string ControllerLine(bool* to_stderr) {
    const App& app = PickApp(rng);
    *to_stderr = true;  // the controller logs to stderr
    static constexpr std::string_view kUsers[] = {"admin", "ci-bot", "ops"};
    const std::string_view user = Pick<std::string_view>(rng, kUsers);
    switch (rng.Below(10)) {
      case 0:
        return fmt::format("INFO [{}]: build {}-{} created", app.name, app.name, Hex(rng, 7));
      case 1:
        return fmt::format("INFO [{}]: {} deployed {}", app.name, user, Hex(rng, 7));
      case 2:
        return fmt::format("INFO [{}]: {} scaled pods web={} worker={}", app.name, user,
                           app.web + rng.Between(-1, 2), app.workers);
      case 3:
        return fmt::format("INFO [{}]: config {}-{} updated", app.name, app.name, Uuid(rng));
      case 4:
        return fmt::format("INFO [{}]: domain {}.example.com added", app.name, app.name);
      case 5: {
        const int64_t version = rng.Between(2, 60);
        return fmt::format("WARN [{}]: release v{} not ready after {}s, still waiting", app.name,
                           version, rng.Between(30, 300));
      }
      case 6: {
        const int64_t version = rng.Between(3, 60);
        return fmt::format(
            "ERROR [{}]: (app::deploy): There was a problem deploying v{}. Rolling back to v{}",
            app.name, version, version - 1);
      }
      case 7:
        return fmt::format("INFO [{}]: {} changed limits memory web={}M", app.name, user,
                           rng.Between(1, 8) * 128);
      default: {
        *to_stderr = false;
        const std::string_view method = rng.Chance(3, 4) ? "GET" : "POST";
        const std::string_view what = rng.Chance(1, 2) ? "logs?log_lines=100" : "config/";
        const int status = rng.Chance(19, 20) ? 200 : 404;
        return fmt::format("{} \"{} /v2/apps/{}/{} HTTP/1.1\" {} {} \"Deis Client v2.21.0\"",
                           pods[routers[0]].ip, method, app.name, what, status,
                           rng.Between(90, 30'000));
      }
    }
  }

  std::string AppLine(const Pod& pod, bool* to_stderr) {
    const App& app = *pod.app;
    const Event event =
        static_cast<Event>(PickWeighted(rng, pod.worker ? kWorkerEvents : kWebEvents));
    const std::string_view other = kApps[rng.Below(kAppCount)].name;
    // Drawn whatever the event, in its own statement: the order of draws among a call's
    // arguments is unspecified, and would differ between compilers.
    const std::string_view logger = LoggerName(app.stack, rng);
    switch (event) {
      case kRequest:
        return RequestLine(pod, app);
      case kCache: {
        std::string key = rng.Chance(1, 2) ? "item:" : "user:";
        key += std::to_string(rng.Between(1, 99'999));
        return Render(app.stack, Level::kDebug, ns, pod, logger, "cache miss",
                      {Str("key", std::move(key)), Num("ttl_s", rng.Between(1, 60) * 60)});
      }
      case kPool: {
        const int64_t waiters = rng.Chance(1, 10) ? rng.Between(1, 9) : 0;
        return Render(app.stack, waiters > 0 ? Level::kWarn : Level::kInfo, ns, pod, logger,
                      "db pool",
                      {Num("size", 20), Num("busy", rng.Between(0, 20)), Num("waiters", waiters)});
      }
      case kSlowQuery:
        return Render(
            app.stack, Level::kWarn, ns, pod, logger, "slow query",
            {Num("duration_ms", static_cast<int64_t>(500 * rng.LogNormalPermille() / 1000)),
             Str("sql", SlowQuery(rng))});
      case kUserEvent:
        switch (rng.Below(4)) {
          case 0:
            return Render(
                app.stack, Level::kInfo, ns, pod, logger, "order placed",
                {Num("order_id", rng.Between(100'000, 9'999'999)),
                 Num("user_id", rng.Between(1, 250'000)),
                 Num("total_cents", rng.Between(199, 99'999)), Num("items", rng.Between(1, 12))});
          case 1:
            return Render(app.stack, Level::kInfo, ns, pod, logger, "user signed in",
                          {Num("user_id", rng.Between(1, 250'000)),
                           Str("method", rng.Chance(2, 3) ? "password" : "oauth google")});
          case 2:
            return Render(app.stack, Level::kInfo, ns, pod, logger, "cart updated",
                          {Str("cart_id", Hex(rng, 12)), Num("items", rng.Between(0, 20))});
          default:
            return Render(app.stack, Level::kInfo, ns, pod, logger, "payment authorized",
                          {Num("order_id", rng.Between(100'000, 9'999'999)),
                           Num("amount_cents", rng.Between(199, 99'999)),
                           Str("provider", rng.Chance(1, 2) ? "stripe" : "adyen")});
        }
      case kRetry:
        return Render(app.stack, Level::kWarn, ns, pod, logger, "retrying upstream",
                      {Str("upstream", fmt::format("{}.{}.svc.cluster.local", other, other)),
                       Num("attempt", rng.Between(2, 4)),
                       Str("error", rng.Chance(1, 2) ? "context deadline exceeded"
                                                     : "connection reset by peer"),
                       Num("backoff_ms", 100 << rng.Between(0, 4))});
      case kJob: {
        const bool failed = rng.Chance(1, 25);
        return Render(app.stack, failed ? Level::kWarn : Level::kInfo, ns, pod, logger,
                      failed ? "job failed, will retry" : "job done",
                      {Str("job", std::string(Pick<std::string_view>(rng, kJobs))),
                       Num("id", rng.Between(1, 99'999'999)),
                       Str("queue", std::string(Pick<std::string_view>(rng, kQueues))),
                       Num("took_ms", static_cast<int64_t>(80 * rng.LogNormalPermille() / 1000)),
                       Num("attempt", rng.Chance(9, 10) ? 1 : rng.Between(2, 5))});
      }
      case kError: {
        *to_stderr = true;
        std::vector<Field> fields = {Str("upstream", std::string(other)),
                                     Str("request_id", Hex(rng, 16))};
        if (app.stack == Stack::kGo) {
          fields.push_back(Str("error", fmt::format("Get \"http://{}/api/v1/items\": context "
                                                    "deadline exceeded",
                                                    other)));
          fields.push_back(
              Str("stacktrace", fmt::format("main.(*Server).handle\n\t/app/server/http.go:{}\n"
                                            "net/http.HandlerFunc.ServeHTTP\n\t/usr/local/go/src/"
                                            "net/http/server.go:2220\nnet/http.(*conn).serve\n\t"
                                            "/usr/local/go/src/net/http/server.go:3210",
                                            rng.Between(40, 400))));
        }
        std::string first =
            Render(app.stack, Level::kError, ns, pod, logger, "request failed", fields);
        std::vector<std::string> trace = Trace(app.stack, rng, app, other);
        if (app.stack == Stack::kRails) {
          for (auto& l : trace) l = Render(app.stack, Level::kFatal, ns, pod, "", l, {});
        }
        Continue(pod, std::move(trace), true);
        return first;
      }
      case kMisc:
        switch (rng.Below(3)) {
          case 0:
            return Render(app.stack, Level::kInfo, ns, pod, logger, "feature flags refreshed",
                          {Num("flags", rng.Between(10, 40))});
          case 1:
            return Render(app.stack, Level::kDebug, ns, pod, logger, "metrics flushed",
                          {Num("series", rng.Between(50, 900))});
          default:
            return Render(app.stack, Level::kInfo, ns, pod, logger, "ok", {});
        }
    }
    return "";  // not reached
  }

  // A request as the app's own stack logs it.
  std::string RequestLine(const Pod& pod, const App& app) {
    const Request r = MakeRequest(rng, app);
    const Pod& router = pods[routers[rng.Below(routers.size())]];
    switch (app.stack) {
      case Stack::kRails: {
        const std::string tag = fmt::format("[{}] ", Uuid(rng));
        std::vector<std::string> rest;
        static constexpr std::string_view kActions[] = {
            "HealthController#show as */*",    "",
            "PagesController#show as HTML",    "ItemsController#index as JSON",
            "OrdersController#create as JSON", "ReportsController#show as CSV"};
        if (!kActions[r.kind].empty()) {  // static files never reach a controller
          rest.push_back(Render(Stack::kRails, Level::kInfo, ns, pod, "",
                                fmt::format("{}Processing by {}", tag, kActions[r.kind]), {}));
        }
        // Views and ActiveRecord take parts of the time; the allocations are its own draw.
        const uint64_t ms = r.upstream_us / 1000;
        const int64_t allocations = rng.Between(200, 40'000);
        rest.push_back(Render(
            Stack::kRails, Level::kInfo, ns, pod, "",
            fmt::format("{}Completed {} {} in {}ms (Views: {}.{}ms | ActiveRecord: {}.{}ms | "
                        "Allocations: {})",
                        tag, r.status, Reason(r.status), ms, r.upstream_us / 4000,
                        r.upstream_us / 400 % 10, r.upstream_us / 2500, r.upstream_us / 250 % 10,
                        allocations),
            {}));
        Continue(pod, std::move(rest), false);
        const Civil c = ToCivil(ns);
        return Render(Stack::kRails, Level::kInfo, ns, pod, "",
                      fmt::format("{}Started {} \"{}\" for {} at {:04}-{:02}-{:02} "
                                  "{:02}:{:02}:{:02} +0000",
                                  tag, r.method, r.path, r.client, c.year, c.month, c.day, c.hour,
                                  c.minute, c.second),
                      {});
      }
      case Stack::kNode:
      case Stack::kPython:
        // morgan's and gunicorn's `combined` access lines; morgan sees an IPv4-mapped address.
        return fmt::format("{}{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
                           app.stack == Stack::kNode ? "::ffff:" : "", router.ip, CommonLogTime(ns),
                           r.method, r.path, r.status, r.bytes - 180, r.agent);
      case Stack::kGo: {
        std::string ms;
        AppendDecimal(&ms, r.upstream_us, 1000);
        return Render(Stack::kGo, r.status >= 500 ? Level::kError : Level::kInfo, ns, pod,
                      "server/http.go:142", "request served",
                      {Str("method", std::string(r.method)),
                       Str("path", r.path),
                       Num("status", r.status),
                       {"duration_ms", ms, true},
                       Num("bytes", static_cast<int64_t>(r.bytes)),
                       Str("request_id", Hex(rng, 16)),
                       Str("user_agent", std::string(r.agent))});
      }
    }
    return "";  // not reached
  }

  void Continue(const Pod& pod, std::vector<std::string> lines, bool stderr_) {
    if (lines.empty()) return;
    continuation = std::move(lines);
    continuation_pod = static_cast<size_t>(&pod - pods.data());
    continuation_stderr = stderr_;
  }

  Rng rng;
  int64_t ns;
  std::vector<Pod> pods;
  std::vector<std::vector<size_t>> pods_of_app;  // indexes into pods, per app in kApps
  std::vector<size_t> routers;
  size_t controller = 0;
  // The lines a pod is still writing; they come before anything else.
  std::vector<std::string> continuation;
  size_t continuation_pod = 0;
  bool continuation_stderr = false;
};

LogRecords::LogRecords(uint64_t seed) : s_(std::make_unique<State>(seed)) {}
LogRecords::~LogRecords() = default;
LogRecords::LogRecords(LogRecords&&) noexcept = default;
LogRecords& LogRecords::operator=(LogRecords&&) noexcept = default;
std::string LogRecords::Next() { return s_->Next(); }

// ---- RouterPoints ----

struct RouterPoints::State {
  explicit State(uint64_t seed) : rng(seed), ns(kStartNs) {}

  std::string Next() {
    if (next == 0) {
      Tick(rng, &ns);
      request = MakeRequest(rng, PickApp(rng));
    }
    std::string out;
    auto it = std::back_inserter(out);
    static constexpr std::string_view kMeasurements[] = {
        "deis_router_request_time_ms", "deis_router_response_time_ms", "deis_router_bytes_sent"};
    fmt::format_to(it, "{},app={},status_code={},host={}.example.com value=", kMeasurements[next],
                   request.app->name, request.status, request.app->name);
    switch (next) {
      case 0:
        AppendDecimal(&out, request.request_us, 1000);
        break;
      case 1:
        AppendDecimal(&out, request.upstream_us, 1000);
        break;
      default:
        fmt::format_to(it, "{}i", request.bytes);
    }
    fmt::format_to(it, " {}", ns);
    next = (next + 1) % 3;
    return out;
  }

  Rng rng;
  int64_t ns;
  size_t next = 0;  // which of the request's three points comes next
  Request request;
};

RouterPoints::RouterPoints(uint64_t seed) : s_(std::make_unique<State>(seed)) {}
RouterPoints::~RouterPoints() = default;
RouterPoints::RouterPoints(RouterPoints&&) noexcept = default;
RouterPoints& RouterPoints::operator=(RouterPoints&&) noexcept = default;
std::string RouterPoints::Next() { return s_->Next(); }

std::vector<std::string> Logs(size_t n, uint64_t seed) {
  LogRecords gen(seed);
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(gen.Next());
  return out;
}

std::vector<std::string> Metrics(size_t n, uint64_t seed) {
  RouterPoints gen(seed);
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(gen.Next());
  return out;
}

}  // namespace cairn::sample
