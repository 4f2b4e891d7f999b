// WAL files written over zeros, so that the fsync after each group commit has only data to flush.
//
// Under sync=always every group commit ends in an fdatasync of RocksDB's WAL. When the write
// lands past the end of the file, or in blocks that are allocated but never written (fallocate),
// the file's size or extent map changes too, and fdatasync must commit the file system's journal
// as well as the data: on the development machine's ext4 disk, 4 KiB appends to a fresh file
// reach ~2,950 fdatasync/s, overwrites of written blocks ~4,900/s (fio). That rate caps how many
// groups, so how many messages, a second the store commits.
//
// PostgreSQL (wal_init_zero) and RocksDB itself (recycle_log_file_num) solve this by writing WAL
// segments over blocks written before. RocksDB 7.8's recycling is switched off under the
// point-in-time recovery Cairn needs, so this file system does the other half: it keeps one spare
// file of zeros, written and fdatasync'ed ahead of time, and when RocksDB creates its next WAL
// the spare is renamed into place (FileSystem::ReuseWritableFile) and written from its start.
//
// Why recovery is unaffected: RocksDB's WAL reader skips a zeroed region as the end of the log
// (a zero record header, kZeroType, is the padding its preallocation leaves), in every recovery
// mode. A WAL closed cleanly is truncated to its length. A torn last record followed by zeros
// fails its checksum, which point-in-time recovery treats as the end, as it treats a torn tail
// today. tests/storage/crash_test kills appenders mid-write over prepared WALs.
//
// The spare is named kSpareName in the data directory (RocksDB ignores names it did not make).
// It survives a restart, so a reopened store starts on it; a half-written one (kSpareName +
// ".tmp") is removed. When the spare cannot be made, or the disk has too little room left to
// make it without eating into what RocksDB needs to flush, RocksDB gets a plain file as it would
// without this, and the next attempt comes after a pause.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <rocksdb/file_system.h>

namespace cairn::storage {

class PreparedWalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  static constexpr std::string_view kSpareName = "cairn-wal-spare";

  // `dir` is the directory RocksDB keeps its WAL in; spares are `bytes` long.
  PreparedWalFileSystem(std::string dir, uint64_t bytes);
  ~PreparedWalFileSystem() override;  // Stop()s

  static const char* kClassName() { return "CairnPreparedWalFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // Ends the thread that makes spares. A finished spare stays for the next run.
  void Stop();

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;

  struct Stats {
    uint64_t wals_on_spares = 0;  // WALs RocksDB created over a spare
    uint64_t plain_wals = 0;      // WALs created while no spare was ready
    uint64_t spare_failures = 0;  // attempts to make a spare that failed
  };
  Stats stats() const;

  // Whether `filename` (no directory) is one of this file system's spares, finished or not.
  static bool IsSpareName(std::string_view filename);

 private:
  // At RocksDB's first WAL, when it holds the directory's LOCK (so another process that has the
  // directory open is never disturbed): removes a half-made spare, makes one unless a whole one is
  // there, so that first WAL is already one, and starts the thread that makes the next after each
  // use.
  void StartOnce();
  void Run();
  // Writes a spare of zeros, fdatasyncs it and renames it into place; false if it could not.
  bool MakeSpare();

  const std::string dir_;
  const std::string spare_path_;
  const uint64_t bytes_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::once_flag started_;
  bool spare_ready_ = false;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace cairn::storage
