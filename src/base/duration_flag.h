// Go-style duration flags for CLI11 ("60s", "15m"), shown with their default in --help: cairnd's
// and the workers'. Header-only, so only the binaries that parse flags need CLI11.
#pragma once

#include <chrono>
#include <string>

#include <CLI/CLI.hpp>

#include "src/base/duration.h"

namespace cairn {

// A CLI11 option taking a Go-style duration ("60s", "15m"), shown with its default.
template <class Duration>
void AddDurationFlag(CLI::App& app, const std::string& name, Duration* value,
                     const std::string& help) {
  app.add_option_function<std::string>(
         name,
         [value, name](const std::string& text) {
           auto parsed = ParseDurationIn<Duration>(text);
           if (!parsed) throw CLI::ValidationError(name, parsed.error().message);
           *value = *parsed;
         },
         help)
      ->default_str(FormatDuration(*value));
}

}  // namespace cairn
