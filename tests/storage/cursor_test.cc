#include "storage/cursor.h"

#include <random>
#include <set>

#include <gtest/gtest.h>

namespace cairn::storage {
namespace {

TEST(AckSet, InOrderFinishesMoveTheFloor) {
  AckSet s(10);
  EXPECT_TRUE(s.Add(10));
  EXPECT_TRUE(s.Add(11));
  EXPECT_EQ(s.floor(), 12u);
  EXPECT_EQ(s.range_count(), 0u);
  EXPECT_FALSE(s.Add(11));
  EXPECT_FALSE(s.Add(3));  // below the floor: already finished
}

TEST(AckSet, OutOfOrderFinishesMergeIntoRangesAndCloseTheGap) {
  AckSet s(0);
  s.Add(5);
  s.Add(7);
  s.Add(6);
  EXPECT_EQ(s.range_count(), 1u);
  EXPECT_TRUE(s.Contains(6));
  EXPECT_FALSE(s.Contains(4));
  EXPECT_EQ(s.NextUnfinished(5), 8u);
  EXPECT_EQ(s.NextUnfinished(0), 0u);
  for (uint64_t i = 0; i < 5; ++i) s.Add(i);
  EXPECT_EQ(s.floor(), 8u);
  EXPECT_EQ(s.range_count(), 0u);
}

TEST(AckSet, MatchesAPlainSetUnderRandomFinishes) {
  std::mt19937_64 rng(7);
  AckSet s(100);
  std::set<uint64_t> model;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t off = 100 + rng() % 3000;
    EXPECT_EQ(s.Add(off), model.insert(off).second);
  }
  uint64_t floor = 100;
  while (model.count(floor)) ++floor;
  EXPECT_EQ(s.floor(), floor);
  for (uint64_t off = 100; off < 3200; ++off) ASSERT_EQ(s.Contains(off), model.count(off) > 0);
  uint64_t above = 0;
  for (uint64_t off : model) above += off >= floor;
  EXPECT_EQ(s.finished_above_floor(), above);

  auto decoded = AckSet::Decode(s.floor(), s.EncodeRanges());
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, s);
}

TEST(AckSet, SkipToCountsOnlyUnfinishedMessages) {
  AckSet s(0);
  s.Add(2);
  s.Add(3);
  s.Add(8);
  s.Add(9);
  // Offsets 0..9 trimmed: 0, 1, 4, 5, 6, 7 were never finished.
  EXPECT_EQ(s.SkipTo(10), 6u);
  EXPECT_EQ(s.floor(), 10u);
  EXPECT_EQ(s.range_count(), 0u);
  EXPECT_EQ(s.SkipTo(5), 0u);  // behind the floor: nothing to do
}

TEST(AckSet, SkipToInsideARangeKeepsItsTail) {
  AckSet s(0);
  for (uint64_t i = 5; i < 20; ++i) s.Add(i);
  EXPECT_EQ(s.SkipTo(10), 5u);
  EXPECT_EQ(s.floor(), 20u);
}

TEST(AckSet, MalformedEncodingsAreRejected) {
  EXPECT_FALSE(AckSet::Decode(0, {1}));           // odd
  EXPECT_FALSE(AckSet::Decode(0, {1, 0}));        // empty range
  EXPECT_FALSE(AckSet::Decode(0, {1, 2, 0, 3}));  // adjacent ranges are never written
  EXPECT_TRUE(AckSet::Decode(0, {1, 2, 1, 3}));
}

TEST(ChannelCursor, ReportsDirtyOnceAfterChanges) {
  ChannelCursor c(1, 2, "ch", AckSet(0), 0);
  EXPECT_TRUE(c.Finish(0));
  EXPECT_FALSE(c.Finish(0));
  EXPECT_EQ(c.floor(), 1u);
  c.SkipTo(10);
  EXPECT_EQ(c.skipped_by_retention(), 9u);
  c.Seek(3);
  EXPECT_EQ(c.floor(), 3u);
  EXPECT_FALSE(c.IsFinished(3));
}

}  // namespace
}  // namespace cairn::storage
