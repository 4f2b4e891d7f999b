// Store-wide options. Each says its default and what it costs in durability or memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "storage/compression.h"
#include "storage/error.h"

namespace cairn::storage {

enum class SyncMode {
  kAlways,    // an append completes only after the WAL holding it is fsynced (group commit)
  kInterval,  // an append completes once written to the OS; the WAL is fsynced every N ms
  kNever,     // the OS decides when to write back; survives a process crash, not a power cut
};

struct SyncPolicy {
  SyncMode mode = SyncMode::kAlways;
  std::chrono::milliseconds interval{0};  // kInterval only

  // "always", "never" or "interval:N" (N in milliseconds, at least 1).
  static Result<SyncPolicy> Parse(std::string_view text);
  std::string ToString() const;
};

// How long a topic's log is kept. Retention trims whole batches from the log's start, whatever
// the channels' cursors say.
struct RetentionPolicy {
  std::chrono::milliseconds age{std::chrono::hours(72)};  // 0 = keep forever
  uint64_t bytes = 0;                                     // stored bytes; 0 = unlimited
};

// Per-topic overrides of the store-wide defaults; an empty field means "the default".
struct TopicSettings {
  std::optional<Codec> codec;
  std::optional<std::chrono::milliseconds> retention_age;
  std::optional<uint64_t> retention_bytes;
  // Channels skip (and count as expired) messages published longer ago than this; unset or 0:
  // no limit. The log keeps them until retention trims it, so a seek can still replay them.
  std::optional<std::chrono::milliseconds> message_ttl;
};

// RocksDB's tunables, each with Cairn's default and why. What is not here is fixed by design and
// said where Store::Open sets it (point-in-time WAL recovery, no block compression of batches
// that carry their own codec, index and filter blocks in the cache).
struct RocksDbTuning {
  // Flushes and compactions at once: the machine's 2 cores, shared with the io and committer
  // threads.
  int max_background_jobs = 2;
  // SST files are synced every this many bytes as they are written, so that a flush never queues
  // one large writeback in front of the WAL's fsyncs.
  uint64_t bytes_per_sync = 1u << 20;
  // WAL bytes after which RocksDB flushes the column families still holding the oldest WAL: the
  // bound on recovery time after a crash, and on WAL disk use.
  uint64_t max_total_wal_size = 512u << 20;

  // The log column family. Memtables bound the store's write memory: at most
  // log_max_write_buffers of log_write_buffer_bytes (one filling, one flushing), which sustains
  // well over a million 100-byte messages a second. A WAL lasts about one memtable, which is what
  // StoreOptions::wal_spare_bytes is sized for.
  uint64_t log_write_buffer_bytes = 32u << 20;
  int log_max_write_buffers = 2;
  // SST sizes: a 64 MiB file holds about two memtables' worth, and level 1 (256 MiB) four files;
  // retention deletes whole ranges, so compactions stay rare whatever these are.
  uint64_t log_target_file_bytes = 64u << 20;
  uint64_t log_max_bytes_for_level_base = 256u << 20;
  // Blocks of batches: a 64 KiB block holds a few batches, so a cold read of a window fetches
  // what it needs in one or two blocks.
  size_t log_block_bytes = 64u << 10;

  // The metadata and cursor column families: small records, rewritten often.
  uint64_t meta_write_buffer_bytes = 8u << 20;
  size_t meta_block_bytes = 4096;
};

struct StoreOptions {
  // Data directory; created if missing. Holds one RocksDB database.
  std::string path;

  // Durability of appends; default always.
  SyncPolicy sync;

  // Codec for topics that do not set one; default lz4.
  Codec default_codec = Codec::kLz4;

  // Retention for topics that do not set their own; default 72 h, unlimited bytes.
  RetentionPolicy default_retention;

  // How often retention runs. Trimming lags the policy by at most this much.
  std::chrono::milliseconds retention_interval{std::chrono::seconds(10)};

  // Decoded recent batches each topic keeps in memory, so reading the tail never touches the
  // disk. Memory: up to this much per topic with recent appends.
  size_t tail_cache_bytes_per_topic = 16u << 20;

  // RocksDB block cache for cold reads, shared by all topics.
  size_t block_cache_bytes = 64u << 20;

  // Bytes a second RocksDB's memtable flushes and compactions may write. An unthrottled 32 MiB
  // flush competes with the WAL's fsyncs for the disk and shows up in the publish latency tail
  // (p99 at half load went from 7.3 to 5.6 ms with this limit; bench/run_net_bench latency).
  // Sustained ingest above this rate (after compression) eventually stalls writes. 0: no limit.
  uint64_t background_write_bytes_per_sec = 64u << 20;

  // Cursor changes are written in one batch this often, off the append path. A crash loses at
  // most this much of finish progress: those messages are delivered again.
  std::chrono::milliseconds cursor_flush_interval{100};

  // Size of the spare file of zeros each new WAL is written over, so that a sync=always fsync
  // flushes data only and no file-system metadata (wal_files.h); 0: plain WAL files. A little
  // more than the log's 32 MiB memtable, which is when RocksDB moves to a new WAL; a WAL that
  // outgrows its spare goes on as a plain file. Disk: up to twice this, the spare and the WAL.
  uint64_t wal_spare_bytes = 40u << 20;

  RocksDbTuning rocksdb;
};

}  // namespace cairn::storage
