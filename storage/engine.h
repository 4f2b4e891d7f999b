// Internal to storage/: the RocksDB handles and services a store's parts share. Owned by Store;
// every TopicLog points at it and must not outlive its Store.
#pragma once

#include <atomic>
#include <cstdint>

#include "storage/group_commit.h"
#include "storage/options.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace cairn::storage {

struct Engine {
  rocksdb::DB* db = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;     // "default"
  rocksdb::ColumnFamilyHandle* log = nullptr;      // "log"
  rocksdb::ColumnFamilyHandle* cursors = nullptr;  // "cursors"
  GroupCommitter* committer = nullptr;
  StoreOptions options;

  // Reads served from the tail cache vs. from RocksDB (for tests, stats and benchmarks).
  std::atomic<uint64_t> tail_reads{0};
  std::atomic<uint64_t> rocksdb_reads{0};
  // Distinct parts of a log found unreadable (a batch failing its checksum, offsets missing).
  std::atomic<uint64_t> unreadable_ranges{0};
};

}  // namespace cairn::storage
