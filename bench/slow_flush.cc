// libcairn-slow-flush.so: an LD_PRELOAD library for bench/ only, never linked into Cairn. Every
// fsync and fdatasync of the process it is loaded into takes at least SLOW_FLUSH_US microseconds:
// the real call, then a sleep for the rest, as a thread waiting on a device's flush sleeps. With
// the data on tmpfs, where a flush costs almost nothing, it stands in for a disk whose flush costs
// that much, so that bench/run_vs_nsqd can measure how cairnd's ratio to nsqd moves with the cost
// of a flush (README, Benchmarks). fio run under it reports the device so emulated.
#include <dlfcn.h>
#include <sys/prctl.h>
#include <time.h>

#include <cstdlib>

namespace {

using SyncFn = int (*)(int);

long DelayNs() {
  static const long ns = [] {
    const char* us = std::getenv("SLOW_FLUSH_US");
    return us ? std::atol(us) * 1000 : 0L;
  }();
  return ns;
}

// Calls `real` on `fd`, then sleeps until DelayNs() after the call began. The timer slack is cut
// to 1 ns first: the default, 50 us, would add as much again to every flush.
int SlowSync(const char* name, int fd) {
  const SyncFn real = reinterpret_cast<SyncFn>(dlsym(RTLD_NEXT, name));
  timespec until{};
  clock_gettime(CLOCK_MONOTONIC, &until);
  const int rc = real(fd);
  if (const long ns = DelayNs(); ns > 0) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    until.tv_sec += (until.tv_nsec + ns) / 1'000'000'000;
    until.tv_nsec = (until.tv_nsec + ns) % 1'000'000'000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) != 0) {
    }
  }
  return rc;
}

}  // namespace

extern "C" int fdatasync(int fd) { return SlowSync("fdatasync", fd); }
extern "C" int fsync(int fd) { return SlowSync("fsync", fd); }
