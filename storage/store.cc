#include "storage/store.h"
#include "src/base/clock.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>

#include <fmt/format.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "storage/cairn_storage.pb.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/wal_files.h"

namespace cairn::storage {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLogFamily = "log";
constexpr const char* kCursorFamily = "cursors";

// RocksDB writes an info LOG into the data directory on every open; the format check must not.
class SilentLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

// RocksDB's own log goes through spdlog, like the rest of Cairn, rather than a LOG file in the data
// directory: one log to read, and nothing to write to a disk that may be full (a LOG write after
// a failed one aborts Debian's RocksDB build on an assertion).
class SpdlogLogger final : public rocksdb::Logger {
 public:
  SpdlogLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      spdlog::error("rocksdb: {}", buf);
    } else if (level >= rocksdb::InfoLogLevel::WARN_LEVEL) {
      spdlog::warn("rocksdb: {}", buf);
    } else {
      spdlog::debug("rocksdb: {}", buf);
    }
  }
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
};

// A CommitOp that runs a function on the committer thread and hands its status to a waiter.
class FnOp final : public CommitOp {
 public:
  FnOp(std::function<Status(rocksdb::WriteBatch&)> prepare, bool durable)
      : prepare_(std::move(prepare)), durable_(durable) {}
  bool durable() const override { return durable_; }
  Status Prepare(rocksdb::WriteBatch& wb, GroupContext&) override { return prepare_(wb); }
  void Complete(const Status& status) override { done_.set_value(status); }
  std::future<Status> result() { return done_.get_future(); }

 private:
  std::function<Status(rocksdb::WriteBatch&)> prepare_;
  bool durable_;
  std::promise<Status> done_;
};

Status RunOp(GroupCommitter& committer, std::function<Status(rocksdb::WriteBatch&)> prepare,
             bool durable) {
  auto op = std::make_unique<FnOp>(std::move(prepare), durable);
  auto result = op->result();
  committer.Submit(std::move(op));
  return result.get();
}

TopicSettings FromProto(const pb::TopicSettings& p) {
  TopicSettings s;
  if (p.has_codec() && IsKnownCodec(static_cast<uint8_t>(p.codec()))) {
    s.codec = static_cast<Codec>(p.codec());
  }
  if (p.has_retention_age_ms()) s.retention_age = std::chrono::milliseconds(p.retention_age_ms());
  if (p.has_retention_bytes()) s.retention_bytes = p.retention_bytes();
  if (p.has_message_ttl_ms()) s.message_ttl = std::chrono::milliseconds(p.message_ttl_ms());
  return s;
}

pb::TopicSettings ToProto(const TopicSettings& s) {
  pb::TopicSettings p;
  if (s.codec) p.set_codec(static_cast<uint32_t>(*s.codec));
  if (s.retention_age) p.set_retention_age_ms(static_cast<uint64_t>(s.retention_age->count()));
  if (s.retention_bytes) p.set_retention_bytes(*s.retention_bytes);
  if (s.message_ttl) p.set_message_ttl_ms(static_cast<uint64_t>(s.message_ttl->count()));
  return p;
}

Status CheckName(std::string_view kind, std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return Fail(Errc::kInvalidArgument, fmt::format("{} name must be 1 to 255 bytes", kind));
  }
  return {};
}

// Opens an existing data directory read-only, with nothing written, and checks its format record.
Status CheckFormat(const std::string& path) {
  rocksdb::DBOptions opts;
  opts.info_log = std::make_shared<SilentLogger>();
  std::vector<std::string> families;
  if (auto st = rocksdb::DB::ListColumnFamilies(opts, path, &families); !st.ok()) {
    return Fail(Errc::kUnsupportedFormat,
                fmt::format("{} is not a readable Cairn store: {}", path, st.ToString()));
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : families) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (auto st = rocksdb::DB::OpenForReadOnly(opts, path, descriptors, &handles, &raw); !st.ok()) {
    return Fail(Errc::kUnsupportedFormat,
                fmt::format("{} is not a readable Cairn store: {}", path, st.ToString()));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  auto st = db->Get(rocksdb::ReadOptions(), handles[0], keys::kFormat, &value);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  if (st.IsNotFound()) {
    return Fail(Errc::kUnsupportedFormat,
                fmt::format("{} holds a RocksDB database with no Cairn format record; refusing "
                            "to open it",
                            path));
  }
  if (!st.ok()) return tl::unexpected(FromRocks(st, "reading the format record"));
  pb::StoreFormat format;
  if (!format.ParseFromString(value)) {
    return Fail(Errc::kUnsupportedFormat,
                fmt::format("{} has an unreadable format record; refusing to open it", path));
  }
  if (format.version() != kFormatVersion) {
    return Fail(Errc::kUnsupportedFormat,
                fmt::format("{} holds on-disk format version {} (written by {}); this build of "
                            "Cairn reads format version {} only, so it leaves the directory "
                            "untouched",
                            path, format.version(),
                            format.created_by().empty() ? "an unknown writer" : format.created_by(),
                            kFormatVersion));
  }
  return {};
}

// First start is made atomic with this marker: it is written (and synced) into an empty
// directory before anything else, and removed (and the removal synced) only once the format
// record is durable. A directory that holds it is the remains of a first start that was killed
// before it finished; everything in it was made by that start, nothing was acknowledged, and it
// is cleared and started over. Without it, a kill between RocksDB creating CURRENT and the format
// record would leave a directory that every later start refuses as foreign.
constexpr const char* kFirstStartMarker = "CAIRN_FIRST_START";

// What RocksDB or Cairn may have created in a data directory.
bool IsStoreFileName(std::string_view name) {
  return name == "CURRENT" || name == "IDENTITY" || name == "LOCK" || name.starts_with("LOG") ||
         name.starts_with("MANIFEST-") || name.starts_with("OPTIONS-") || name.ends_with(".log") ||
         name.ends_with(".sst") || name.ends_with(".blob") || name.ends_with(".dbtmp") ||
         name == kFirstStartMarker || PreparedWalFileSystem::IsSpareName(name);
}

Status SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return Fail(Errc::kIOError, fmt::format("cannot sync {}: {}", path, std::strerror(err)));
  }
  ::close(fd);
  return {};
}

Status WriteFirstStartMarker(const std::string& path) {
  const std::string marker = (fs::path(path) / kFirstStartMarker).string();
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return Fail(Errc::kIOError, fmt::format("cannot create {}: {}", marker, std::strerror(err)));
  }
  ::close(fd);
  return SyncDirectory(path);
}

Status RemoveFirstStartMarker(const std::string& path) {
  const std::string marker = (fs::path(path) / kFirstStartMarker).string();
  if (::unlink(marker.c_str()) != 0) {
    return Fail(Errc::kIOError, fmt::format("cannot remove {}: {}", marker, std::strerror(errno)));
  }
  // Durably gone before anything can be acknowledged: a marker that came back after a crash
  // would have the store cleared.
  return SyncDirectory(path);
}

// Clears what an unfinished first start left, the marker excepted.
Status ClearUnfinishedFirstStart(const std::string& path) {
  std::error_code ec;
  std::vector<fs::path> remove;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const auto name = entry.path().filename().string();
    if (name == "lost+found" || name == kFirstStartMarker) continue;
    if (!IsStoreFileName(name) || !entry.is_regular_file()) {
      return Fail(Errc::kUnsupportedFormat,
                  fmt::format("{} holds an unfinished first start of a Cairn store and also {}, "
                              "which no store makes; refusing to clear it",
                              path, name));
    }
    remove.push_back(entry.path());
  }
  if (ec) return Fail(Errc::kIOError, fmt::format("cannot list {}: {}", path, ec.message()));
  for (const auto& p : remove) {
    if (!fs::remove(p, ec) || ec) {
      return Fail(Errc::kIOError, fmt::format("cannot remove {}: {}", p.string(), ec.message()));
    }
  }
  return SyncDirectory(path);
}

// A data directory is new if it is missing or empty (a fresh volume's lost+found aside).
Result<bool> IsNewDirectory(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::create_directories(path, ec);
    if (ec) {
      return Fail(Errc::kIOError, fmt::format("cannot create {}: {}", path, ec.message()));
    }
    return true;
  }
  if (fs::exists(fs::path(path) / "CURRENT", ec)) return false;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const auto name = entry.path().filename().string();
    // A spare WAL file is made before RocksDB creates its first files (wal_files.h).
    if (name != "lost+found" && !PreparedWalFileSystem::IsSpareName(name)) {
      return Fail(Errc::kUnsupportedFormat,
                  fmt::format("{} is not empty and holds no Cairn store (found {}); refusing to "
                              "write into it",
                              path, entry.path().filename().string()));
    }
  }
  if (ec) return Fail(Errc::kIOError, fmt::format("cannot list {}: {}", path, ec.message()));
  return true;
}

}  // namespace

Store::Store() : engine_(std::make_unique<Engine>()) {}

Store::~Store() {
  if (auto st = Close(); !st) spdlog::error("storage: close failed: {}", st.error().ToString());
}

const StoreOptions& Store::options() const { return engine_->options; }
Engine& Store::engine() { return *engine_; }

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  if (options.path.empty()) return Fail(Errc::kInvalidArgument, "the data path is empty");
  if (options.sync.mode == SyncMode::kInterval && options.sync.interval.count() <= 0) {
    return Fail(Errc::kInvalidArgument, "sync interval must be at least 1 ms");
  }
  Result<bool> is_new = false;
  std::error_code exists_ec;
  if (fs::exists(fs::path(options.path) / kFirstStartMarker, exists_ec)) {
    spdlog::warn(
        "storage: {} holds the remains of a first start that did not finish; starting "
        "it over",
        options.path);
    if (auto st = ClearUnfinishedFirstStart(options.path); !st) return tl::unexpected(st.error());
    is_new = true;
  } else {
    is_new = IsNewDirectory(options.path);
    if (!is_new) return tl::unexpected(is_new.error());
    if (*is_new) {
      if (auto st = WriteFirstStartMarker(options.path); !st) return tl::unexpected(st.error());
    } else if (auto st = CheckFormat(options.path); !st) {
      return tl::unexpected(st.error());
    }
  }

  std::unique_ptr<Store> store(new Store());
  store->engine_->options = options;

  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  auto table = [&](size_t block_size) {
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = cache;
    t.block_size = block_size;
    t.cache_index_and_filter_blocks = true;
    t.pin_l0_filter_and_index_blocks_in_cache = true;
    return std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(t));
  };

  rocksdb::DBOptions db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  const RocksDbTuning& tuning = options.rocksdb;
  db_opts.max_background_jobs = tuning.max_background_jobs;
  db_opts.bytes_per_sync = tuning.bytes_per_sync;
  if (options.background_write_bytes_per_sec > 0) {
    db_opts.rate_limiter.reset(rocksdb::NewGenericRateLimiter(
        static_cast<int64_t>(options.background_write_bytes_per_sec)));
  }
  // A torn tail of the WAL (a crash mid-write) is cut off; what precedes it, every acknowledged
  // group, is recovered.
  db_opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_opts.max_total_wal_size = tuning.max_total_wal_size;
  db_opts.info_log = std::make_shared<SpdlogLogger>();
  if (options.wal_spare_bytes > 0) {
    store->wal_fs_ = std::make_shared<PreparedWalFileSystem>(options.path, options.wal_spare_bytes);
    store->env_ = rocksdb::NewCompositeEnv(store->wal_fs_);
    db_opts.env = store->env_.get();
  }

  rocksdb::ColumnFamilyOptions meta_opts;
  meta_opts.write_buffer_size = tuning.meta_write_buffer_bytes;
  meta_opts.table_factory = table(tuning.meta_block_bytes);
  rocksdb::ColumnFamilyOptions cursor_opts = meta_opts;
  rocksdb::ColumnFamilyOptions log_opts;
  // Batch payloads are compressed by their own codec; compressing blocks again only costs CPU.
  log_opts.compression = rocksdb::kNoCompression;
  log_opts.write_buffer_size = tuning.log_write_buffer_bytes;
  log_opts.max_write_buffer_number = tuning.log_max_write_buffers;
  log_opts.target_file_size_base = tuning.log_target_file_bytes;
  log_opts.max_bytes_for_level_base = tuning.log_max_bytes_for_level_base;
  log_opts.table_factory = table(tuning.log_block_bytes);

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, meta_opts},
      {kLogFamily, log_opts},
      {kCursorFamily, cursor_opts},
  };
  rocksdb::DB* raw = nullptr;
  if (auto st = rocksdb::DB::Open(db_opts, options.path, families, &store->handles_, &raw);
      !st.ok()) {
    return tl::unexpected(FromRocks(st, fmt::format("opening {}", options.path)));
  }
  store->db_.reset(raw);
  Engine& e = *store->engine_;
  e.db = raw;
  e.meta = store->handles_[0];
  e.log = store->handles_[1];
  e.cursors = store->handles_[2];

  if (*is_new) {
    pb::StoreFormat format;
    format.set_version(kFormatVersion);
    format.set_created_by(fmt::format("cairn {}", CAIRN_VERSION));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto st = raw->Put(wo, e.meta, keys::kFormat, format.SerializeAsString()); !st.ok()) {
      return tl::unexpected(FromRocks(st, "writing the format record"));
    }
    if (auto st = RemoveFirstStartMarker(options.path); !st) return tl::unexpected(st.error());
  }
  if (auto st = store->Recover(); !st) return tl::unexpected(st.error());

  store->committer_ = std::make_unique<GroupCommitter>(raw, options.sync);
  e.committer = store->committer_.get();
  store->maintainer_ = std::thread([s = store.get()] { s->Maintain(); });
  spdlog::info("storage: opened path={} topics={} sync={}", options.path, store->topics_.size(),
               options.sync.ToString());
  return store;
}

Status Store::Recover() {
  Engine& e = *engine_;
  rocksdb::ReadOptions ro;
  std::string value;
  if (auto st = db_->Get(ro, e.meta, keys::kNextId, &value); st.ok() && value.size() == 8) {
    next_id_ = GetFixed64BE(value.data());
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, e.meta));
  for (it->Seek("T"); it->Valid() && it->key().starts_with("T"); it->Next()) {
    pb::TopicMeta meta;
    if (!meta.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Fail(Errc::kCorruption,
                  fmt::format("topic record {} does not parse", it->key().ToString(true)));
    }
    pb::LogState log_state;
    if (auto st = db_->Get(ro, e.meta, keys::LogState(meta.id()), &value);
        !st.ok() || !log_state.ParseFromString(value)) {
      return Fail(Errc::kCorruption,
                  fmt::format("topic {} has no readable log state", meta.name()));
    }
    TopicLog::Extent rec{log_state.start_offset(), log_state.next_offset(), log_state.bytes(), 0,
                         log_state.last_ts()};

    // The log state is written atomically with every batch, so the last batch must end exactly
    // where it says the log ends, and the first must begin at its start.
    const std::string lower = keys::Batch(meta.id(), 0);
    const std::string upper = keys::Batch(meta.id() + 1, 0);
    rocksdb::Slice lo(lower), hi(upper);
    rocksdb::ReadOptions bounded;
    bounded.iterate_lower_bound = &lo;
    bounded.iterate_upper_bound = &hi;
    std::unique_ptr<rocksdb::Iterator> log(db_->NewIterator(bounded, e.log));
    log->SeekForPrev(keys::Batch(meta.id(), UINT64_MAX));
    uint64_t log_end = rec.start_offset;
    if (log->Valid()) {
      auto h = ParseBatchHeader(log->value().ToStringView());
      if (h) {
        log_end = h->base_offset + h->count;
      } else {
        // A damaged batch is skipped by the channels that reach it (TopicLog::Read); refusing to
        // open would stop every topic for one unreadable batch.
        spdlog::error(
            "storage: topic={} the last batch is unreadable ({}); trusting the log "
            "state, which ends at {}",
            meta.name(), h.error().message, rec.next_offset);
        log_end = rec.next_offset;
      }
    } else if (!log->status().ok()) {
      spdlog::error(
          "storage: topic={} the end of the log is unreadable ({}); trusting the log "
          "state, which ends at {}",
          meta.name(), log->status().ToString(), rec.next_offset);
      log_end = rec.next_offset;
    }
    if (log_end != rec.next_offset &&
        !(log_end <= rec.start_offset && rec.start_offset == rec.next_offset)) {
      return Fail(Errc::kCorruption,
                  fmt::format("topic {}: log state says the log ends at {}, the last batch ends "
                              "at {}",
                              meta.name(), rec.next_offset, log_end));
    }
    if (rec.start_offset < rec.next_offset) {
      log->Seek(keys::Batch(meta.id(), rec.start_offset));
      Result<BatchHeader> h = Fail(Errc::kCorruption, "no batch there");
      if (log->Valid() && keys::PairLow(log->key().ToStringView()) == rec.start_offset) {
        h = ParseBatchHeader(log->value().ToStringView());
      }
      if (h) {
        rec.first_ts = h->first_ts;
      } else {
        // As above: readers skip what cannot be read; the first publish time is then unknown.
        spdlog::error("storage: topic={} the batch at its start offset {} is unreadable: {}",
                      meta.name(), rec.start_offset,
                      log->status().ok() ? h.error().message : log->status().ToString());
      }
    }
    auto topic =
        std::make_shared<TopicLog>(&e, meta.id(), meta.name(), FromProto(meta.settings()), rec);
    next_id_ = std::max(next_id_, meta.id() + 1);

    std::unique_ptr<rocksdb::Iterator> ch(db_->NewIterator(ro, e.meta));
    const std::string prefix = keys::ChannelPrefix(meta.id());
    for (ch->Seek(prefix); ch->Valid() && ch->key().starts_with(prefix); ch->Next()) {
      pb::ChannelMeta cm;
      if (!cm.ParseFromArray(ch->value().data(), static_cast<int>(ch->value().size()))) {
        return Fail(Errc::kCorruption,
                    fmt::format("topic {}: a channel record does not parse", meta.name()));
      }
      pb::CursorState cs;
      if (auto st = db_->Get(ro, e.cursors, keys::Cursor(meta.id(), cm.id()), &value);
          !st.ok() || !cs.ParseFromString(value)) {
        return Fail(Errc::kCorruption,
                    fmt::format("channel {}/{} has no readable cursor", meta.name(), cm.name()));
      }
      auto acks = AckSet::Decode(cs.ack_floor(), {cs.finished().begin(), cs.finished().end()});
      if (!acks) return tl::unexpected(acks.error());
      auto cursor = std::make_shared<ChannelCursor>(meta.id(), cm.id(), cm.name(), std::move(*acks),
                                                    cs.skipped_by_retention());
      cursor->SkipTo(rec.start_offset);
      // A cursor is never ahead of the log (it could only be if the log lost acknowledged data,
      // which the checks above rule out; kept as a guard so a channel never skips new messages).
      if (cursor->floor() > rec.next_offset) {
        spdlog::warn("storage: topic={} channel={} cursor {} is past the log's end {}; moved back",
                     meta.name(), cm.name(), cursor->floor(), rec.next_offset);
        cursor->Seek(rec.next_offset);
      }
      topic->AddChannel(std::move(cursor));
      next_id_ = std::max(next_id_, cm.id() + 1);
    }
    if (!ch->status().ok()) return tl::unexpected(FromRocks(ch->status(), "reading channels"));
    topics_[meta.name()] = std::move(topic);
  }
  if (!it->status().ok()) return tl::unexpected(FromRocks(it->status(), "reading topics"));
  return {};
}

Status Store::Close() {
  {
    std::lock_guard lock(maintain_mu_);
    if (closed_) return {};
    closed_ = true;
    stopping_ = true;
    maintain_cv_.notify_all();
  }
  if (maintainer_.joinable()) maintainer_.join();
  Status result;
  bool healthy = true;
  if (committer_) {
    result = FlushCursors();
    committer_->Stop();
    healthy = committer_->healthy();
  }
  if (db_) {
    // After a failed write the WAL must not be synced; everything acknowledged already was.
    if (auto st = healthy ? db_->SyncWAL() : rocksdb::Status::OK(); !st.ok() && result) {
      result = tl::unexpected(FromRocks(st, "syncing the WAL on close"));
    }
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    if (auto st = db_->Close(); !st.ok() && result) {
      result = tl::unexpected(FromRocks(st, "closing RocksDB"));
    }
    db_.reset();
  }
  if (wal_fs_) wal_fs_->Stop();
  return result;
}

Result<uint64_t> Store::AllocateId(rocksdb::WriteBatch& wb) {
  const uint64_t id = next_id_++;
  std::string v;
  PutFixed64BE(&v, next_id_);
  if (auto st = wb.Put(engine_->meta, keys::kNextId, v); !st.ok()) {
    return tl::unexpected(FromRocks(st, "allocating an id"));
  }
  return id;
}

Status Store::CommitMeta(std::function<Status(rocksdb::WriteBatch&)> prepare) {
  return RunOp(*committer_, std::move(prepare), /*durable=*/true);
}

Result<std::shared_ptr<TopicLog>> Store::CreateTopic(std::string_view name,
                                                     const TopicSettings& settings) {
  if (auto st = CheckName("topic", name); !st) return tl::unexpected(st.error());
  std::lock_guard lock(mu_);
  if (auto it = topics_.find(name); it != topics_.end()) return it->second;
  const uint64_t saved_next_id = next_id_;
  uint64_t id = 0;
  auto st = CommitMeta([&](rocksdb::WriteBatch& wb) -> Status {
    auto allocated = AllocateId(wb);
    if (!allocated) return tl::unexpected(allocated.error());
    id = *allocated;
    pb::TopicMeta meta;
    meta.set_id(id);
    meta.set_name(std::string(name));
    *meta.mutable_settings() = ToProto(settings);
    meta.set_created_ns(WallNowNs());
    pb::LogState state;
    wb.Put(engine_->meta, keys::Topic(name), meta.SerializeAsString());
    wb.Put(engine_->meta, keys::LogState(id), state.SerializeAsString());
    return {};
  });
  if (!st) {
    next_id_ = saved_next_id;
    return tl::unexpected(st.error());
  }
  auto topic = std::make_shared<TopicLog>(engine_.get(), id, std::string(name), settings,
                                          TopicLog::Extent{});
  topics_.emplace(std::string(name), topic);
  return topic;
}

std::shared_ptr<TopicLog> Store::FindTopic(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<TopicLog>> Store::Topics() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<TopicLog>> out;
  for (const auto& [name, topic] : topics_) out.push_back(topic);
  return out;
}

Status Store::ConfigureTopic(std::string_view name, const TopicSettings& settings) {
  // Under the lock that create and delete take: a configure racing a delete must not write the
  // topic's record back after the delete removed it (a store whose topic record has no log state
  // does not open).
  std::lock_guard lock(mu_);
  auto it = topics_.find(name);
  if (it == topics_.end()) return Fail(Errc::kNotFound, fmt::format("no topic {}", name));
  auto topic = it->second;
  std::string value;
  if (auto st = db_->Get(rocksdb::ReadOptions(), engine_->meta, keys::Topic(name), &value);
      !st.ok()) {
    return tl::unexpected(FromRocks(st, "reading the topic record"));
  }
  pb::TopicMeta meta;
  if (!meta.ParseFromString(value) || meta.id() != topic->id() || meta.name() != name) {
    return Fail(Errc::kCorruption,
                fmt::format("topic {}: its record does not parse; not rewriting it", name));
  }
  *meta.mutable_settings() = ToProto(settings);
  auto st = CommitMeta([&](rocksdb::WriteBatch& wb) -> Status {
    wb.Put(engine_->meta, keys::Topic(name), meta.SerializeAsString());
    return {};
  });
  if (st) topic->SetSettings(settings);
  return st;
}

Status Store::DeleteTopic(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = topics_.find(name);
  if (it == topics_.end()) return Fail(Errc::kNotFound, fmt::format("no topic {}", name));
  auto topic = it->second;
  const uint64_t id = topic->id();
  auto st = CommitMeta([&](rocksdb::WriteBatch& wb) -> Status {
    // Appends queued behind this one fail; the topic's state record is not written again.
    topic->deleted_ = true;
    wb.DeleteRange(engine_->log, keys::Batch(id, 0), keys::Batch(id + 1, 0));
    wb.DeleteRange(engine_->cursors, keys::Cursor(id, 0), keys::Cursor(id + 1, 0));
    for (const auto& cursor : topic->Channels()) {
      wb.Delete(engine_->meta, keys::Channel(id, cursor->name()));
    }
    wb.Delete(engine_->meta, keys::LogState(id));
    wb.Delete(engine_->meta, keys::Topic(name));
    return {};
  });
  if (!st) {
    topic->deleted_ = false;
    return st;
  }
  topics_.erase(it);
  return {};
}

Result<std::shared_ptr<ChannelCursor>> Store::CreateChannel(std::string_view topic_name,
                                                            std::string_view channel,
                                                            std::optional<uint64_t> start) {
  if (auto st = CheckName("channel", channel); !st) return tl::unexpected(st.error());
  std::lock_guard lock(mu_);
  auto it = topics_.find(topic_name);
  if (it == topics_.end()) return Fail(Errc::kNotFound, fmt::format("no topic {}", topic_name));
  auto topic = it->second;
  if (auto existing = topic->FindChannel(channel)) return existing;
  const uint64_t log_start = topic->start_offset(), log_end = topic->next_offset();
  const uint64_t floor = std::clamp(start.value_or(log_end), log_start, log_end);
  const uint64_t saved_next_id = next_id_;
  std::shared_ptr<ChannelCursor> cursor;
  auto st = CommitMeta([&](rocksdb::WriteBatch& wb) -> Status {
    auto id = AllocateId(wb);
    if (!id) return tl::unexpected(id.error());
    cursor =
        std::make_shared<ChannelCursor>(topic->id(), *id, std::string(channel), AckSet(floor), 0);
    pb::ChannelMeta meta;
    meta.set_id(*id);
    meta.set_name(std::string(channel));
    meta.set_topic_id(topic->id());
    meta.set_created_ns(WallNowNs());
    pb::CursorState state;
    cursor->Snapshot(&state);
    wb.Put(engine_->meta, keys::Channel(topic->id(), channel), meta.SerializeAsString());
    wb.Put(engine_->cursors, keys::Cursor(topic->id(), *id), state.SerializeAsString());
    return {};
  });
  if (!st) {
    next_id_ = saved_next_id;
    return tl::unexpected(st.error());
  }
  topic->AddChannel(cursor);
  return cursor;
}

Status Store::DeleteChannel(std::string_view topic_name, std::string_view channel) {
  auto topic = FindTopic(topic_name);
  if (!topic) return Fail(Errc::kNotFound, fmt::format("no topic {}", topic_name));
  auto cursor = topic->FindChannel(channel);
  if (!cursor) {
    return Fail(Errc::kNotFound, fmt::format("no channel {} on topic {}", channel, topic_name));
  }
  // Out of the topic first, so no cursor flush prepared after this delete writes it back.
  topic->RemoveChannel(channel);
  auto st = CommitMeta([&](rocksdb::WriteBatch& wb) -> Status {
    wb.Delete(engine_->meta, keys::Channel(topic->id(), channel));
    wb.Delete(engine_->cursors, keys::Cursor(topic->id(), cursor->channel_id()));
    return {};
  });
  if (!st) topic->AddChannel(cursor);
  return st;
}

Status Store::FlushCursors() {
  auto topics = Topics();
  auto flushed = std::make_shared<std::vector<std::shared_ptr<ChannelCursor>>>();
  auto st = RunOp(
      *committer_,
      [this, topics, flushed](rocksdb::WriteBatch& wb) -> Status {
        // Collected on the committer thread, so this flush is ordered with channel deletes.
        for (const auto& topic : topics) {
          if (topic->deleted()) continue;
          for (const auto& cursor : topic->Channels()) {
            pb::CursorState state;
            if (!cursor->TakeDirty(&state)) continue;
            wb.Put(engine_->cursors, keys::Cursor(topic->id(), cursor->channel_id()),
                   state.SerializeAsString());
            flushed->push_back(cursor);
          }
        }
        return {};
      },
      /*durable=*/false);
  if (!st) {
    for (const auto& cursor : *flushed) cursor->MarkDirty();
  } else {
    cursor_flushes_.fetch_add(1, std::memory_order_relaxed);
  }
  return st;
}

Result<RetentionReport> Store::EnforceRetention(int64_t now_ns) {
  RetentionReport report;
  for (const auto& topic : Topics()) {
    const LogInfo info = topic->Info();
    const RetentionPolicy& policy = info.retention;
    if ((policy.age.count() == 0 && policy.bytes == 0) || info.start_offset == info.next_offset) {
      continue;
    }
    const int64_t cutoff =
        policy.age.count() == 0
            ? INT64_MIN
            : now_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(policy.age).count();
    const std::string lower = keys::Batch(info.id, info.start_offset);
    const std::string upper = keys::Batch(info.id, info.next_offset);
    rocksdb::Slice lo(lower), hi(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo;
    ro.iterate_upper_bound = &hi;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, engine_->log));
    uint64_t cut = info.start_offset, removed = 0;
    int64_t first_ts = 0;
    // Bytes of damaged batches just before the current one: their age is unknown, so they go
    // with the first readable batch after them that is due.
    uint64_t damaged = 0;
    for (it->Seek(lower); it->Valid(); it->Next()) {
      auto h = ParseBatchHeader(it->value().ToStringView());
      if (!h) {
        damaged += it->value().size();
        continue;
      }
      const bool expired = h->last_ts < cutoff;
      const bool over = policy.bytes != 0 && info.bytes - removed > policy.bytes;
      if (!expired && !over) {
        first_ts = h->first_ts;
        break;
      }
      cut = h->base_offset + h->count;
      removed += damaged + it->value().size();
      damaged = 0;
    }
    if (!it->status().ok()) {
      // A block RocksDB cannot read: trim what was scanned before it, and go on with the other
      // topics.
      spdlog::warn("storage: topic={} retention stopped at an unreadable part of the log: {}",
                   info.name, it->status().ToString());
    }
    it.reset();
    if (cut == info.start_offset) continue;
    if (auto st = topic->TrimTo(cut, removed, first_ts); !st) {
      if (st.error().code == Errc::kNotFound) continue;  // deleted meanwhile
      return tl::unexpected(st.error());
    }
    // Whole SST files below the cut go at once; the rest is reclaimed by compaction.
    const std::string begin = keys::Batch(info.id, 0), end = keys::Batch(info.id, cut);
    rocksdb::Slice b(begin), e(end);
    rocksdb::DeleteFilesInRange(db_.get(), engine_->log, &b, &e, /*include_end=*/false);
    ++report.topics_trimmed;
    report.messages_trimmed += cut - info.start_offset;
    report.bytes_trimmed += removed;
    trims_.fetch_add(1);
    trimmed_messages_.fetch_add(cut - info.start_offset);
  }
  return report;
}

void Store::Maintain() {
  using Clock = std::chrono::steady_clock;
  const auto& o = engine_->options;
  auto next_flush = Clock::now() + o.cursor_flush_interval;
  auto next_retention = Clock::now() + o.retention_interval;
  bool flush_failing = false;  // log a failure streak once, not every interval
  std::unique_lock lock(maintain_mu_);
  while (!stopping_) {
    maintain_cv_.wait_until(lock, std::min(next_flush, next_retention));
    if (stopping_) break;
    lock.unlock();
    const auto now = Clock::now();
    if (now >= next_flush) {
      auto st = FlushCursors();
      if (!st && !flush_failing) {
        spdlog::warn("storage: cursor flush failed, retrying: {}", st.error().ToString());
      } else if (st && flush_failing) {
        spdlog::info("storage: cursor flushes succeed again");
      }
      flush_failing = !st;
      next_flush = now + o.cursor_flush_interval;
    }
    if (now >= next_retention) {
      if (auto r = EnforceRetention(WallNowNs()); !r) {
        spdlog::warn("storage: retention failed: {}", r.error().ToString());
      }
      next_retention = now + o.retention_interval;
    }
    lock.lock();
  }
}

bool Store::healthy() const { return committer_ && committer_->healthy(); }

StoreStats Store::stats() const {
  StoreStats s;
  if (committer_) s.commits = committer_->stats();
  s.tail_reads = engine_->tail_reads.load();
  s.rocksdb_reads = engine_->rocksdb_reads.load();
  s.unreadable_ranges = engine_->unreadable_ranges.load();
  s.retention_trims = trims_.load();
  s.cursor_flushes = cursor_flushes_.load();
  s.retention_trimmed_messages = trimmed_messages_.load();
  if (wal_fs_) {
    const auto w = wal_fs_->stats();
    s.wals_on_spares = w.wals_on_spares;
    s.plain_wals = w.plain_wals;
    s.wal_spare_failures = w.spare_failures;
  }
  if (struct statvfs vfs{}; ::statvfs(options().path.c_str(), &vfs) == 0) {
    s.volume_size_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    s.volume_available_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  return s;
}

}  // namespace cairn::storage
