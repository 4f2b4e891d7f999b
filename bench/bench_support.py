"""What bench/'s runners share: the paths and settings they read from the environment, brokers
started on loopback ports 0 with fresh data directories (cairnd, and nsqd from NSQ_BIN_DIR),
cairn-bench, fio's fdatasync rate, medians."""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/release/bin")
OUT = os.path.join(ROOT, "build/release/bench-results")
REPS = int(os.environ.get("REPS", "3"))
DIR = os.environ.get("CAIRN_BENCH_DIR", os.environ.get("TMPDIR", "/tmp"))
SECS = float(os.environ.get("SECONDS_PER_RUN", "5"))
# SLOW_FLUSH_US (bench/slow_flush.cc): every process started from here on, the brokers, Redis and
# fio alike, runs with libcairn-slow-flush.so preloaded, so that each fsync costs at least that
# many microseconds. With CAIRN_BENCH_DIR on tmpfs it emulates a disk whose flush costs that much.
SLOW_FLUSH_US = int(os.environ.get("SLOW_FLUSH_US", "0"))
if SLOW_FLUSH_US:
    _lib = os.path.join(BIN, "libcairn-slow-flush.so")
    if not os.access(_lib, os.R_OK):
        raise SystemExit(f"SLOW_FLUSH_US needs {_lib}: bash .ci/dev build")
    os.environ["LD_PRELOAD"] = _lib


class Broker:
    """A broker process that logs "TCP: listening on 127.0.0.1:<port>" and the same for HTTP,
    as cairnd and nsqd both do."""
    http_port = None
    listens_http = True
    dir = None  # its data directory, removed on close()

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline and (self.port is None or
                                           (self.listens_http and self.http_port is None)):
            line = self.proc.stderr.readline()
            m = re.search(r"(TCP|HTTP): listening on 127\.0\.0\.1:(\d+)", line)
            if m and m.group(1) == "TCP":
                self.port = int(m.group(2))
            elif m:
                self.http_port = int(m.group(2))
        if self.port is None:
            raise RuntimeError(f"{argv[0]} did not start")
        # Keep reading its log so it never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=subprocess.DEVNULL)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.drain.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Cairnd(Broker):
    """cairnd with its defaults (--sync=always) and `flags`."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="cairn-bench-", dir=DIR)
        super().__init__([f"{BIN}/cairnd", f"--data-path={self.dir}/data",
                          "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                          "--https-address=127.0.0.1:0", *flags])


class NullBroker(Broker):
    """cairn-null-broker (bench/null_broker.cc): answers every publish OK and stores nothing, on
    the same Asio loop and codec as cairnd. What cairn-bench's load can reach on this machine
    with no broker behind it: the ceiling a publish rate is read against."""
    listens_http = False

    def __init__(self, *_flags):
        super().__init__([f"{BIN}/cairn-null-broker", "--tcp-address=127.0.0.1:0"])


class FlushOnlyBroker(Broker):
    """cairn-null-broker --flush-to: answers a read's publishes OK only once their bytes are
    written to a file on DIR's disk and fdatasync'ed, in groups as a group commit makes them, and
    does nothing else. How far the disk's flush alone lets a load go, with no store behind it."""
    listens_http = False

    def __init__(self, *_flags):
        self.dir = tempfile.mkdtemp(prefix="cairn-bench-flush-", dir=DIR)
        super().__init__([f"{BIN}/cairn-null-broker", "--tcp-address=127.0.0.1:0",
                          f"--flush-to={self.dir}"])


def nsqd_binary():
    """nsqd from NSQ_BIN_DIR, or None."""
    path = os.path.join(os.environ.get("NSQ_BIN_DIR", ""), "nsqd")
    return path if os.environ.get("NSQ_BIN_DIR") and os.access(path, os.X_OK) else None


class Nsqd(Broker):
    """nsqd from NSQ_BIN_DIR with a memory queue that holds a whole run, and `flags`."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="cairn-bench-nsqd-", dir=DIR)
        super().__init__([nsqd_binary(), f"--data-path={self.dir}", "--tcp-address=127.0.0.1:0",
                          "--http-address=127.0.0.1:0", "--https-address=127.0.0.1:0",
                          "--mem-queue-size=100000000", *flags])


def bench(port, *args):
    r = subprocess.run([f"{BIN}/cairn-bench", f"--nsqd-tcp-address=127.0.0.1:{port}", *args],
                       capture_output=True, text=True, timeout=600)
    if not r.stdout.strip():
        raise RuntimeError(f"cairn-bench failed: {r.stderr}")
    return json.loads(r.stdout)


def on_fresh(make, measure):
    """measure(broker) on a fresh make() broker, which is closed after: the result."""
    broker = make()
    try:
        return measure(broker)
    finally:
        broker.close()


def on_fresh_cairnd(measure):
    """measure(cairnd) REPS times, each on a fresh cairnd (Cairnd's defaults): the results."""
    return [on_fresh(Cairnd, measure) for _ in range(REPS)]


# The latency guard's load: 4 connections of MPUBs of 100, 4 outstanding each, and one channel of
# 4 consumers at RDY 1000 reading as they are published.
LATENCY_PUBLISHERS = ("--publishers=4", "--batch=100", "--pipeline=4")
LATENCY_LOAD = (*LATENCY_PUBLISHERS, "--channels=1", "--consumers=4", "--rdy=1000")


def max_publish_and_deliver(port):
    """What `port`'s broker carries under LATENCY_LOAD with no rate set: the lower of its publish
    and delivery rates, msg/s."""
    r = bench(port, f"--seconds={SECS}", *LATENCY_LOAD)
    return min(r["publish_msgs_per_sec"], r["delivered_msgs_per_sec_per_channel"][0])


def delivery_p99_at(port, rate):
    """Publish-to-delivery p99 in ms under LATENCY_LOAD held to `rate` msg/s."""
    r = bench(port, f"--seconds={SECS}", *LATENCY_LOAD, f"--rate={rate:.0f}")
    return r["publish_to_delivery_latency"]["p99_ms"]


def publish_p99_at(port, rate):
    """Publish-to-OK p99 in ms of LATENCY_LOAD's publishers alone, held to `rate` msg/s: for a
    broker that does not deliver (the flush-only broker)."""
    r = bench(port, f"--seconds={SECS}", *LATENCY_PUBLISHERS, "--channels=0", f"--rate={rate:.0f}")
    return r["publish_ack_latency"]["p99_ms"]


def _terminate_with_parent():
    """In a child before it execs: SIGTERM it when the process that started it dies, even by
    SIGKILL (prctl PR_SET_PDEATHSIG; kept across exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class BusyCores:
    """While open: one CPU-bound process on each core at nice 19, as batch work beside the broker
    on a shared node keeps it. Each stops by itself after `seconds` if it is not stopped before,
    and when the runner dies, however it dies."""

    def __init__(self, seconds=3600):
        self.procs = [subprocess.Popen(["nice", "-n", "19", "timeout", str(seconds), "sh", "-c",
                                        "while :; do :; done"], preexec_fn=_terminate_with_parent)
                      for _ in range(os.cpu_count() or 1)]

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for p in self.procs:
            p.terminate()  # timeout passes it on to its loop, which SIGKILL would leave running
            p.wait()


def median(xs):
    return statistics.median(xs) if xs else 0


def fio_fsyncs_per_sec():
    rates = []
    for _ in range(REPS):
        r = subprocess.run(["fio", "--name=cairn-fio", f"--directory={DIR}", "--size=64m",
                            "--rw=write", "--bs=4k", "--fdatasync=1", "--output-format=json"],
                           capture_output=True, text=True)
        for f in os.listdir(DIR):
            if f.startswith("cairn-fio."):
                os.remove(os.path.join(DIR, f))
        rates.append(json.loads(r.stdout)["jobs"][0]["write"]["iops"])
    return median(rates)


def cpu_times():
    """The machine's CPU times from /proc/stat (user, nice, system, idle, iowait, irq, softirq,
    steal, ...), in ticks: two readings give the share of steal between them."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_percent(before, after):
    """The share of the machine's CPU time the hypervisor took between two cpu_times(), in %."""
    total = sum(after) - sum(before)
    return 100.0 * (after[7] - before[7]) / total if total else 0.0


def wait_until_listening(port, seconds=10):
    """Returns once something accepts connections on 127.0.0.1:`port`; raises after `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")
            time.sleep(0.01)


def scenario_redis():
    """Redis Streams with appendfsync always: 64 clients doing XADD of 100 bytes, the durable
    peer of the 64-connection PUB scenario."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        return {"name": "redis", "skipped": "redis-server/redis-benchmark not installed"}
    rates = []
    for _ in range(REPS):
        d = tempfile.mkdtemp(prefix="cairn-redis-", dir=DIR)
        srv = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", f"{d}/sock",
                                "--dir", d, "--appendonly", "yes", "--appendfsync", "always",
                                "--save", ""], stdout=subprocess.DEVNULL)
        try:
            # redis-benchmark needs TCP: pick a free port the kernel gives us.
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            srv.terminate()
            srv.wait()
            srv = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                    "--dir", d, "--appendonly", "yes", "--appendfsync", "always",
                                    "--save", ""], stdout=subprocess.DEVNULL)
            wait_until_listening(port)
            n = 200000
            r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "64",
                                "-n", str(n), "-P", "1", "--csv", "XADD", "s", "*", "f",
                                "x" * 100], capture_output=True, text=True, timeout=300)
            line = [l for l in r.stdout.splitlines() if l.startswith('"XADD')][0]
            rates.append(float(line.split(",")[1].strip('"')))
        finally:
            srv.terminate()
            srv.wait()
            shutil.rmtree(d, ignore_errors=True)
    return {"name": "redis", "xadd_64_clients_msgs_per_sec": median(rates), "runs": rates}
