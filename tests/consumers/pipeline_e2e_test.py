"""The whole pipeline end to end: publishers put a mixed stream on `logs` and `metrics` through
cairnd; every point arrives in InfluxDB (checked with InfluxQL queries: counts and values), every
log line is served by the logger for the right app, in order. A real cairnd, cairn-logger,
cairn-metrics and InfluxDB (Debian's influxd), all on loopback ports they pick. Standard library
only; every wait is bounded.

Environment: CAIRND, CAIRN_LOGGER, CAIRN_METRICS, CAIRN_SAMPLE (the binaries)."""

import os
import sys
import tempfile
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CAIRN_SAMPLE, CAIRND, Cairnd, Process, WithInflux,  # noqa: E402
                     expected_totals, http_request, metric_total, sample_traffic, wait_until)
from logger_e2e_test import expected_by_app  # noqa: E402

CAIRN_LOGGER = os.environ.get("CAIRN_LOGGER", "")
CAIRN_METRICS = os.environ.get("CAIRN_METRICS", "")
CHUNKS = 8  # MPUBs per topic, the two publishers taking turns
WAIT = 60   # seconds, the most the pipeline may take to drain


class MixedStream(WithInflux):
    @classmethod
    def setUpClass(cls):
        for var, path in (("CAIRND", CAIRND), ("CAIRN_LOGGER", CAIRN_LOGGER),
                          ("CAIRN_METRICS", CAIRN_METRICS), ("CAIRN_SAMPLE", CAIRN_SAMPLE)):
            assert path and os.path.exists(path), f"{var}={path!r} does not exist"
        super().setUpClass()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cairn-pipeline-e2e-")
        self.processes = []
        self.cairnd = self.track(Cairnd(os.path.join(self.tmp.name, "data"))).start()
        self.db = f"db_{self.id().rsplit('.', 1)[-1]}"[:60]

    def tearDown(self):
        for p in reversed(self.processes):
            if p.running():
                p.kill()
        self.tmp.cleanup()

    def track(self, process):
        self.processes.append(process)
        return process

    def worker(self, binary, name, *extra):
        return self.track(Process(
            [binary, f"--nsqd-tcp-address=127.0.0.1:{self.cairnd.port('tcp')}",
             f"--nsqd-http-address=127.0.0.1:{self.cairnd.port('http')}",
             "--http-address=127.0.0.1:0", *extra],
            {"http": r"HTTP: listening on (\S+)"}, name)).start()

    def metric(self, worker, name, labels=None):
        return metric_total("127.0.0.1", worker.port("http"), name, labels)

    def publish_mixed(self, by_topic):
        """Publishes {topic: bodies}, a publisher thread per topic, in CHUNKS MPUBs each; the
        threads take turns chunk by chunk (a barrier), so the topics' traffic interleaves."""
        turn = threading.Barrier(len(by_topic), timeout=WAIT)
        errors = []

        def publish(topic, bodies):
            try:
                size = -(-len(bodies) // CHUNKS)
                for i in range(CHUNKS):
                    turn.wait()
                    self.cairnd.mpub(topic, bodies[i * size:(i + 1) * size])
            except BaseException as e:  # noqa: B036 -- reported by the main thread
                errors.append((topic, e))
                turn.abort()

        threads = [threading.Thread(target=publish, args=item, daemon=True)
                   for item in by_topic.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=WAIT)
        self.assertFalse([t for t in threads if t.is_alive()], "a publisher still running")
        self.assertEqual(errors, [])

    def influx_totals(self, measurements):
        return {m: (self.influx.count(m, self.db), self.influx.sum(m, self.db))
                for m in measurements}

    def test_mixed_stream_every_point_in_influxdb_every_line_at_the_logger(self):
        logs = sample_traffic("logs", 2000)
        points = sample_traffic("metrics", 3000)
        logger = self.worker(CAIRN_LOGGER, "cairn-logger", "--lines-per-app=100000")
        metrics = self.worker(CAIRN_METRICS, "cairn-metrics", f"--influxdb-url={self.influx.url}",
                              f"--database={self.db}", "--flush-interval=200ms")
        # Both subscribed (the logger after its warm start) before anything is published.
        wait_until(lambda: self.metric(logger, "cairn_logger_nsqd_connections") == 1 and
                   self.metric(metrics, "cairn_metrics_nsqd_connections") == 1,
                   "both workers connected")

        self.publish_mixed({"logs": logs, "metrics": points})
        for topic, bodies in (("logs", logs), ("metrics", points)):
            self.assertEqual(self.cairnd.topic_stats(topic)["message_count"], len(bodies), topic)

        # Every point in InfluxDB: the count and the sum of value of every measurement.
        expected = expected_totals(points)
        want_counts = {m: count for m, (count, _) in expected.items()}
        counts = lambda: {m: self.influx.count(m, self.db) for m in expected}  # noqa: E731
        try:
            wait_until(lambda: counts() == want_counts, f"InfluxDB counts {want_counts}", WAIT)
        except AssertionError:
            self.assertEqual(counts(), want_counts)  # says which measurement is off
            raise
        got = self.influx_totals(expected)
        for m, (count, total) in expected.items():
            self.assertEqual(got[m][0], count, m)
            self.assertAlmostEqual(got[m][1], total, delta=1e-6 * max(1.0, abs(total)), msg=m)
        shown = self.influx.query("SHOW MEASUREMENTS", self.db)["results"][0]["series"][0]
        self.assertEqual(sorted(v[0] for v in shown["values"]), sorted(expected))

        # Every log line at the logger, for its app, in publish order.
        wait_until(lambda: self.metric(logger, "cairn_logger_messages_total") == len(logs),
                   f"the logger to handle {len(logs)} messages", WAIT)
        by_app = expected_by_app(logs)
        self.assertGreater(len(by_app), 5)
        for app, lines in by_app.items():
            status, body = http_request("GET", "127.0.0.1", logger.port("http"),
                                        "/logs/" + urllib.parse.quote(app, safe="") +
                                        "?log_lines=1000000")
            self.assertEqual(status, 200, app)
            self.assertEqual(body, "".join(line + "\n" for line in lines), app)

        # Each worker handled every message once and holds none.
        wait_until(lambda: self.metric(metrics, "cairn_metrics_messages_total") == len(points),
                   f"cairn-metrics to handle {len(points)} messages", WAIT)
        self.assertEqual(self.metric(metrics, "cairn_metrics_points_written_total"), len(points))
        self.assertEqual(self.metric(metrics, "cairn_metrics_messages_in_flight"), 0)
        self.assertEqual(self.metric(logger, "cairn_logger_messages_total", 'result="stored"'),
                         len(logs))
        self.assertEqual(self.metric(logger, "cairn_logger_lines"), len(logs))
        self.assertEqual(self.metric(logger, "cairn_logger_apps"), len(by_app))
        self.assertEqual(self.metric(logger, "cairn_logger_messages_in_flight"), 0)

        # And the broker agrees: both channels drained, nothing in flight.
        for topic, channel in (("logs", "logger"), ("metrics", "influxdb")):
            stats = wait_until(lambda: (lambda s: s if s and s["depth"] == 0 and
                                        s["in_flight_count"] == 0 else None)(
                self.cairnd.channel_stats(topic, channel)), f"{topic}/{channel} drained", WAIT)
            self.assertEqual((stats["depth"], stats["in_flight_count"]), (0, 0))

        self.assertEqual(logger.stop(), 0, logger.log()[-3000:])
        self.assertEqual(metrics.stop(), 0, metrics.log()[-3000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
