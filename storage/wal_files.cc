#include "storage/wal_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include <spdlog/spdlog.h>

namespace cairn::storage {
namespace {

// After a failed attempt (a full disk, most likely) the next one waits this long.
constexpr auto kRetryAfter = std::chrono::seconds(10);
// Zeros are written and flushed this much at a time, so making a spare never puts tens of MiB
// in front of the WAL's own fsyncs at once.
constexpr size_t kChunk = 1u << 20;
// Free space a spare must leave besides itself and the WAL: RocksDB's memtable flushes.
constexpr uint64_t kFlushRoom = 64u << 20;

// RocksDB names its WAL files <number>.log.
bool IsWalName(std::string_view name) {
  constexpr std::string_view kSuffix = ".log";
  if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) return false;
  name.remove_suffix(kSuffix.size());
  return std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string_view BaseName(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

PreparedWalFileSystem::PreparedWalFileSystem(std::string dir, uint64_t bytes)
    : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()),
      dir_(std::move(dir)),
      spare_path_((std::filesystem::path(dir_) / kSpareName).string()),
      bytes_(bytes) {}

PreparedWalFileSystem::~PreparedWalFileSystem() { Stop(); }

bool PreparedWalFileSystem::IsSpareName(std::string_view filename) {
  return filename.starts_with(kSpareName);
}

void PreparedWalFileSystem::StartOnce() {
  std::call_once(started_, [this] {
    ::unlink((spare_path_ + ".tmp").c_str());
    struct stat st {};
    bool ready =
        ::stat(spare_path_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == bytes_;
    if (!ready) {
      ::unlink(spare_path_.c_str());
      ready = MakeSpare();
    }
    std::lock_guard lock(mu_);
    spare_ready_ = ready;
    if (!ready) ++stats_.spare_failures;
    thread_ = std::thread([this] { Run(); });
  });
}

void PreparedWalFileSystem::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

PreparedWalFileSystem::Stats PreparedWalFileSystem::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void PreparedWalFileSystem::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !spare_ready_; });
    if (stopping_) return;
    lock.unlock();
    const bool made = MakeSpare();
    lock.lock();
    if (made) {
      spare_ready_ = true;
    } else {
      ++stats_.spare_failures;
      cv_.wait_for(lock, kRetryAfter, [&] { return stopping_; });
    }
  }
}

bool PreparedWalFileSystem::MakeSpare() {
  // Leave room for RocksDB: a memtable flush (up to 64 MiB here) and the WAL being written.
  struct statvfs vfs {};
  if (::statvfs(dir_.c_str(), &vfs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < 2 * bytes_ + kFlushRoom) {
      spdlog::warn(
          "storage: {} has {} bytes free, too few for a spare WAL file of {}; WALs are "
          "plain files until there is room",
          dir_, free_bytes, bytes_);
      return false;
    }
  }
  const std::string tmp = spare_path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    spdlog::warn("storage: cannot create a spare WAL file {}: {}", tmp, std::strerror(errno));
    return false;
  }
  static const std::vector<char> zeros(kChunk, 0);
  int err = 0;
  for (uint64_t at = 0; at < bytes_ && err == 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, bytes_ - at));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(at));
    if (w < 0) {
      if (errno != EINTR) err = errno;
      continue;
    }
    // Starts this chunk's writeback and waits for it, so the disk sees 1 MiB at a time.
    if (::sync_file_range(fd, static_cast<off_t>(at), w,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
      err = errno;
    }
    at += static_cast<uint64_t>(w);
  }
  // The blocks and the length must be durable before RocksDB writes a WAL over them: only then
  // does its fdatasync have nothing but data to flush.
  if (err == 0 && ::fdatasync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), spare_path_.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    spdlog::warn(
        "storage: cannot prepare a spare WAL file of {} bytes in {}: {}; WALs are plain "
        "files until it can",
        bytes_, dir_, std::strerror(err));
    return false;
  }
  return true;
}

rocksdb::IOStatus PreparedWalFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (!IsWalName(BaseName(fname))) return target()->NewWritableFile(fname, options, result, dbg);
  StartOnce();
  bool use_spare = false;
  {
    std::lock_guard lock(mu_);
    use_spare = spare_ready_;
    spare_ready_ = false;
  }
  if (use_spare) {
    // Opens the spare without truncating it and renames it to `fname`; writes start at 0.
    auto st = target()->ReuseWritableFile(fname, spare_path_, options, result, dbg);
    if (st.ok()) {
      std::lock_guard lock(mu_);
      ++stats_.wals_on_spares;
      cv_.notify_one();  // make the next one
      return st;
    }
    spdlog::warn("storage: cannot start a WAL on the spare file: {}", st.ToString());
    ::unlink(spare_path_.c_str());
  }
  {
    std::lock_guard lock(mu_);
    ++stats_.plain_wals;
    cv_.notify_one();
  }
  return target()->NewWritableFile(fname, options, result, dbg);
}

}  // namespace cairn::storage
