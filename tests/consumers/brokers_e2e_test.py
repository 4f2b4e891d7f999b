"""cairn-metrics and cairn-replay consuming from two brokers at once: two real cairnd processes on
loopback, each holding its own `metrics` topic, and a real InfluxDB (Debian's influxd). Message
ids are topic offsets and both brokers count from 0, so every message of one broker has a twin
of the same id on the other; the workers must tell them apart by the broker they came from.

Environment: CAIRND, CAIRN_METRICS, CAIRN_REPLAY (the binaries). Standard library only; every
wait is bounded."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ADMIN_FLAG, Cairnd, NsqReader, Process, WithInflux, metrics_text,  # noqa: E402
                     nsqlookupd, wait_until)

CAIRN_METRICS = os.environ.get("CAIRN_METRICS", "")
CAIRN_REPLAY = os.environ.get("CAIRN_REPLAY", "")
N = 100  # messages published to each broker
WAIT = 30  # seconds, the most any single wait may take


def bodies(broker):
    """N messages of one point each, without a timestamp (the worker gives each its message's
    publish time, which cairnd makes unique within a topic): series `load,broker=<name>`, values
    1..N, so the count and the sum per broker say whether every point arrived."""
    return [f"load,broker={broker} value={i}i" for i in range(1, N + 1)]


EXPECTED = {"a": (N, N * (N + 1) // 2), "b": (N, N * (N + 1) // 2)}


class TwoBrokers(WithInflux):
    """One InfluxDB for the class; two fresh cairnd and a fresh database for each test."""

    def setUp(self):
        for var, path in (("CAIRND", os.environ.get("CAIRND", "")),
                          ("CAIRN_METRICS", CAIRN_METRICS), ("CAIRN_REPLAY", CAIRN_REPLAY)):
            self.assertTrue(path and os.path.exists(path), f"{var}={path!r} does not exist")
        self.tmp = tempfile.TemporaryDirectory(prefix="cairn-brokers-e2e-")
        self.brokers = {name: Cairnd(os.path.join(self.tmp.name, name)).start()
                        for name in ("a", "b")}
        self.db = f"db_{self.id().rsplit('.', 1)[-1]}"[:60]
        self.workers = []
        if not self.influx.proc:
            self.influx.start()

    def tearDown(self):
        for p in self.workers + list(self.brokers.values()):
            if p.running():
                p.kill()
        self.tmp.cleanup()

    def tcp(self, name):
        return f"127.0.0.1:{self.brokers[name].port('tcp')}"

    def http(self, name):
        return f"127.0.0.1:{self.brokers[name].port('http')}"

    def publish_both(self):
        for name in ("a", "b"):
            self.brokers[name].mpub("metrics", bodies(name))

    def by_broker(self):
        """{broker tag: (count, sum)} of what InfluxDB holds."""
        result = self.influx.query('SELECT count("value"), sum("value") FROM "load" GROUP BY '
                                   '"broker"', self.db)["results"][0]
        if result.get("error", "").startswith("database not found"):
            return {}
        self.assertNotIn("error", result)
        return {s["tags"]["broker"]: (s["values"][0][1], s["values"][0][2])
                for s in result.get("series", [])}

    def wait_points(self, expected):
        wait_until(lambda: self.by_broker() == expected, f"InfluxDB to hold {expected}", WAIT)

    def channel_settled(self, name, channel):
        """The channel's depth, messages in flight and ack floor on broker `name`."""
        c = self.brokers[name].channel_stats("metrics", channel)
        return c and (c["depth"], c["in_flight_count"], c["cursor_offset"])

    def channels(self, name):
        t = self.brokers[name].topic_stats("metrics")
        return None if t is None else [c["channel_name"] for c in t["channels"]]

    # ---- cairn-metrics ----

    def start_metrics(self, *extra):
        return self.start_metrics_only(f"--nsqd-tcp-address={self.tcp('a')}",
                                       f"--nsqd-tcp-address={self.tcp('b')}", *extra)

    def start_metrics_only(self, *flags):
        w = Process([CAIRN_METRICS, "--http-address=127.0.0.1:0",
                     f"--influxdb-url={self.influx.url}", f"--database={self.db}", *flags],
                    {"http": r"HTTP: listening on (\S+)"}, "cairn-metrics")
        self.workers.append(w)
        return w.start()

    def worker_metric(self, w, name):
        return metrics_text("127.0.0.1", w.port("http")).get(name, 0)

    def test_metrics_writes_every_point_of_both_brokers_and_finishes_every_message(self):
        # Both backlogs are there before the worker starts, so messages with the same id from
        # the two brokers are held at the same time (one batch of 200, written after 500 ms).
        self.publish_both()
        w = self.start_metrics("--flush-interval=500ms", "--batch-size=1000")
        self.wait_points(EXPECTED)
        # Every message finished on its own broker: nothing waiting, nothing in flight, the
        # ack floor past the last offset.
        for name in ("a", "b"):
            wait_until(lambda: self.channel_settled(name, "influxdb") == (0, 0, N),
                       f"every message finished on broker {name}", WAIT)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_total"), 2 * N)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_points_written_total"), 2 * N)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_in_flight"), 0)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_nsqd_connections"), 2)

    def test_metrics_knows_a_redelivery_after_a_reconnect_for_the_same_message(self):
        # Nothing is written until SIGTERM: every message stays held while broker a restarts,
        # and a delivers its 100 again on the new connection.
        self.publish_both()
        w = self.start_metrics("--flush-interval=10m", "--batch-size=1000")
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_messages_in_flight") == 2 * N,
                   "200 messages held", WAIT)
        self.brokers["a"] = self.brokers["a"].restart_same_ports(os.path.join(self.tmp.name, "a"))
        wait_until(lambda: self.channel_settled("a", "influxdb") == (0, N, 0),
                   "broker a to deliver its 100 again", WAIT)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_nsqd_connections") == 2,
                   "both brokers subscribed", WAIT)
        # The same 200 messages, not 300: the redelivery is known as the message held.
        self.assertEqual(self.worker_metric(w, "cairn_metrics_messages_in_flight"), 2 * N)
        self.assertEqual(self.by_broker(), {})
        self.assertEqual(w.stop(signal.SIGTERM), 0, w.log()[-3000:])
        self.assertIn(f"stopped: finished={2 * N} points_written={2 * N}", w.log())
        self.wait_points(EXPECTED)
        for name in ("a", "b"):
            wait_until(lambda: self.channel_settled(name, "influxdb") == (0, 0, N),
                       f"every message finished on broker {name}", WAIT)

    def test_a_rejected_line_names_the_broker_it_came_from(self):
        # Offset 0 on both brokers: the record's message_id alone would not say which.
        self.brokers["a"].pub("metrics", "load,broker=a value=1i")
        self.brokers["b"].pub("metrics", "not line protocol")
        self.start_metrics("--flush-interval=100ms")
        self.wait_points({"a": (1, 1)})
        # Refused lines go to the rejected topic on the first broker.
        wait_until(lambda: (self.brokers["a"].topic_stats("metrics_rejected") or {})
                   .get("message_count") == 1, "one rejected line", WAIT)
        reader = NsqReader(self.brokers["a"].port("tcp"), "metrics_rejected", "check")
        try:
            records = [json.loads(b) for b in reader.take(1)]
        finally:
            reader.close()
        self.assertEqual(len(records), 1)
        self.assertEqual((records[0]["line"], records[0]["message_id"],
                          records[0]["nsqd_tcp_address"]),
                         ("not line protocol", "0000000000000000", self.tcp("b")))
        wait_until(lambda: self.channel_settled("b", "influxdb") == (0, 0, 1),
                   "the message finished on broker b", WAIT)

    # ---- through nsqlookupd ----

    def start_lookupd(self):
        lookupd = nsqlookupd(self)
        self.workers.append(lookupd)
        return lookupd.start()

    def register(self, name, lookupd):
        """Broker `name` again on its data, now registering with `lookupd` (new ports)."""
        if self.brokers[name].running():
            self.assertEqual(self.brokers[name].stop(), 0)
        self.brokers[name] = Cairnd(os.path.join(self.tmp.name, name), extra=(
            "--broadcast-address=127.0.0.1",
            f"--lookupd-tcp-address=127.0.0.1:{lookupd.port('tcp')}")).start()

    def test_metrics_consumes_the_brokers_lookupd_lists_as_they_come_and_go(self):
        lookupd = self.start_lookupd()
        self.register("a", lookupd)
        self.publish_both()  # b is not registered: its points stay there
        w = self.start_metrics_only(f"--lookupd-http-address=127.0.0.1:{lookupd.port('http')}",
                                    "--lookupd-poll-interval=200ms",
                                    f"--nsqd-tcp-address={self.tcp('a')}",
                                    "--flush-interval=100ms")
        self.wait_points({"a": EXPECTED["a"]})
        self.assertEqual(self.worker_metric(w, "cairn_metrics_brokers"), 1)

        self.register("b", lookupd)  # found at the next poll, its backlog consumed
        self.wait_points(EXPECTED)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_nsqd_connections") == 2,
                   "subscribed on both brokers", WAIT)

        # a is killed (-9): nsqlookupd forgets it as its connection drops, and the worker drops
        # it too (it is not dialled again) while b carries on.
        self.brokers["a"].kill()
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_brokers") == 1,
                   "broker a dropped", WAIT)
        self.assertEqual(self.worker_metric(w, "cairn_metrics_nsqd_connections"), 1)

        # It comes back on its volume, on other ports: found again; what it gets next is written
        # and nothing it had is written twice.
        self.register("a", lookupd)
        wait_until(lambda: self.worker_metric(w, "cairn_metrics_nsqd_connections") == 2,
                   "broker a found again", WAIT)
        self.brokers["a"].pub("metrics", "load,broker=a value=1000i")
        self.wait_points({"a": (N + 1, EXPECTED["a"][1] + 1000), "b": EXPECTED["b"]})
        for name in ("a", "b"):
            wait_until(lambda: self.channel_settled(name, "influxdb")[:2] == (0, 0),
                       f"every message finished on broker {name}", WAIT)

    def test_replay_backfills_every_broker_lookupd_lists_for_the_topic(self):
        lookupd = self.start_lookupd()
        for name in ("a", "b"):
            self.register(name, lookupd)
        self.publish_both()
        lookup = f"--lookupd-http-address=127.0.0.1:{lookupd.port('http')}"
        r = subprocess.run([CAIRN_REPLAY, ADMIN_FLAG, lookup, f"--influxdb-url={self.influx.url}",
                            f"--database={self.db}", "--flush-interval=100ms", "--from", "-1h",
                            "--json"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["messages"], summary["points"]), (2 * N, 2 * N))
        self.assertEqual(sorted(b["nsqd_tcp_address"] for b in summary["brokers"]),
                         sorted([self.tcp("a"), self.tcp("b")]))
        self.wait_points(EXPECTED)
        # A topic no broker has: nothing to replay, and it says so.
        r = subprocess.run([CAIRN_REPLAY, ADMIN_FLAG, lookup, "--topic=absent", "--from", "-1h",
                            f"--influxdb-url={self.influx.url}", f"--database={self.db}"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("no broker nsqlookupd lists has topic absent", r.stderr)

    # ---- cairn-replay ----

    def replay(self, *args, brokers=("a", "b")):
        cmd = [CAIRN_REPLAY, ADMIN_FLAG, f"--influxdb-url={self.influx.url}", f"--database={self.db}",
               "--flush-interval=100ms"]
        cmd += [f"--nsqd-tcp-address={self.tcp(b)}" for b in brokers]
        cmd += [f"--nsqd-http-address={self.http(b)}" for b in brokers]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)

    def test_replay_backfills_the_range_of_every_broker(self):
        self.publish_both()
        r = self.replay("--from", "-1h", "--json")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["messages"], summary["points"]), (2 * N, 2 * N))
        self.assertEqual([(b["nsqd_tcp_address"], b["first_offset"], b["end_offset"])
                          for b in summary["brokers"]],
                         [(self.tcp("a"), 0, N), (self.tcp("b"), 0, N)])
        self.wait_points(EXPECTED)
        # The replay channel is gone from both brokers.
        self.assertEqual((self.channels("a"), self.channels("b")), ([], []))
        # And in text: the brokers added up.
        r = self.replay("--from", "-1h")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn(f"messages={2 * N} points={2 * N}", r.stdout)
        self.wait_points(EXPECTED)

    def test_replay_a_broker_without_the_topic_adds_an_empty_range(self):
        self.brokers["a"].mpub("metrics", bodies("a"))
        r = self.replay("--from", "-1h", "--json")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["messages"], summary["points"]), (N, N))
        self.wait_points({"a": EXPECTED["a"]})
        # Nothing was consumed from b, so nothing was created there either.
        self.assertIsNone(self.channels("b"))
        self.assertEqual(self.channels("a"), [])

    def test_replay_refuses_unpaired_addresses(self):
        r = subprocess.run([CAIRN_REPLAY, ADMIN_FLAG, f"--influxdb-url={self.influx.url}", "--from", "-1h",
                            f"--nsqd-tcp-address={self.tcp('a')}",
                            f"--nsqd-tcp-address={self.tcp('b')}",
                            f"--nsqd-http-address={self.http('a')}"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("one --nsqd-http-address per --nsqd-tcp-address", r.stderr)
        self.assertEqual(self.channels("a"), None)

    def test_replay_failure_names_the_brokers_not_finished_and_where_to_resume(self):
        self.publish_both()
        self.assertEqual(self.influx.stop(), 0)
        r = self.replay("--from", "-1h", "--give-up-after=2s")
        self.assertEqual(r.returncode, 1, r.stderr[-3000:])
        self.assertIn(f"0 of {2 * N} messages", r.stderr)
        for name in ("a", "b"):
            self.assertRegex(r.stderr, rf"not finished:.*{self.tcp(name)} \(0 of {N} messages")
        self.assertEqual((self.channels("a"), self.channels("b")), ([], []))
        self.influx.start()
        resume = r.stderr.split("resume with: --from ", 1)[1].split()[0]
        r = self.replay("--from", resume)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.wait_points(EXPECTED)


if __name__ == "__main__":
    unittest.main(verbosity=2)
