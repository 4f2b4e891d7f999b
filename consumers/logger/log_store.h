// The lines cairn-logger holds: per app, the last lines of its log, each tagged with the position
// of the message it came from (LinePosition), bounded per app (lines) and overall (bytes).
//
// Order and duplicates. An app's lines are kept in position order: publish time, then broker,
// then offset. On one broker that is offset order, the order cairnd published them in (its
// publish times rise with the offset); across brokers it is publish-time order. A line whose
// position is already held is ignored (a redelivery has the same broker, offset and publish
// time), and so is one older than a line the app has already dropped (it would not be among the
// last lines anyway), so a redelivered message is never served twice; one that arrives out of
// order is inserted in place. A broker is numbered by its address (net/client.h's Consumer), so
// one that comes back under another address (other ports) is another broker, and what it
// redelivers is held twice.
//
// Memory. bytes() is an estimate of the heap the store holds: for each line its length plus
// kLineOverhead, for each app the length of its name plus kAppOverhead. Both overheads are
// measured with glibc's malloc on x86-64 (tests/consumers/log_store_test.cc checks the estimate
// against mallinfo2 for a few shapes of data), see log_store.cc. When an Add takes bytes() over
// max_bytes, the store drops the oldest line of the app holding the most lines (ties: any of
// them) until it is back under: apps converge towards equal shares, a chatty app cannot starve
// quiet ones, and an app with few lines keeps them. An app left with no lines is forgotten.
//
// Not thread-safe: cairn-logger uses it on its one io thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cairn::consumers {

// Where a line's message is: its publish time (ns since the epoch), the broker it came from (the
// consumer's index for it) and its offset there. From an offset alone (publish time 0, broker
// 0): a position on one broker, for callers that order by offset only.
struct LinePosition {
  int64_t publish_ns = 0;
  uint32_t broker = 0;
  uint64_t offset = 0;

  LinePosition() = default;
  LinePosition(uint64_t offset) : offset(offset) {}  // NOLINT: implicit on purpose
  LinePosition(int64_t publish_ns, uint32_t broker, uint64_t offset)
      : publish_ns(publish_ns), broker(broker), offset(offset) {}
  auto operator<=>(const LinePosition&) const = default;
};

struct LogStoreOptions {
  // Lines kept per app (--lines-per-app); the oldest go first. At least 1.
  size_t lines_per_app = 1000;
  // Bound on bytes() (--max-memory).
  size_t max_bytes = size_t{256} << 20;
};

struct LogStoreCounters {
  uint64_t stored = 0;              // lines added
  uint64_t duplicates = 0;          // ignored: position already held
  uint64_t too_old = 0;             // ignored: older than a line the app already dropped
  uint64_t dropped_per_app = 0;     // dropped for lines_per_app
  uint64_t dropped_for_memory = 0;  // dropped for max_bytes
  uint64_t dropped_deleted = 0;     // removed by Delete
};

class LogStore {
 public:
  // Estimated heap per line beyond its characters, and per app beyond its name (log_store.cc).
  static constexpr size_t kLineOverhead = 88;
  static constexpr size_t kAppOverhead = 1024;

  enum class Added { kStored, kDuplicate, kTooOld };

  explicit LogStore(LogStoreOptions options);

  Added Add(std::string_view app, LinePosition at, std::string line);
  // Appends the last `n` lines of `app`, oldest first, each followed by "\n", to `out`.
  // Returns how many; 0 for an app the store holds nothing of.
  size_t AppendLast(std::string_view app, size_t n, std::string& out) const;
  // The same as views, for tests. Valid until the next Add or Delete.
  std::vector<std::string_view> Last(std::string_view app, size_t n) const;
  // Forgets the app. Returns whether it held any line.
  bool Delete(std::string_view app);

  size_t apps() const { return apps_.size(); }
  size_t lines() const { return lines_; }
  size_t bytes() const { return bytes_; }
  const LogStoreCounters& counters() const { return counters_; }
  const LogStoreOptions& options() const { return options_; }

 private:
  struct Line {
    LinePosition at;
    std::string text;
  };
  struct App {
    std::deque<Line> lines;
    // Positions up to this one are older than a line the app dropped.
    std::optional<LinePosition> dropped_through;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Apps = std::unordered_map<std::string, App, Hash, std::equal_to<>>;

  static size_t LineBytes(const Line& l) { return l.text.size() + kLineOverhead; }
  static size_t AppBytes(std::string_view name) { return name.size() + kAppOverhead; }
  void DropOldest(Apps::iterator it);
  void Forget(Apps::iterator it);
  void Shrink();

  LogStoreOptions options_;
  Apps apps_;
  // Eviction order: (lines held, app). Pointers into apps_ are stable (node-based map).
  std::set<std::pair<size_t, const std::string*>> by_size_;
  size_t lines_ = 0, bytes_ = 0;
  LogStoreCounters counters_;
};

// --max-memory: a byte count, optionally with a unit, as Kubernetes and IEC spell them:
// "268435456", "256Mi", "256MiB", "1.5Gi" (powers of 1024); "300M", "300MB", "2G" (powers of
// 1000); "B" alone is bytes. Units are case-insensitive but for the 'i'.
std::optional<size_t> ParseByteSize(std::string_view text);

}  // namespace cairn::consumers
