// storage_bench: the topic log's throughput, on a real RocksDB in $CAIRN_BENCH_DIR (default: a
// fresh directory under $TMPDIR, on the disk being measured).
//
//   BM_Append/<msg bytes>/<batch>/<sync>/threads:N   appends of `batch` messages from N threads;
//       sync 0 = always, 1 = interval:10, 2 = never. Counters: items_per_second (messages),
//       bytes_per_second (bodies), msgs_per_sync (group commit at work).
//   BM_ReadTail / BM_ReadCold     reading 1,000,000 100-byte messages from memory / after reopen
//   BM_OffsetForTime              a seek by publish time in a cold 1,000,000-message log
//   BM_EncodeBatch/<codec>        encoding one batch of 100 log records on the caller's thread
//   BM_StoredRatio/<codec>        bytes on disk (SST files after compaction, keys and indexes
//       included) per raw byte of sample log records (bench/sample_traffic.h, the default seed,
//       as `cairn-sample logs` prints them), in batches of 100
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/sample_traffic.h"
#include "src/base/clock.h"
#include "storage/engine.h"
#include "storage/group_commit.h"
#include "storage/record_batch.h"
#include "storage/store.h"

namespace cairn::storage {
namespace {

namespace fs = std::filesystem;

std::string FreshDir() {
  const char* base = std::getenv("CAIRN_BENCH_DIR");
  fs::path root = base ? fs::path(base) : fs::temp_directory_path();
  static std::atomic<int> n{0};
  fs::path dir = root / ("cairn-bench-" + std::to_string(getpid()) + "-" + std::to_string(n++));
  fs::remove_all(dir);
  return dir.string();
}

SyncPolicy PolicyOf(int64_t code) {
  switch (code) {
    case 0:
      return *SyncPolicy::Parse("always");
    case 1:
      return *SyncPolicy::Parse("interval:10");
    default:
      return *SyncPolicy::Parse("never");
  }
}

// Shared by the threads of one BM_Append run; set up and torn down by thread 0.
struct AppendFixture {
  std::string dir;
  std::unique_ptr<Store> store;
  std::shared_ptr<TopicLog> topic;
  CommitStats before;
};
AppendFixture g_append;

void BM_Append(benchmark::State& state) {
  const size_t msg_size = state.range(0);
  const size_t batch = state.range(1);
  if (state.thread_index() == 0) {
    g_append.dir = FreshDir();
    StoreOptions o;
    o.path = g_append.dir;
    o.sync = PolicyOf(state.range(2));
    o.retention_interval = std::chrono::hours(1);
    g_append.store = std::move(*Store::Open(o));
    g_append.topic = *g_append.store->CreateTopic("bench");
    g_append.before = g_append.store->stats().commits;
  }
  // Bodies vary a little, as real ones do, so compression is not flattered.
  std::vector<std::string> bodies(batch);
  for (size_t i = 0; i < batch; ++i) {
    bodies[i].resize(msg_size);
    for (size_t j = 0; j < msg_size; ++j) {
      bodies[i][j] = static_cast<char>('a' + (i * 7 + j * 13 + state.thread_index()) % 26);
    }
  }
  std::vector<MessageIn> msgs(batch);
  for (auto _ : state) {
    const int64_t now = WallNowNs();
    for (size_t i = 0; i < batch; ++i) msgs[i] = {bodies[i], now, 0};
    auto r = g_append.topic->Append(msgs);
    if (!r) {
      state.SkipWithError(r.error().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * msg_size);
  if (state.thread_index() == 0) {
    const auto after = g_append.store->stats().commits;
    const double syncs = static_cast<double>(after.syncs - g_append.before.syncs);
    const double messages = static_cast<double>(g_append.topic->next_offset());
    state.counters["msgs_per_sync"] = syncs > 0 ? messages / syncs : 0;
    state.counters["appends_per_group"] =
        static_cast<double>(after.ops - g_append.before.ops) /
        std::max<double>(1, static_cast<double>(after.groups - g_append.before.groups));
    g_append.topic.reset();
    g_append.store.reset();
    fs::remove_all(g_append.dir);
  }
}

void AppendArgs(benchmark::internal::Benchmark* b) {
  for (int64_t size : {100, 1024}) {
    for (int64_t batch : {1, 100, 1000}) {
      for (int64_t sync : {0, 1, 2}) b->Args({size, batch, sync});
    }
  }
  b->ArgNames({"bytes", "batch", "sync"});
}
BENCHMARK(BM_Append)
    ->Apply(AppendArgs)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime()
    ->MinTime(0.5);

// N logical appenders driven by one thread, as the broker's event loop drives its connections:
// each appender has one append in flight and submits the next when the last completes.
//   BM_AppendAsync/<msg bytes>/<batch>/appenders:N (sync always)
void BM_AppendAsync(benchmark::State& state) {
  const size_t msg_size = state.range(0), batch = state.range(1);
  const int appenders = static_cast<int>(state.range(2));
  const std::string dir = FreshDir();
  StoreOptions o;
  o.path = dir;
  o.retention_interval = std::chrono::hours(1);
  auto store = std::move(*Store::Open(o));
  auto topic = *store->CreateTopic("bench");
  const auto before = store->stats().commits;
  std::string body(msg_size, 'a');
  std::vector<MessageIn> msgs(batch);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> ready;  // appenders whose last append completed
  std::atomic<bool> failed{false};
  auto submit = [&](int id) {
    const int64_t now = WallNowNs();
    for (auto& m : msgs) m = {body, now, 0};
    topic->AppendAsync(msgs, [&, id](Result<AppendResult> r) {
      if (!r) failed = true;
      bool wake;
      {
        std::lock_guard lock(mu);
        ready.push_back(id);
        wake = ready.size() == 1 || static_cast<int>(ready.size()) == appenders;
      }
      // The loop below waits until `ready` is not empty (at the end, until it holds every
      // appender), so only those completions need to wake it, and only once their group is
      // complete, as the broker posts a group's completions to its event loop.
      if (wake) AfterGroupCompleted([&] { cv.notify_one(); });
    });
  };
  for (int i = 0; i < appenders; ++i) submit(i);
  uint64_t done = 0;
  for (auto _ : state) {
    int id;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !ready.empty(); });
      id = ready.back();
      ready.pop_back();
    }
    ++done;
    submit(id);
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return static_cast<int>(ready.size()) == appenders; });
  }
  if (failed) state.SkipWithError("an append failed");
  const auto after = store->stats().commits;
  state.SetItemsProcessed(done * batch);
  state.SetBytesProcessed(done * batch * msg_size);
  state.counters["msgs_per_sync"] =
      static_cast<double>(topic->next_offset()) / std::max<double>(1, after.syncs - before.syncs);
  // The committer's write and fsync, against the whole cycle between two groups: the rest is
  // what the appenders and the committer spend around each fsync.
  state.counters["sync_us"] = 1e6 * (after.sync_seconds.sum - before.sync_seconds.sum) /
                              std::max<double>(1, after.syncs - before.syncs);
  topic.reset();
  store.reset();
  fs::remove_all(dir);
}
BENCHMARK(BM_AppendAsync)
    ->ArgNames({"bytes", "batch", "appenders"})
    ->Args({100, 1, 16})
    ->Args({100, 1, 64})
    ->Args({100, 100, 4})
    ->Args({100, 100, 16})
    ->UseRealTime()
    ->MinTime(1);

// A store with 1,000,000 100-byte messages in batches of 100.
constexpr uint64_t kReadMessages = 1'000'000;
struct ReadFixture {
  std::string dir;
  std::unique_ptr<Store> store;
  std::shared_ptr<TopicLog> topic;
  int64_t first_ts = 0, last_ts = 0;
};

ReadFixture MakeReadFixture(size_t tail_cache_bytes) {
  ReadFixture f;
  f.dir = FreshDir();
  StoreOptions o;
  o.path = f.dir;
  o.sync = *SyncPolicy::Parse("never");
  o.tail_cache_bytes_per_topic = tail_cache_bytes;
  o.retention_interval = std::chrono::hours(1);
  f.store = std::move(*Store::Open(o));
  f.topic = *f.store->CreateTopic("bench");
  std::string body(100, 'r');
  std::vector<MessageIn> msgs(100);
  for (uint64_t i = 0; i < kReadMessages / 100; ++i) {
    const int64_t now = WallNowNs();
    for (auto& m : msgs) m = {body, now, 0};
    (void)f.topic->Append(msgs);
  }
  f.first_ts = f.topic->Info().first_ts;
  f.last_ts = f.topic->Info().last_ts;
  return f;
}

void ReopenCold(ReadFixture& f) {
  StoreOptions o = f.store->options();
  f.topic.reset();
  f.store.reset();
  f.store = std::move(*Store::Open(o));
  f.topic = f.store->FindTopic("bench");
}

// Reads the whole log once, 1000 messages a call; returns how many it read.
uint64_t ReadAllOnce(ReadFixture& f) {
  uint64_t items = 0;
  for (uint64_t from = 0; from < kReadMessages;) {
    auto r = f.topic->Read(from, 1000, 1 << 20);
    if (!r || r->messages.empty()) break;
    items += r->messages.size();
    from = r->next_offset;
  }
  return items;
}

void BM_ReadTail(benchmark::State& state) {
  auto f = MakeReadFixture(512u << 20);  // the whole log fits the tail cache
  const auto before = f.store->stats().rocksdb_reads;
  uint64_t items = 0;
  for (auto _ : state) items += ReadAllOnce(f);
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * 100);
  state.counters["rocksdb_reads"] = static_cast<double>(f.store->stats().rocksdb_reads - before);
  f.topic.reset();
  f.store.reset();
  fs::remove_all(f.dir);
}
BENCHMARK(BM_ReadTail)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1);

void BM_ReadCold(benchmark::State& state) {
  auto f = MakeReadFixture(16u << 20);
  uint64_t items = 0;
  for (auto _ : state) {
    state.PauseTiming();
    ReopenCold(f);  // empty tail cache and block cache
    state.ResumeTiming();
    items += ReadAllOnce(f);
  }
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * 100);
  f.topic.reset();
  f.store.reset();
  fs::remove_all(f.dir);
}
BENCHMARK(BM_ReadCold)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1);

void BM_OffsetForTime(benchmark::State& state) {
  auto f = MakeReadFixture(0);
  ReopenCold(f);
  uint64_t i = 0;
  for (auto _ : state) {
    const int64_t ts =
        f.first_ts + static_cast<int64_t>((i++ * 7919) % 1000) * ((f.last_ts - f.first_ts) / 1000);
    auto off = f.topic->OffsetForTime(ts);
    benchmark::DoNotOptimize(off);
  }
  state.SetItemsProcessed(state.iterations());
  f.topic.reset();
  f.store.reset();
  fs::remove_all(f.dir);
}
BENCHMARK(BM_OffsetForTime)->UseRealTime();

void BM_StoredRatio(benchmark::State& state) {
  static const std::vector<std::string> lines = sample::Logs(200'000);
  const Codec codec = static_cast<Codec>(state.range(0));
  double ratio = 0;
  uint64_t raw = 0;
  for (auto _ : state) {
    const std::string dir = FreshDir();
    StoreOptions o;
    o.path = dir;
    o.sync = *SyncPolicy::Parse("never");
    o.default_codec = codec;
    o.retention_interval = std::chrono::hours(1);
    auto store = std::move(*Store::Open(o));
    auto topic = *store->CreateTopic("logs");
    raw = 0;
    const int64_t now = WallNowNs();
    for (size_t i = 0; i < lines.size(); i += 100) {
      std::vector<MessageIn> msgs;
      for (size_t j = i; j < std::min(lines.size(), i + 100); ++j) {
        msgs.push_back({lines[j], now, 0});
        raw += lines[j].size();
      }
      (void)topic->Append(msgs);
    }
    auto& e = store->engine();
    e.db->Flush(rocksdb::FlushOptions(), e.log);
    rocksdb::CompactRangeOptions cro;
    cro.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    e.db->CompactRange(cro, e.log, nullptr, nullptr);
    rocksdb::ColumnFamilyMetaData meta;
    e.db->GetColumnFamilyMetaData(e.log, &meta);
    ratio = static_cast<double>(meta.size) / static_cast<double>(raw);
    topic.reset();
    store.reset();
    fs::remove_all(dir);
  }
  state.counters["stored_per_raw_byte"] = ratio;
  state.counters["raw_mib"] = static_cast<double>(raw) / (1 << 20);
  state.SetLabel(std::string(CodecName(codec)));
}
BENCHMARK(BM_StoredRatio)->Arg(0)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);

// What an append costs its caller's thread (cairnd's event loop): encoding, compressing and
// checksumming one batch of 100 sample log records cut to 100 bytes, as cairn-bench publishes
// them.
//   BM_EncodeBatch/<codec>   0 none, 1 lz4, 2 zstd
void BM_EncodeBatch(benchmark::State& state) {
  static const std::vector<std::string> lines = sample::Logs(100);
  const Codec codec = static_cast<Codec>(state.range(0));
  std::vector<MessageIn> msgs;
  for (size_t i = 0; i < 100; ++i) {
    msgs.push_back({std::string_view(lines[i]).substr(0, 100), WallNowNs(), 0});
  }
  size_t stored = 0;
  for (auto _ : state) {
    BatchBuilder batch(codec, msgs);
    stored = batch.Seal(0, 0).size();
    benchmark::DoNotOptimize(stored);
  }
  state.SetItemsProcessed(state.iterations() * msgs.size());
  state.counters["stored_bytes"] = static_cast<double>(stored);
  state.SetLabel(std::string(CodecName(codec)));
}
BENCHMARK(BM_EncodeBatch)->Arg(0)->Arg(1)->Arg(2);

}  // namespace
}  // namespace cairn::storage

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
