// Retention trims continuously while readers read and seek: range tombstones pile up below the
// log's start, and reads must not slow down because of them. Speed is not timed here (tests are
// no benchmarks); what RocksDB does per read is counted instead, with its perf context: the
// internal keys and tombstones a read steps over must stay bounded however many trims there were.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include "tests/storage/test_util.h"

namespace cairn::storage {
namespace {

struct ReadCost {
  uint64_t reads = 0;
  uint64_t max_skipped = 0;    // internal keys, deletions and range-deletion reseeks, one read
  uint64_t early_skipped = 0;  // in the first quarter of the run
  uint64_t late_skipped = 0;   // in the last quarter
};

TEST(Retention, ContinuousTrimDoesNotSlowReadsOrSeeks) {
  testing::TempDir dir;
  auto o = testing::TestOptions(dir.path());
  o.default_codec = Codec::kNone;
  o.tail_cache_bytes_per_topic = 0;  // every read goes to RocksDB, where the tombstones are
  auto store = testing::OpenOrDie(o);
  TopicSettings s;
  s.retention_bytes = 64 << 10;
  auto topic = *store->CreateTopic("t", s);

  constexpr int kBatches = 3000;
  std::atomic<bool> done{false};
  std::atomic<int> appended{0};
  std::thread appender([&] {
    std::vector<std::string> bodies(10, std::string(100, 'x'));
    for (int i = 0; i < kBatches; ++i) {
      auto r = topic->Append(testing::AsMessages(bodies, WallNowNs()));
      ASSERT_TRUE(r) << r.error().ToString();
      appended = i + 1;
    }
    done = true;
  });
  std::atomic<uint64_t> trims{0};
  std::thread trimmer([&] {
    while (!done) {
      auto r = store->EnforceRetention(WallNowNs());
      ASSERT_TRUE(r) << r.error().ToString();
      trims += r->topics_trimmed;
    }
  });

  ReadCost cost;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  auto measure = [&](auto&& fn) {
    rocksdb::get_perf_context()->Reset();
    fn();
    const auto* pc = rocksdb::get_perf_context();
    const uint64_t skipped = pc->internal_key_skipped_count + pc->internal_delete_skipped_count +
                             pc->internal_range_del_reseek_count;
    cost.max_skipped = std::max(cost.max_skipped, skipped);
    const int progress = appended.load();
    if (progress < kBatches / 4) cost.early_skipped += skipped;
    if (progress > kBatches * 3 / 4) cost.late_skipped += skipped;
    ++cost.reads;
  };
  while (!done) {
    // Read from the start of the log (just above the newest tombstone) and seek by time.
    measure([&] {
      const bool any = topic->next_offset() > 0;
      auto r = topic->Read(0, 50, 1 << 20);
      ASSERT_TRUE(r) << r.error().ToString();
      if (any) {
        EXPECT_FALSE(r->messages.empty());
      }
    });
    measure([&] {
      const auto info = topic->Info();
      if (info.first_ts == 0) return;
      auto off = topic->OffsetForTime(info.first_ts + (info.last_ts - info.first_ts) / 2);
      ASSERT_TRUE(off) << off.error().ToString();
      EXPECT_GE(*off, info.start_offset);
    });
  }
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  appender.join();
  trimmer.join();

  std::cout << "trims=" << trims << " reads=" << cost.reads << " max_skipped=" << cost.max_skipped
            << " early_skipped=" << cost.early_skipped << " late_skipped=" << cost.late_skipped
            << "\n";
  ASSERT_GE(trims.load(), 100u) << "too few trims to pile up tombstones";
  ASSERT_GT(cost.reads, 100u);
  // A read steps over a handful of entries at most: never over what retention deleted, however
  // many tombstones lie below the start (tens of thousands of deleted batches by the end).
  EXPECT_LE(cost.max_skipped, 32u);
  ASSERT_TRUE(store->EnforceRetention(WallNowNs()));
  EXPECT_LE(topic->Info().bytes, 64u << 10);

  // What is left is exactly the newest batches, readable in order.
  const auto info = topic->Info();
  EXPECT_EQ(info.next_offset, kBatches * 10u);
  auto r = topic->Read(info.start_offset, 100000, 64 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->messages.size(), info.next_offset - info.start_offset);
}

}  // namespace
}  // namespace cairn::storage
