"""cairn-metrics and cairn-replay end to end: publishers -> cairnd -> worker -> a real InfluxDB
(Debian's influxd on loopback), checked with InfluxQL. Faults are real: InfluxDB stopped and
started, the worker SIGKILLed, cairnd restarted."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ADMIN_FLAG, MEASUREMENTS, Cairnd, Influx, NsqReader, Process,  # noqa: E402
                     WithInflux, expected_totals, http_request, make_certificates, metrics_text,
                     sample_traffic, wait_until)

CAIRN_METRICS = os.environ["CAIRN_METRICS"]
CAIRN_REPLAY = os.environ["CAIRN_REPLAY"]


def strip_timestamp(line):
    return line.rsplit(" ", 1)[0]


class Pipeline(WithInflux):
    """One InfluxDB for the class; a fresh cairnd, worker and database for each test."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cairn-metrics-e2e-")
        self.data = os.path.join(self.tmp.name, "data")
        self.cairnd = Cairnd(self.data).start()
        self.db = f"db_{self.id().rsplit('.', 1)[-1]}"[:60]
        self.workers = []
        if not self.influx.proc:
            self.influx.start()

    def tearDown(self):
        for w in self.workers:
            if w.running():
                w.kill()
        if self.cairnd.running():
            self.cairnd.kill()
        self.tmp.cleanup()

    def start_metrics(self, *extra):
        w = Process([CAIRN_METRICS, f"--nsqd-tcp-address=127.0.0.1:{self.cairnd.port('tcp')}",
                     f"--nsqd-http-address=127.0.0.1:{self.cairnd.port('http')}",
                     "--http-address=127.0.0.1:0", f"--influxdb-url={self.influx.url}",
                     f"--database={self.db}", *extra],
                    {"http": r"HTTP: listening on (\S+)"}, "cairn-metrics")
        self.workers.append(w)
        return w.start()

    def counts(self):
        return {m: self.influx.count(m, self.db) for m in MEASUREMENTS}

    def wait_counts(self, expected, timeout=30):
        want = {m: expected.get(m, (0, 0))[0] for m in MEASUREMENTS}
        wait_until(lambda: self.counts() == want, f"InfluxDB counts {want}", timeout)

    def sums(self):
        return {m: self.influx.sum(m, self.db) for m in MEASUREMENTS}

    def assert_values(self, expected):
        self.wait_counts(expected)
        sums = self.sums()
        for m, (_, total) in expected.items():
            self.assertAlmostEqual(sums[m], total, delta=1e-6 * max(1.0, abs(total)), msg=m)

    def worker_metric(self, w, name):
        return metrics_text("127.0.0.1", w.port("http")).get(name, 0)

    # ---- cairn-metrics ----

    def test_every_point_arrives_with_its_values_and_its_publish_time(self):
        lines = sample_traffic("metrics", 3000)
        w = self.start_metrics("--flush-interval=200ms")
        # Deis publishes one router request as three points without timestamps; Telegraf
        # publishes lines with them. Both shapes: 1500 timestamped lines, three to a message,
        # and 1500 single lines whose timestamp the worker fills in from the publish time.
        with_ts = ["\n".join(lines[i:i + 3]) for i in range(0, 1500, 3)]
        before = time.time_ns()
        for i in range(0, len(with_ts), 100):
            # MPUB over HTTP splits on newlines, so multi-line bodies go one by one.
            for body in with_ts[i:i + 100]:
                self.cairnd.pub("metrics", body)
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[1500:]])
        after = time.time_ns()
        self.assert_values(expected_totals(lines))
        # The lines without a timestamp carry their message's publish time.
        rows = json.loads(http_request(
            "GET", "127.0.0.1", self.influx.http_port,
            f"/query?db={self.db}&epoch=ns&q=" +
            "SELECT%20%22value%22%20FROM%20%22deis_router_request_time_ms%22%20ORDER%20BY%20time"
            "%20DESC%20LIMIT%201")[1])["results"][0]["series"][0]["values"]
        self.assertGreaterEqual(rows[0][0], before)
        self.assertLessEqual(rows[0][0], after)
        # What the worker reports.
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_total") == 500 + 1500, "messages_total", 10)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_points_written_total"), 3000)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_in_flight"), 0)
        self.assertEqual(http_request("GET", "127.0.0.1", w.port("http"), "/healthz")[0], 200)
        self.assertEqual(self.cairnd.channel_stats("metrics", "influxdb")["depth"], 0)

    def test_rewinding_the_channel_writes_the_same_points_again_not_new_ones(self):
        lines = sample_traffic("metrics", 1000)
        w = self.start_metrics("--flush-interval=200ms")
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[:500]] + lines[500:])
        expected = expected_totals(lines)
        self.assert_values(expected)
        status, _ = self.cairnd.http(
            "POST", "/channel/seek?topic=metrics&channel=influxdb&to=earliest")
        self.assertEqual(status, 200)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_total") == 2000, "every message handled twice", 20)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_points_written_total"), 2000)
        self.assert_values(expected)  # the same counts: idempotent

    def test_influxdb_down_for_seconds_loses_nothing_and_finishes_nothing_early(self):
        lines = sample_traffic("metrics", 2000)
        w = self.start_metrics("--flush-interval=100ms", "--batch-size=100")
        self.cairnd.mpub("metrics", lines[:1000])
        self.wait_counts(expected_totals(lines[:1000]))
        self.assertEqual(self.influx.stop(), 0)
        self.cairnd.mpub("metrics", lines[1000:])
        # While InfluxDB is down, the messages stay in flight at the broker: none finished.
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_in_flight") == 1000, "1000 messages held", 10)
        time.sleep(3)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_total"), 1000)
        stats = self.cairnd.channel_stats("metrics", "influxdb")
        self.assertEqual(stats["in_flight_count"], 1000)
        self.assertGreater(self.worker_metric(w, "cairn_metrics_write_failures_total"), 0)
        self.influx.start()
        self.assert_values(expected_totals(lines))
        wait_until(lambda: self.cairnd.channel_stats("metrics", "influxdb")["in_flight_count"] == 0, "everything finished", 10)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_total"), 2000)

    def test_sigkill_mid_batch_then_restart_loses_nothing_and_counts_nothing_twice(self):
        lines = sample_traffic("metrics", 1300)
        # Batches of 500 and a flush interval too long to matter: 1000 points are written,
        # 300 wait in a partial batch when the worker dies.
        w = self.start_metrics("--batch-size=500", "--flush-interval=10m")
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[:650]] + lines[650:])
        wait_until(lambda: sum(self.counts().values()) == 1000, "two batches written", 20)
        # InfluxDB shows the points before the worker has its answer and FINishes them.
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_in_flight") == 300,
                   "300 held in the partial batch", 10)
        self.assertEqual(w.kill(), -signal.SIGKILL)
        # The broker hands the unfinished messages to the next consumer.
        self.start_metrics("--batch-size=500", "--flush-interval=100ms")
        self.assert_values(expected_totals(lines))
        time.sleep(0.5)
        self.assertEqual(sum(self.counts().values()), 1300)

    def test_bad_lines_go_to_the_rejected_topic_with_their_reason_and_the_rest_flows(self):
        lines = sample_traffic("metrics", 300)
        w = self.start_metrics("--flush-interval=100ms")
        # Integers first, so that a float for the same field is a type conflict in InfluxDB.
        self.cairnd.mpub("metrics", lines)
        self.wait_counts(expected_totals(lines))
        bad_parse = "deis_router_request_time_ms,app=x value=12x"
        # A float where the shard holds integers (the same time range as the sample).
        sample_ts = int(lines[0].rsplit(" ", 1)[1])
        conflict = f"deis_router_bytes_sent,app=catalog,status_code=200,host=h value=1.5 {sample_ts}"
        good = "deis_router_request_time_ms,app=ok,status_code=200,host=h value=1.25"
        self.cairnd.pub("metrics", f"{bad_parse}\n{good}")
        self.cairnd.pub("metrics", conflict)
        self.cairnd.pub("metrics", "not line protocol at all")
        wait_until(lambda: self.cairnd.topic_stats("metrics_rejected") and
                   self.cairnd.topic_stats("metrics_rejected")["message_count"] == 3, "three rejected lines", 20)
        reader = NsqReader(self.cairnd.port("tcp"), "metrics_rejected", "check")
        status, _ = self.cairnd.http(
            "POST", "/channel/seek?topic=metrics_rejected&channel=check&to=earliest")
        self.assertEqual(status, 200)
        records = [json.loads(b) for b in reader.take(3)]
        reader.close()
        by_line = {r["line"]: r for r in records}
        self.assertEqual(set(by_line), {bad_parse, conflict, "not line protocol at all"})
        self.assertIn("invalid field value", by_line[bad_parse]["reason"])
        self.assertTrue(by_line[conflict]["reason"].startswith("influxdb:"), by_line[conflict])
        self.assertIn("conflict", by_line[conflict]["reason"])
        self.assertEqual(by_line[conflict]["topic"], "metrics")
        # The good line of the mixed message was written, and every message was finished.
        wait_until(lambda: self.influx.rows(
            'SELECT "value" FROM "deis_router_request_time_ms" WHERE "app" = \'ok\'', self.db), "the good line", 10)
        wait_until(lambda: self.cairnd.channel_stats("metrics", "influxdb")["in_flight_count"] == 0
                   and self.cairnd.channel_stats("metrics", "influxdb")["depth"] == 0, "all finished", 10)
        self.assertEqual(self.worker_metric(w, 'cairn_metrics_lines_rejected_total{by="parser"}'), 2)
        self.assertEqual(self.worker_metric(w, 'cairn_metrics_lines_rejected_total{by="influxdb"}'),
                         1)

    def test_cairnd_restart_under_load_the_worker_reconnects_and_carries_on(self):
        lines = sample_traffic("metrics", 2000)
        w = self.start_metrics("--flush-interval=100ms")
        self.cairnd.mpub("metrics", lines[:1000])
        self.cairnd = self.cairnd.restart_same_ports(self.data)
        self.cairnd.mpub("metrics", lines[1000:])
        self.assert_values(expected_totals(lines))
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_nsqd_connections") == 1, "reconnected", 10)

    def test_sigterm_writes_what_it_holds_and_exits_zero(self):
        lines = sample_traffic("metrics", 700)
        w = self.start_metrics("--batch-size=1000", "--flush-interval=10m")
        self.cairnd.mpub("metrics", lines)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_in_flight") == 700, "700 held in a partial batch", 10)
        self.assertEqual(sum(self.counts().values()), 0)
        self.assertEqual(w.stop(signal.SIGTERM), 0, w.log())
        self.assert_values(expected_totals(lines))
        stats = self.cairnd.channel_stats("metrics", "influxdb")
        self.assertEqual((stats["depth"], stats["in_flight_count"]), (0, 0))

    def test_sigterm_with_influxdb_down_hands_messages_back(self):
        lines = sample_traffic("metrics", 200)
        w = self.start_metrics("--flush-interval=50ms", "--shutdown-timeout=1s")
        self.assertEqual(self.influx.stop(), 0)
        self.cairnd.mpub("metrics", lines)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_in_flight") == 200, "200 held", 10)
        self.assertEqual(w.stop(signal.SIGTERM), 0, w.log())
        # Handed back (REQ), not lost: waiting at the broker for the next consumer.
        stats = wait_until(lambda: (lambda s: s if s["depth"] == 200 else None)(
            self.cairnd.channel_stats("metrics", "influxdb")), "200 requeued", 10)
        self.assertEqual(stats["in_flight_count"], 0)
        self.influx.start()
        self.start_metrics("--flush-interval=50ms")
        self.assert_values(expected_totals(lines))

    # ---- cairn-replay ----

    def replay(self, *args, db=None):
        cmd = [CAIRN_REPLAY, ADMIN_FLAG, f"--nsqd-tcp-address=127.0.0.1:{self.cairnd.port('tcp')}",
               f"--nsqd-http-address=127.0.0.1:{self.cairnd.port('http')}",
               f"--influxdb-url={self.influx.url}", f"--database={db or self.db}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def replay_on_a_terminal(self, *args):
        """Runs cairn-replay with its stderr on a pseudo-terminal, as an operator would see it;
        returns (exit code, stdout, what the terminal showed)."""
        cmd = [CAIRN_REPLAY, ADMIN_FLAG, f"--nsqd-tcp-address=127.0.0.1:{self.cairnd.port('tcp')}",
               f"--nsqd-http-address=127.0.0.1:{self.cairnd.port('http')}",
               f"--influxdb-url={self.influx.url}", f"--database={self.db}", *args]
        master, slave = os.openpty()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        shown = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the replay closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        os.close(master)
        out, _ = proc.communicate(timeout=30)
        return proc.returncode, out, shown.decode("utf-8", "replace")

    def publish_in_three_periods(self, lines):
        """Publishes lines in three parts with time between; returns the RFC 3339 bounds of
        the middle part."""
        third = len(lines) // 3
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[:third]])
        time.sleep(0.05)
        t1 = time.time_ns()
        time.sleep(0.05)
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[third:2 * third]])
        time.sleep(0.05)
        t2 = time.time_ns()
        time.sleep(0.05)
        self.cairnd.mpub("metrics", [strip_timestamp(l) for l in lines[2 * third:]])
        fmt = lambda ns: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
            f".{ns % 10**9:09d}Z"
        return fmt(t1), fmt(t2), lines[third:2 * third]

    def test_replay_backfills_exactly_the_range_and_twice_is_once(self):
        lines = sample_traffic("metrics", 1500)
        frm, to, middle = self.publish_in_three_periods(lines)
        r = self.replay("--from", frm, "--to", to, "--json", "--flush-interval=100ms")
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["messages"], summary["points"]), (500, 500))
        self.assert_values(expected_totals(middle))
        # Again: nothing changes.
        r = self.replay("--from", frm, "--to", to, "--flush-interval=100ms")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("messages=500 points=500", r.stdout)
        self.assert_values(expected_totals(middle))
        # Wipe the database and replay: the same again.
        self.influx.query(f'DROP DATABASE "{self.db}"')
        r = self.replay("--from", frm, "--to", to)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_values(expected_totals(middle))
        # The replay channels are gone.
        channels = [c["channel_name"] for c in self.cairnd.topic_stats("metrics")["channels"]]
        self.assertEqual(channels, [])

    def test_replay_of_an_empty_range_says_so(self):
        self.cairnd.mpub("metrics", sample_traffic("metrics", 10))
        r = self.replay("--from", "2001-01-01T00:00:00Z", "--to", "2001-01-02T00:00:00Z")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no messages in the range", r.stdout)
        self.assertEqual(sum(self.counts().values()), 0)

    def test_replay_dry_run_counts_and_writes_nothing(self):
        lines = sample_traffic("metrics", 300)
        self.cairnd.mpub("metrics", lines[:200] + ["garbage line"])
        r = self.replay("--from", "-1h", "--dry-run", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["messages"], summary["points"], summary["rejected_by_parser"]),
                         (201, 200, 1))
        self.assertEqual(self.influx.query("SHOW DATABASES")["results"][0]["series"][0]
                         ["values"].count([self.db]), 0)

    def test_replay_failure_exits_nonzero_and_says_where_to_resume(self):
        lines = sample_traffic("metrics", 100)
        self.cairnd.mpub("metrics", lines)
        self.assertEqual(self.influx.stop(), 0)
        code, _, shown = self.replay_on_a_terminal("--from", "-1h", "--give-up-after=2s",
                                                   "--flush-interval=50ms")
        self.assertEqual(code, 1, shown)
        # On a terminal it shows its progress while it waits, then the failure.
        self.assertRegex(shown, r"0/100 messages +0 points +0 points/s +ETA \?")
        self.assertIn("resume with: --from ", shown)
        self.assertIn("0 of 100 messages", shown)
        self.influx.start()
        resume = shown.split("resume with: --from ", 1)[1].split()[0]
        r = self.replay("--from", resume)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_values(expected_totals(lines))


class InfluxOverHttps(WithInflux):
    """cairn-metrics writing to an InfluxDB that serves HTTPS only, with a certificate from the
    tests' CA. Pipeline's fixtures and helpers, on that InfluxDB."""

    @classmethod
    def setUpClass(cls):
        cls.certificates = tempfile.TemporaryDirectory(prefix="cairn-certs-")
        cls.influx = Influx(make_certificates(cls.certificates.name)).start()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.certificates.cleanup()

    setUp = Pipeline.setUp
    tearDown = Pipeline.tearDown
    start_metrics = Pipeline.start_metrics
    counts = Pipeline.counts
    wait_counts = Pipeline.wait_counts
    sums = Pipeline.sums
    assert_values = Pipeline.assert_values
    worker_metric = Pipeline.worker_metric

    def test_points_go_over_https_and_an_untrusted_certificate_finishes_nothing(self):
        self.assertTrue(self.influx.url.startswith("https://"))
        lines = sample_traffic("metrics", 600)
        # The system's CAs do not know the tests' CA: every write fails, nothing is finished.
        w = self.start_metrics("--flush-interval=100ms", "--batch-size=100")
        self.cairnd.mpub("metrics", lines)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_write_failures_total") > 0,
                   "a failed write", 15)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_total"), 0)
        self.assertEqual(self.counts(), {m: 0 for m in MEASUREMENTS})
        self.assertEqual(w.stop(), 0, w.log())  # hands what it holds back to the broker
        # Trusting the CA, the same messages arrive, each point once.
        self.start_metrics("--flush-interval=100ms", "--batch-size=100",
                           f"--influxdb-tls-root-ca-file={self.certificates.name}/ca.pem")
        self.assert_values(expected_totals(lines))
        wait_until(lambda: self.cairnd.channel_stats("metrics", "influxdb")["depth"] == 0,
                   "everything finished", 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
