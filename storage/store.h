// The store: one RocksDB database in a data directory holding every topic's log, the topics' and
// channels' metadata, and the channels' cursors. The one entry point of storage/.
//
// Durability: an append completes only once durable under the sync policy (options.h). Metadata
// changes (topics, channels) are always fsynced. Cursor progress is written in batches every
// cursor_flush_interval without fsync of its own; a crash can lose that much progress, and the
// messages concerned are delivered again, never lost.
//
// Thread-safety: all methods may be called from any thread. TopicLog and ChannelCursor handles
// must not be used after the Store is closed or destroyed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/cursor.h"
#include "storage/error.h"
#include "storage/group_commit.h"
#include "storage/options.h"
#include "storage/topic_log.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace cairn::storage {

struct Engine;
class PreparedWalFileSystem;

// The version of the on-disk format this build reads and writes (record batches, keys, protobuf
// metadata). A data directory of another version is refused, untouched.
inline constexpr uint32_t kFormatVersion = 1;

struct StoreStats {
  CommitStats commits;
  uint64_t tail_reads = 0;     // reads served from memory
  uint64_t rocksdb_reads = 0;  // reads that went to RocksDB
  // Parts of a log found unreadable since the store opened (ReadResult::unreadable).
  uint64_t unreadable_ranges = 0;
  uint64_t retention_trims = 0;
  uint64_t retention_trimmed_messages = 0;
  // FlushCursors() passes that succeeded, whether or not a cursor had changed: once it has grown
  // by two, every channel's progress as of the first reading is in RocksDB.
  uint64_t cursor_flushes = 0;
  // WALs started over a prepared spare file, and plain ones (wal_files.h).
  uint64_t wals_on_spares = 0;
  uint64_t plain_wals = 0;
  uint64_t wal_spare_failures = 0;
  // The file system holding the store (statvfs of its directory): its size, and the bytes an
  // unprivileged writer can still use. 0 when it cannot be read.
  uint64_t volume_size_bytes = 0;
  uint64_t volume_available_bytes = 0;
};

struct RetentionReport {
  uint64_t topics_trimmed = 0;
  uint64_t messages_trimmed = 0;
  uint64_t bytes_trimmed = 0;
};

class Store {
 public:
  // Opens (or creates) the store at options.path. Fails, touching nothing, if the directory holds
  // a store of another format version, or something that is not a Cairn store.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store();

  // Flushes cursors, commits what is queued, syncs, and closes RocksDB. Idempotent.
  Status Close();

  const StoreOptions& options() const;

  // Topics. CreateTopic returns the existing topic if there is one (its settings unchanged).
  Result<std::shared_ptr<TopicLog>> CreateTopic(std::string_view name,
                                                const TopicSettings& settings = {});
  std::shared_ptr<TopicLog> FindTopic(std::string_view name) const;
  std::vector<std::shared_ptr<TopicLog>> Topics() const;
  // Replaces a topic's settings; they apply to batches written from now on (codec) and to the
  // next retention pass.
  Status ConfigureTopic(std::string_view name, const TopicSettings& settings);
  // Deletes the topic, its log, its channels and their cursors in one atomic write.
  Status DeleteTopic(std::string_view name);

  // Channels. A new channel's cursor starts at `start` (default: the end of the log, i.e. it gets
  // what is published from now on), clamped to the retained log. CreateChannel returns the
  // existing cursor if there is one.
  Result<std::shared_ptr<ChannelCursor>> CreateChannel(std::string_view topic,
                                                       std::string_view channel,
                                                       std::optional<uint64_t> start = {});
  Status DeleteChannel(std::string_view topic, std::string_view channel);

  // Writes every cursor changed since the last flush, in one batch. The background thread does
  // this every cursor_flush_interval; Close() does it with an fsync.
  Status FlushCursors();

  // One retention pass over every topic, as of `now_ns`. The background thread runs one every
  // retention_interval.
  Result<RetentionReport> EnforceRetention(int64_t now_ns);

  StoreStats stats() const;
  // False after a write failed (a full disk, an I/O error), until a write succeeds again.
  bool healthy() const;

  // For tests and benchmarks: RocksDB's own view.
  Engine& engine();

 private:
  Store();
  Status Recover();
  void Maintain();
  Result<uint64_t> AllocateId(rocksdb::WriteBatch& wb);
  Status CommitMeta(std::function<Status(rocksdb::WriteBatch&)> prepare);

  std::unique_ptr<Engine> engine_;
  // RocksDB's file system and Env when WALs go over spares (wal_files.h); they outlive db_.
  std::shared_ptr<PreparedWalFileSystem> wal_fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<GroupCommitter> committer_;

  mutable std::mutex mu_;  // topics_, next_id_
  std::map<std::string, std::shared_ptr<TopicLog>, std::less<>> topics_;
  uint64_t next_id_ = 1;

  std::mutex maintain_mu_;
  std::condition_variable maintain_cv_;
  bool stopping_ = false;
  bool closed_ = false;
  std::thread maintainer_;

  std::atomic<uint64_t> trims_{0}, trimmed_messages_{0}, cursor_flushes_{0};
};

}  // namespace cairn::storage
