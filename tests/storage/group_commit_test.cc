// The group committer on its own, on a real RocksDB, with requests whose timing the test controls.
#include "storage/group_commit.h"

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "tests/storage/test_util.h"

namespace cairn::storage {
namespace {

using testing::TempDir;

struct Db {
  explicit Db(const std::string& path) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    auto st = rocksdb::DB::Open(o, path, &raw);
    EXPECT_TRUE(st.ok()) << st.ToString();
    db.reset(raw);
  }
  std::unique_ptr<rocksdb::DB> db;
};

// What the requests of a test did, in order, from whichever thread.
struct Journal {
  std::mutex mu;
  std::vector<std::string> events;
  void Add(std::string event) {
    std::lock_guard lock(mu);
    events.push_back(std::move(event));
  }
};

// Writes one key; on completion notes it, and asks to note again once its group is complete.
class NotingOp final : public CommitOp {
 public:
  NotingOp(Journal* journal, std::string name, std::promise<void>* prepared = nullptr,
           std::shared_future<void> hold = {})
      : journal_(journal), name_(std::move(name)), prepared_(prepared), hold_(std::move(hold)) {}

  Status Prepare(rocksdb::WriteBatch& batch, GroupContext&) override {
    if (prepared_ != nullptr) prepared_->set_value();
    if (hold_.valid()) hold_.wait();
    batch.Put(name_, name_);
    return {};
  }
  void Complete(const Status& status) override {
    journal_->Add((status ? "done " : "failed ") + name_);
    AfterGroupCompleted([journal = journal_, name = name_] { journal->Add("after " + name); });
  }

 private:
  Journal* journal_;
  std::string name_;
  std::promise<void>* prepared_;
  std::shared_future<void> hold_;
};

TEST(GroupCommit, AfterGroupCompletedWaitsForTheWholeGroup) {
  TempDir dir;
  Db db(dir.path());
  Journal journal;
  GroupCommitter committer(db.db.get(), *SyncPolicy::Parse("always"));

  // The first request holds the committer inside its group while the others queue up behind it,
  // so those others are all taken as the next group.
  std::promise<void> prepared, release;
  committer.Submit(
      std::make_unique<NotingOp>(&journal, "first", &prepared, release.get_future().share()));
  prepared.get_future().wait();
  constexpr int kGroup = 6;
  for (int i = 0; i < kGroup; ++i) {
    committer.Submit(std::make_unique<NotingOp>(&journal, std::to_string(i)));
  }
  release.set_value();
  committer.Stop();

  std::vector<std::string> want = {"done first", "after first"};
  for (int i = 0; i < kGroup; ++i) want.push_back("done " + std::to_string(i));
  for (int i = 0; i < kGroup; ++i) want.push_back("after " + std::to_string(i));
  EXPECT_EQ(journal.events, want);
  EXPECT_EQ(committer.stats().groups, 2u);

  // Outside a completion, the function runs at once.
  bool ran = false;
  AfterGroupCompleted([&] { ran = true; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace cairn::storage
