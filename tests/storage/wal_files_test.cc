// WALs written over prepared spare files of zeros (storage/wal_files.h): that every WAL RocksDB
// starts is one while spares can be made, that a store recovers every append from a WAL with a
// zeroed tail (what a crash leaves), and that without spares the store works as before.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "storage/engine.h"
#include "storage/wal_files.h"
#include "tests/eventually.h"
#include "tests/storage/test_util.h"

namespace cairn::storage {
namespace {

using testing::AsMessages;
using testing::OpenOrDie;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;
namespace fs = std::filesystem;

constexpr uint64_t kSpare = 2u << 20;  // small, so tests stay quick

StoreOptions SpareOptions(const std::string& path) {
  auto o = TestOptions(path);
  o.wal_spare_bytes = kSpare;
  return o;
}

std::vector<fs::path> WalFiles(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path SparePath(const std::string& dir) {
  return fs::path(dir) / PreparedWalFileSystem::kSpareName;
}

bool WaitForSpare(const std::string& dir, uint64_t bytes) {
  return cairn::testing::Eventually([&] {
    std::error_code ec;
    return fs::file_size(SparePath(dir), ec) == bytes && !ec;
  });
}

// Appends `n` single-message batches "<prefix>-<i>" and returns the bodies.
std::vector<std::string> AppendMany(TopicLog& topic, const std::string& prefix, int n) {
  std::vector<std::string> bodies;
  for (int i = 0; i < n; ++i) {
    bodies.push_back(prefix + "-" + std::to_string(i));
    EXPECT_TRUE(topic.Append(AsMessages({bodies.back()}, WallNowNs())));
  }
  return bodies;
}

// Moves RocksDB to a new WAL, as a memtable flush does.
void SwitchWal(Store& store) {
  auto& e = store.engine();
  ASSERT_TRUE(e.db->Flush(rocksdb::FlushOptions(), e.log).ok());
}

TEST(WalFiles, ANewStoreWritesItsFirstWalOverASpareAndPreparesTheNext) {
  TempDir dir;
  auto store = OpenOrDie(SpareOptions(dir.path()));
  auto topic = *store->CreateTopic("t");
  AppendMany(*topic, "m", 10);
  const auto wals = WalFiles(dir.path());
  ASSERT_EQ(wals.size(), 1u);
  // A plain WAL would be a few hundred bytes long here; this one is the spare, written from 0.
  EXPECT_EQ(fs::file_size(wals[0]), kSpare);
  const auto s = store->stats();
  EXPECT_EQ(s.wals_on_spares, 1u);
  EXPECT_EQ(s.plain_wals, 0u);
  EXPECT_EQ(s.wal_spare_failures, 0u);
  EXPECT_TRUE(WaitForSpare(dir.path(), kSpare)) << "no new spare after the first was taken";
}

// A crash leaves the WAL as it is on disk: the appends, then the spare's zeros, never truncated.
// A copy of the directory taken while the store is open is that state.
TEST(WalFiles, EveryAppendIsRecoveredFromAWalWithAZeroTail) {
  TempDir dir, crashed;
  auto store = OpenOrDie(SpareOptions(dir.path()));
  auto topic = *store->CreateTopic("t");
  const auto bodies = AppendMany(*topic, "m", 200);
  fs::copy(dir.path(), crashed.path(),
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const auto wals = WalFiles(crashed.path());
  ASSERT_EQ(wals.size(), 1u);
  ASSERT_EQ(fs::file_size(wals[0]), kSpare) << "the WAL should still carry its zeros";

  auto recovered = OpenOrDie(SpareOptions(crashed.path()));
  ASSERT_TRUE(recovered);
  auto t = recovered->FindTopic("t");
  ASSERT_TRUE(t);
  EXPECT_EQ(ReadAll(*t), bodies);
  // And it goes on: new appends, a clean close, a reopen.
  const auto more = AppendMany(*t, "n", 5);
  recovered.reset();
  auto again = OpenOrDie(SpareOptions(crashed.path()));
  auto all = bodies;
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_EQ(ReadAll(*again->FindTopic("t")), all);
}

// A write torn by a crash (its end never reached the disk) is followed by zeros, not by the end
// of the file. Point-in-time recovery must stop there, keeping everything before it, and open.
TEST(WalFiles, ATornLastRecordBeforeTheZerosEndsRecoveryThere) {
  TempDir dir, crashed;
  auto store = OpenOrDie(SpareOptions(dir.path()));
  TopicSettings uncompressed;
  uncompressed.codec = Codec::kNone;  // so the last record is as long as its body
  auto topic = *store->CreateTopic("t", uncompressed);
  const auto bodies = AppendMany(*topic, "m", 50);
  const std::string last(3000, 'z');
  ASSERT_TRUE(topic->Append(AsMessages({last}, WallNowNs())));
  fs::copy(dir.path(), crashed.path(),
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const auto wal = WalFiles(crashed.path()).at(0);

  // Zero the second half of the last record: the data ends at the last non-zero byte.
  std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(f)), {});
  const size_t end = content.find_last_not_of('\0') + 1;
  ASSERT_GT(end, 1500u);
  f.seekp(static_cast<std::streamoff>(end - 1500));
  f.write(std::string(1500, '\0').data(), 1500);
  f.close();

  auto recovered = OpenOrDie(SpareOptions(crashed.path()));
  ASSERT_TRUE(recovered) << "a torn tail must not stop the store from opening";
  EXPECT_EQ(ReadAll(*recovered->FindTopic("t")), bodies);
}

TEST(WalFiles, EachNewWalAfterAFlushTakesTheNextSpare) {
  TempDir dir;
  auto store = OpenOrDie(SpareOptions(dir.path()));
  auto topic = *store->CreateTopic("t");
  auto bodies = AppendMany(*topic, "a", 20);
  ASSERT_TRUE(WaitForSpare(dir.path(), kSpare));
  SwitchWal(*store);
  const auto more = AppendMany(*topic, "b", 20);
  bodies.insert(bodies.end(), more.begin(), more.end());
  EXPECT_EQ(store->stats().wals_on_spares, 2u);
  EXPECT_EQ(store->stats().plain_wals, 0u);
  // The newest WAL is the second spare (a WAL RocksDB has closed is cut to its length).
  EXPECT_EQ(fs::file_size(WalFiles(dir.path()).back()), kSpare);
  store.reset();
  EXPECT_EQ(ReadAll(*OpenOrDie(SpareOptions(dir.path()))->FindTopic("t")), bodies);
}

// A real fault: the spare's temporary name is taken by a directory that cannot be removed, so no
// spare can be made. WALs are then plain files and nothing else changes.
TEST(WalFiles, WhenNoSpareCanBeMadeWalsArePlainAndAppendsCarryOn) {
  TempDir dir;
  const auto blocker = SparePath(dir.path()).string() + ".tmp";
  fs::create_directories(blocker + "/keep");
  {
    auto store = OpenOrDie(SpareOptions(dir.path()));
    ASSERT_TRUE(store) << "a directory holding only spare names is a new store";
    auto topic = *store->CreateTopic("t");
    const auto bodies = AppendMany(*topic, "m", 20);
    const auto s = store->stats();
    EXPECT_EQ(s.wals_on_spares, 0u);
    EXPECT_EQ(s.plain_wals, 1u);
    EXPECT_GE(s.wal_spare_failures, 1u);
    EXPECT_LT(fs::file_size(WalFiles(dir.path()).at(0)), kSpare);
    store.reset();
    EXPECT_EQ(ReadAll(*OpenOrDie(SpareOptions(dir.path()))->FindTopic("t")), bodies);
  }
}

TEST(WalFiles, HalfMadeSparesAreRemovedAndASpareOfAnotherSizeIsRemade) {
  TempDir dir;
  std::ofstream(SparePath(dir.path()).string() + ".tmp") << "cut short by a crash";
  {
    auto store = OpenOrDie(SpareOptions(dir.path()));
    ASSERT_TRUE(store);
    EXPECT_FALSE(fs::exists(SparePath(dir.path()).string() + ".tmp"));
    ASSERT_TRUE(WaitForSpare(dir.path(), kSpare));
  }
  // A spare left by the last run is used by the next; one of another size is made again.
  auto o = SpareOptions(dir.path());
  o.wal_spare_bytes = kSpare / 2;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store);
  (void)(*store->CreateTopic("t"))->Append(AsMessages({"x"}, WallNowNs()));
  bool found = false;
  for (const auto& wal : WalFiles(dir.path())) found = found || fs::file_size(wal) == kSpare / 2;
  EXPECT_TRUE(found) << "the WAL should be a spare of the new size";
  EXPECT_EQ(store->stats().wals_on_spares, 1u);
}

// A second open of a directory in use fails on RocksDB's LOCK, and must not have touched the
// spare the first store is about to write its next WAL over.
TEST(WalFiles, AFailedSecondOpenLeavesTheFirstStoresSpareAlone) {
  TempDir dir;
  auto store = OpenOrDie(SpareOptions(dir.path()));
  auto topic = *store->CreateTopic("t");
  AppendMany(*topic, "a", 5);
  ASSERT_TRUE(WaitForSpare(dir.path(), kSpare));
  struct stat before {};
  ASSERT_EQ(::stat(SparePath(dir.path()).c_str(), &before), 0);

  auto o = SpareOptions(dir.path());
  o.wal_spare_bytes = kSpare / 2;  // would remake a spare of the "wrong" size, if it got that far
  auto second = Store::Open(o);
  ASSERT_FALSE(second) << "two stores opened one directory";
  struct stat after {};
  ASSERT_EQ(::stat(SparePath(dir.path()).c_str(), &after), 0) << "the spare was removed";
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(static_cast<uint64_t>(after.st_size), kSpare);

  SwitchWal(*store);
  AppendMany(*topic, "b", 5);
  EXPECT_EQ(store->stats().wals_on_spares, 2u) << "the next WAL did not find its spare";
}

// On a nearly full disk a spare would take the room RocksDB needs to flush: it is not made.
TEST(WalFiles, NoSpareIsMadeWhereItWouldCrowdTheDisk) {
  TempDir dir;
  testing::ScopedTmpfs disk(dir.sub("mnt"), "64m");
  if (!disk.mounted()) GTEST_SKIP() << "needs root to mount a small tmpfs";
  auto o = TestOptions(disk.path() + "/store");
  o.wal_spare_bytes = 16u << 20;  // two of them and a 64 MiB flush do not fit in 64 MiB
  auto store = OpenOrDie(o);
  auto topic = *store->CreateTopic("t");
  const auto bodies = AppendMany(*topic, "m", 20);
  EXPECT_EQ(store->stats().wals_on_spares, 0u);
  EXPECT_EQ(store->stats().plain_wals, 1u);
  EXPECT_FALSE(fs::exists(SparePath(o.path)));
  EXPECT_FALSE(fs::exists(SparePath(o.path).string() + ".tmp"));
  EXPECT_EQ(ReadAll(*topic), bodies);
}

TEST(WalFiles, ZeroSizeMeansPlainWalsAndNoSpare) {
  TempDir dir;
  auto o = TestOptions(dir.path());
  o.wal_spare_bytes = 0;
  auto store = OpenOrDie(o);
  AppendMany(**store->CreateTopic("t"), "m", 5);
  EXPECT_FALSE(fs::exists(SparePath(dir.path())));
  EXPECT_EQ(store->stats().wals_on_spares + store->stats().plain_wals, 0u);
}

}  // namespace
}  // namespace cairn::storage
