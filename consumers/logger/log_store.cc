#include "consumers/logger/log_store.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace cairn::consumers {

// Where the overheads come from (libstdc++ and glibc malloc, x86-64):
//  - a line is a Line in its app's deque: 56 bytes (its position, 24, + std::string), in
//    504-byte deque blocks (9 lines a block, 512 with malloc's header) plus the deque's map of
//    block pointers: about 58 bytes a line;
//  - its text, when longer than std::string's 15-byte inline buffer, is a heap block of
//    size + 1 rounded up to 16 with an 8-byte header: 8 to 24 bytes beyond the characters;
//  - so 88 covers a line of any length, with a little to spare for the allocator's slack.
//  - an app is a node of the unordered_map (its name's std::string, the deque, the dropped
//    offset, the hash and the next pointer: about 140 bytes, 160 from malloc), its bucket
//    (8 bytes at a load of 1), an empty deque's map and first block (64 + 480 bytes from
//    malloc, kept even when empty), and its entry in the eviction set (a 48-byte tree node,
//    64 from malloc): about 800 bytes; 1024 leaves room for the tables' growth by doubling.
// log_store_test measures the whole against mallinfo2.

LogStore::LogStore(LogStoreOptions options) : options_(options) {
  options_.lines_per_app = std::max<size_t>(options_.lines_per_app, 1);
}

LogStore::Added LogStore::Add(std::string_view app_name, LinePosition at, std::string line) {
  auto it = apps_.find(app_name);
  if (it == apps_.end()) {
    it = apps_.emplace(std::string(app_name), App{}).first;
    bytes_ += AppBytes(app_name);
    by_size_.emplace(0, &it->first);
  }
  App& app = it->second;
  if (app.dropped_through && at <= *app.dropped_through) {
    ++counters_.too_old;
    return Added::kTooOld;
  }
  // Nearly always at the end: positions arrive in order.
  auto pos = app.lines.end();
  if (!app.lines.empty() && app.lines.back().at >= at) {
    pos = std::lower_bound(app.lines.begin(), app.lines.end(), at,
                           [](const Line& l, const LinePosition& p) { return l.at < p; });
    if (pos != app.lines.end() && pos->at == at) {
      ++counters_.duplicates;
      return Added::kDuplicate;
    }
  }
  // The estimate counts size(), so do not keep spare capacity a caller's appends left.
  if (line.capacity() > line.size() + 16) line.shrink_to_fit();
  by_size_.erase({app.lines.size(), &it->first});
  pos = app.lines.insert(pos, Line{at, std::move(line)});
  by_size_.emplace(app.lines.size(), &it->first);
  ++lines_;
  bytes_ += LineBytes(*pos);
  ++counters_.stored;
  while (app.lines.size() > options_.lines_per_app) {
    DropOldest(it);
    ++counters_.dropped_per_app;
  }
  Shrink();
  return Added::kStored;
}

void LogStore::DropOldest(Apps::iterator it) {
  App& app = it->second;
  by_size_.erase({app.lines.size(), &it->first});
  const Line& oldest = app.lines.front();
  app.dropped_through = std::max(app.dropped_through.value_or(LinePosition()), oldest.at);
  bytes_ -= LineBytes(oldest);
  --lines_;
  app.lines.pop_front();
  by_size_.emplace(app.lines.size(), &it->first);
}

void LogStore::Forget(Apps::iterator it) {
  by_size_.erase({it->second.lines.size(), &it->first});
  for (const Line& l : it->second.lines) bytes_ -= LineBytes(l);
  lines_ -= it->second.lines.size();
  bytes_ -= AppBytes(it->first);
  apps_.erase(it);
}

void LogStore::Shrink() {
  while (bytes_ > options_.max_bytes && !by_size_.empty()) {
    auto biggest = apps_.find(*by_size_.rbegin()->second);
    if (!biggest->second.lines.empty()) {
      DropOldest(biggest);
      ++counters_.dropped_for_memory;
    }
    if (biggest->second.lines.empty()) Forget(biggest);
  }
}

size_t LogStore::AppendLast(std::string_view app_name, size_t n, std::string& out) const {
  auto it = apps_.find(app_name);
  if (it == apps_.end() || n == 0) return 0;
  const auto& lines = it->second.lines;
  const size_t count = std::min(n, lines.size());
  size_t size = 0;
  for (auto l = lines.end() - static_cast<ptrdiff_t>(count); l != lines.end(); ++l) {
    size += l->text.size() + 1;
  }
  out.reserve(out.size() + size);
  for (auto l = lines.end() - static_cast<ptrdiff_t>(count); l != lines.end(); ++l) {
    out += l->text;
    out += '\n';
  }
  return count;
}

std::vector<std::string_view> LogStore::Last(std::string_view app_name, size_t n) const {
  std::vector<std::string_view> out;
  auto it = apps_.find(app_name);
  if (it == apps_.end()) return out;
  const auto& lines = it->second.lines;
  const size_t count = std::min(n, lines.size());
  for (auto l = lines.end() - static_cast<ptrdiff_t>(count); l != lines.end(); ++l) {
    out.push_back(l->text);
  }
  return out;
}

bool LogStore::Delete(std::string_view app_name) {
  auto it = apps_.find(app_name);
  if (it == apps_.end()) return false;
  const size_t held = it->second.lines.size();
  counters_.dropped_deleted += held;
  Forget(it);
  return held > 0;
}

std::optional<size_t> ParseByteSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  const std::string_view number = text.substr(0, i);
  std::string unit(text.substr(i));
  if (number.empty() || number == ".") return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || end != number.data() + number.size()) return std::nullopt;
  if (unit.ends_with('B') || unit.ends_with('b')) unit.pop_back();
  double base = 1000;
  if (unit.ends_with('i')) {
    base = 1024;
    unit.pop_back();
  }
  int power = 0;
  if (unit.size() > 1) return std::nullopt;
  if (unit.size() == 1) {
    switch (std::tolower(static_cast<unsigned char>(unit[0]))) {
      case 'k':
        power = 1;
        break;
      case 'm':
        power = 2;
        break;
      case 'g':
        power = 3;
        break;
      case 't':
        power = 4;
        break;
      default:
        return std::nullopt;
    }
  } else if (base == 1024) {
    return std::nullopt;  // a bare "i"
  }
  const double bytes = value * std::pow(base, power);
  if (!std::isfinite(bytes) || bytes >= 0x1p63) return std::nullopt;
  return static_cast<size_t>(bytes);
}

}  // namespace cairn::consumers
