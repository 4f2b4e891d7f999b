// Prometheus text exposition (format 0.0.4), for cairnd's /metrics and the workers' own.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "src/base/histogram.h"

namespace cairn::net {

// Prometheus text exposition: one family at a time.
class Exposition {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Sample(std::string_view name, std::string_view labels, double value) {
    if (labels.empty()) {
      out_ += fmt::format("{} {}\n", name, value);
    } else {
      out_ += fmt::format("{}{{{}}} {}\n", name, labels, value);
    }
  }
  template <size_t N>
  void Histogram(std::string_view name, const Histogram<N>& h) {
    for (size_t i = 0; i < N; ++i) {
      out_ += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, h.bounds[i], h.at_or_below[i]);
    }
    out_ += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, h.count,
                        name, h.sum, name, h.count);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Label values escape backslash, double quote and newline.
inline std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace cairn::net
