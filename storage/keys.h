// Key layouts of Cairn's RocksDB column families. Integers in keys are big-endian so that
// RocksDB's bytewise order is numeric order.
//
// Column family "default" (metadata, protobuf values from cairn_storage.proto):
//   "F"                                   -> StoreFormat
//   "I"                                   -> fixed64 big-endian: the next topic/channel id
//   "T" name                              -> TopicMeta
//   "L" be64(topic id)                    -> LogState
//   "C" be64(topic id) name               -> ChannelMeta
//
// Column family "log" (record batches, record_batch.h):
//   be64(topic id) be64(base offset)      -> batch             16-byte key
//
// Column family "cursors":
//   be64(topic id) be64(channel id)       -> CursorState       16-byte key
//
// Example: topic id 3, batch at offset 256 -> 00 00 00 00 00 00 00 03 00 00 00 00 00 00 01 00.
//
// NOTE: these prefixes and layouts, and the column families' names, are part of the persistent
// format: never change or reuse one; a new layout needs a new kFormatVersion (store.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/coding.h"

namespace cairn::storage::keys {

inline constexpr std::string_view kFormat = "F";
inline constexpr std::string_view kNextId = "I";

inline std::string Topic(std::string_view name) { return std::string("T").append(name); }

inline std::string LogState(uint64_t topic_id) {
  std::string k("L");
  PutFixed64BE(&k, topic_id);
  return k;
}

inline std::string ChannelPrefix(uint64_t topic_id) {
  std::string k("C");
  PutFixed64BE(&k, topic_id);
  return k;
}

inline std::string Channel(uint64_t topic_id, std::string_view name) {
  return ChannelPrefix(topic_id).append(name);
}

// Log and cursor keys share one shape: two big-endian integers.
inline std::string Pair(uint64_t hi, uint64_t lo) {
  std::string k;
  k.reserve(16);
  PutFixed64BE(&k, hi);
  PutFixed64BE(&k, lo);
  return k;
}

inline std::string Batch(uint64_t topic_id, uint64_t base_offset) {
  return Pair(topic_id, base_offset);
}
inline std::string Cursor(uint64_t topic_id, uint64_t channel_id) {
  return Pair(topic_id, channel_id);
}

// The second integer of a 16-byte key.
inline uint64_t PairLow(std::string_view key) { return GetFixed64BE(key.data() + 8); }
inline uint64_t PairHigh(std::string_view key) { return GetFixed64BE(key.data()); }

}  // namespace cairn::storage::keys
