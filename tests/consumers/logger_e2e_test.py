"""cairn-logger end to end: a real cairnd on loopback ports it picks, the logger consuming from it,
traffic from cairn-sample published over cairnd's /mpub, and the logger's HTTP API checked
against the filing rules: every line for the right app in order, the last N, 204 for an unknown
app, DELETE, follow, the warm start after a restart (the same lines, none twice), SIGTERM, and a
cairnd restarted under the logger. Standard library only; every wait is bounded.

Environment: CAIRND, CAIRN_LOGGER, CAIRN_SAMPLE (the binaries)."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ADMIN_FLAG, CAIRN_SAMPLE, CAIRND, Cairnd, Process, http_exchange,  # noqa: E402
                     http_request, metric_total, nsqlookupd, sample_traffic, wait_until)

CAIRN_LOGGER = os.environ.get("CAIRN_LOGGER", "")
WAIT = 20  # seconds, the most any single wait may take

CONTROLLER_RE = re.compile(r"^(INFO|WARN|DEBUG|ERROR)\s+(\[(\S+)\])+:(.*)")


def strip_newline(s):
    if s.endswith("\n"):
        s = s[:-1]
    if s.endswith("\r"):
        s = s[:-1]
    return s


def file_record(body):
    """The filing rules of consumers/logger/log_record.h, independently: (app, line)."""
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    if not isinstance(j, dict):
        return "_unfiled", strip_newline(body)
    k8s = j.get("kubernetes") if isinstance(j.get("kubernetes"), dict) else {}
    pod = k8s.get("pod_name") if isinstance(k8s.get("pod_name"), str) else ""
    prefix = f"{pod} -- " if pod else ""
    log = j.get("log") if isinstance(j.get("log"), str) else None
    container = k8s.get("container_name")
    if isinstance(container, str) and "deis-controller" in container and log is not None:
        m = CONTROLLER_RE.match(log)
        if m:
            return m.group(3), f"{prefix}{m.group(1)} {m.group(4).strip()}"
    labels = k8s.get("labels") if isinstance(k8s.get("labels"), dict) else {}
    app = labels.get("app")
    text = strip_newline(log if log is not None else body)
    if isinstance(app, str) and app:
        return app, prefix + text
    return "_unfiled", prefix + text


def expected_by_app(bodies):
    out = {}
    for b in bodies:
        app, line = file_record(b)
        out.setdefault(app, []).append(line)
    return out


def controller_record(app, text, pod="deis-controller-3539876574-wq6jx"):
    return json.dumps({"log": f"INFO [{app}]: {text}\n", "stream": "stderr",
                       "kubernetes": {"namespace_name": "deis", "pod_name": pod,
                                      "container_name": "deis-controller",
                                      "labels": {"app": "deis-controller", "heritage": "deis"}},
                       "time": "2016-10-18T20:29:38.123456+00:00"})


def app_record(app, text, pod=None):
    pod = pod or f"{app}-web-1-x7k2p"
    return json.dumps({"log": text + "\n", "stream": "stdout",
                       "kubernetes": {"namespace_name": app, "pod_name": pod,
                                      "container_name": f"{app}-web",
                                      "labels": {"app": app, "heritage": "deis"}},
                       "time": "2016-10-18T20:29:38.123456+00:00"})


def controller_log(log, pod="ctl"):
    """A record of the controller's container whose log is `log`, as is (any tenant can publish
    one that names the controller)."""
    return json.dumps({"log": log, "stream": "stderr",
                       "kubernetes": {"pod_name": pod, "container_name": "deis-controller",
                                      "labels": {"app": "deis-controller"}}})


MAX_MSG_SIZE = 1 << 20  # cairnd's --max-msg-size default


def controller_log_of_size(start, pad, size=MAX_MSG_SIZE):
    """controller_log(start + pad...) of exactly `size` bytes."""
    base = len(controller_log(start))
    body = controller_log(start + pad * (size - base))
    assert len(body) == size
    return body


class LoggerE2E(unittest.TestCase):
    def setUp(self):
        for var, path in (("CAIRND", CAIRND), ("CAIRN_LOGGER", CAIRN_LOGGER),
                          ("CAIRN_SAMPLE", CAIRN_SAMPLE)):
            self.assertTrue(path and os.path.exists(path), f"{var}={path!r} does not exist")
        self.tmp = tempfile.mkdtemp(prefix="cairn-logger-e2e-")
        self.processes = []
        self.start_cairnd()

    def tearDown(self):
        for p in reversed(self.processes):
            if p.running():
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_cairnd(self, tcp_port=0, http_port=0):
        self.cairnd = Cairnd(f"{self.tmp}/data", tcp_port, http_port)
        self.processes.append(self.cairnd)
        self.cairnd.start()
        self.tcp_port, self.http_port = self.cairnd.port("tcp"), self.cairnd.port("http")

    def start_logger(self, *extra):
        self.logger = Process([
            CAIRN_LOGGER, ADMIN_FLAG, f"--nsqd-tcp-address=127.0.0.1:{self.tcp_port}",
            f"--nsqd-http-address=127.0.0.1:{self.http_port}", "--http-address=127.0.0.1:0",
            *extra], {"http": r"HTTP: listening on (\S+)"}, "cairn-logger")
        self.processes.append(self.logger)
        self.port = self.logger.start().port("http")
        return self.logger

    def publish(self, bodies):
        for i in range(0, len(bodies), 500):
            self.cairnd.mpub("logs", bodies[i:i + 500])

    def request(self, method, path, body=None):
        """To the logger: (status, text, headers)."""
        return http_exchange(method, "127.0.0.1", self.port, path, body)

    def get(self, app, query=""):
        path = "/logs/" + urllib.parse.quote(app, safe="") + (f"?{query}" if query else "")
        status, body, _ = self.request("GET", path)
        return status, body

    def metric(self, name, labels=None):
        """The sample's value; without labels, the sum over the family's samples."""
        total = metric_total("127.0.0.1", self.port, name, labels)
        self.assertIsNotNone(total, f"{name} not in /metrics")
        return total

    def wait_stored(self, n):
        wait_until(lambda: self.metric("cairn_logger_messages_total") >= n,
                   f"the logger to handle {n} messages")

    def bodies_of(self, apps, n=1_000_000):
        out = {}
        for app in apps:
            status, body = self.get(app, f"log_lines={n}")
            out[app] = body if status == 200 else status
        return out

    def traffic(self, n):
        """The sample plus controller lines and plain text, interleaved."""
        bodies = sample_traffic("logs", n)
        extra = [controller_record("checkout", "admin deployed 2fd9226"),
                 controller_record("brand-new-app", "admin created   "),
                 "a plain text line from somewhere", "another one\r",
                 json.dumps({"log": "json with no labels\n", "kubernetes": {"pod_name": "lost"}}),
                 app_record("catalog", "an app line written by the test")]
        for i, e in enumerate(extra):
            bodies.insert((i + 1) * len(bodies) // (len(extra) + 1), e)
        return bodies

    # ---- the tests ----

    def test_every_line_is_served_for_its_app_in_order(self):
        self.start_logger("--lines-per-app=100000")
        bodies = self.traffic(3000)
        self.publish(bodies)
        self.wait_stored(len(bodies))
        expected = expected_by_app(bodies)
        self.assertIn("_unfiled", expected)
        self.assertIn("brand-new-app", expected)
        self.assertGreater(len(expected), 10)
        for app, lines in expected.items():
            status, body = self.get(app, "log_lines=100000")
            self.assertEqual(status, 200, app)
            self.assertEqual(body, "".join(l + "\n" for l in lines), app)
        self.assertEqual(self.get("checkout", "log_lines=1")[1].count("\n"), 1)
        self.assertEqual(self.get("brand-new-app")[1],
                         "deis-controller-3539876574-wq6jx -- INFO admin created\n")
        self.assertEqual(self.get("_unfiled")[1],
                         "a plain text line from somewhere\nanother one\nlost -- json with no labels\n")
        self.assertEqual(self.metric("cairn_logger_apps"), len(expected))
        self.assertEqual(self.metric("cairn_logger_lines"), len(bodies))
        self.assertEqual(self.metric("cairn_logger_messages_in_flight"), 0)
        self.assertGreater(self.metric("cairn_logger_bytes"), 0)
        status, text = http_request("GET", "127.0.0.1", self.port, "/healthz")
        self.assertEqual((status, text), (200, "OK"))

    def test_last_n_per_app(self):
        self.start_logger()  # 1000 lines per app
        bodies = self.traffic(4000)
        self.publish(bodies)
        self.wait_stored(len(bodies))
        expected = expected_by_app(bodies)
        self.assertGreater(max(len(v) for v in expected.values()), 1000, "the cap is exercised")
        for app, lines in expected.items():
            kept = lines[-1000:]
            for query, n in (("", 100), ("log_lines=1", 1), ("log_lines=37", 37),
                             ("log_lines=5000", 1000), ("log_lines=abc", 100),
                             ("log_lines=0", 100), ("log_lines=-3", 100)):
                status, body = self.get(app, query)
                self.assertEqual(status, 200, (app, query))
                self.assertEqual(body, "".join(l + "\n" for l in kept[-n:]), (app, query))
            status, body = self.get(app + "/", "log_lines=2")  # a trailing slash is the same
            self.assertEqual(body, "".join(l + "\n" for l in kept[-2:]), app)
        _, _, headers = self.request("GET", "/logs/checkout")
        self.assertEqual(headers.get("Content-Type"), "text/plain; charset=utf-8")

    def test_unknown_app_and_delete(self):
        self.start_logger()
        bodies = self.traffic(500)
        self.publish(bodies)
        self.wait_stored(len(bodies))
        expected = expected_by_app(bodies)
        status, body = self.get("no-such-app")
        self.assertEqual((status, body), (204, ""))
        status, body, _ = self.request("DELETE", "/logs/checkout")
        self.assertEqual((status, body), (200, ""))
        self.assertEqual(self.get("checkout"), (204, ""))
        status, body, _ = self.request("DELETE", "/logs/no-such-app/")
        self.assertEqual((status, body), (200, ""))
        # The others are untouched, and new lines make the app again.
        self.assertEqual(self.get("catalog", "log_lines=1000")[1],
                         "".join(l + "\n" for l in expected["catalog"][-1000:]))
        self.publish([app_record("checkout", "after the delete")])
        wait_until(lambda: self.get("checkout")[0] == 200, "a line for checkout again")
        self.assertEqual(self.get("checkout")[1], "checkout-web-1-x7k2p -- after the delete\n")
        self.assertEqual(self.request("GET", "/logs/")[0], 404)
        self.assertEqual(self.request("POST", "/logs/checkout")[0], 405)

    def test_follow_streams_new_lines(self):
        self.start_logger()
        self.publish([app_record("feeds", f"old {i}") for i in range(5)])
        self.wait_stored(5)
        conn, r = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT), None
        try:
            conn.request("GET", "/logs/feeds?follow=true&log_lines=2")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
            self.assertEqual(r.readline(), b"feeds-web-1-x7k2p -- old 3\n")
            self.assertEqual(r.readline(), b"feeds-web-1-x7k2p -- old 4\n")
            wait_until(lambda: self.metric("cairn_logger_follow_streams") == 1, "the follower")
            self.publish([app_record("other", "not for this stream"),
                          app_record("feeds", "new 1"), app_record("feeds", "new 2")])
            self.assertEqual(r.readline(), b"feeds-web-1-x7k2p -- new 1\n")
            self.assertEqual(r.readline(), b"feeds-web-1-x7k2p -- new 2\n")
        finally:
            if r is not None:
                r.close()  # the socket closes only once the response lets go of it too
            conn.close()
        wait_until(lambda: self.metric("cairn_logger_follow_streams") == 0,
                   "the follower to be gone after it hung up")
        # Without log_lines a follow starts with nothing held.
        conn, r = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT), None
        try:
            conn.request("GET", "/logs/feeds/?follow=true")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            wait_until(lambda: self.metric("cairn_logger_follow_streams") == 1, "the follower")
            self.publish([app_record("feeds", "new 3")])
            self.assertEqual(r.readline(), b"feeds-web-1-x7k2p -- new 3\n")
            # SIGTERM ends the stream cleanly (the last chunk) and the logger exits 0.
            self.assertEqual(self.logger.stop(), 0, self.logger.log()[-3000:])
            self.assertEqual(r.read(), b"")
        finally:
            if r is not None:
                r.close()
            conn.close()

    def test_a_follower_that_does_not_read_is_closed(self):
        self.start_logger()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(WAIT)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(b"GET /logs/feeds?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: self.metric("cairn_logger_follow_streams") == 1, "the follower")
            # Far more than the stream's 1 MiB bound and the kernel's buffers, never read.
            line = "x" * 1000
            published = 0
            for i in range(0, 16000, 500):
                self.publish([app_record("feeds", f"{line} {j}") for j in range(i, i + 500)])
                published += 500
                if self.metric("cairn_logger_follow_streams") == 0:
                    break
            wait_until(lambda: self.metric("cairn_logger_errors_total",
                                           'kind="follow_too_slow"') == 1, "the slow follower")
            self.assertEqual(self.metric("cairn_logger_follow_streams"), 0)
        finally:
            sock.close()
        # The logger carries on; a follow asking for more backlog than a stream may queue gets
        # the newest lines that fit in 512 KiB, then what follows.
        # Every line published stored (none is in flight, and none still waits at cairnd).
        wait_until(lambda: self.metric("cairn_logger_messages_total", 'result="stored"') ==
                   published and self.metric("cairn_logger_messages_in_flight") == 0,
                   "the flood to be stored")
        held = self.get("feeds", "log_lines=1000")[1].splitlines(keepends=True)
        self.assertEqual(len(held), 1000)
        conn, r = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT), None
        try:
            conn.request("GET", "/logs/feeds?follow=true&log_lines=1000")
            r = conn.getresponse()
            wait_until(lambda: self.metric("cairn_logger_follow_streams") == 1, "the follower")
            self.publish([app_record("feeds", "still here")])
            got = []
            while True:
                line = r.readline().decode()
                self.assertTrue(line, "the stream ended")
                if line == "feeds-web-1-x7k2p -- still here\n":
                    break
                got.append(line)
            self.assertLessEqual(sum(len(l) for l in got), 512 << 10)
            self.assertGreater(len(got), 400)
            self.assertEqual(got, held[-len(got):])
        finally:
            if r is not None:
                r.close()
            conn.close()

    def test_warm_start_serves_the_same_lines_after_a_restart(self):
        self.start_logger()
        bodies = self.traffic(4000)
        # An app over the 1000 lines kept, so that the rewind below redelivers lines it dropped.
        self.assertGreater(max(len(v) for v in expected_by_app(bodies).values()), 1000)
        self.publish(bodies)
        self.wait_stored(len(bodies))
        apps = sorted(expected_by_app(bodies))
        before = self.bodies_of(apps)
        expected = {a: "".join(l + "\n" for l in v[-1000:])
                    for a, v in expected_by_app(bodies).items()}
        self.assertEqual(before, expected)
        # Redelivered or not, a second look changes nothing.
        self.assertEqual(self.metric("cairn_logger_messages_total"), len(bodies))

        self.assertEqual(self.logger.stop(), 0, self.logger.log()[-3000:])
        self.assertRegex(self.logger.log(), r"stopped: messages=\d+")
        self.start_logger()
        wait_until(lambda: self.bodies_of(apps) == before, "the same lines after the restart")
        log = self.logger.log()
        self.assertIn("warm start: channel logger rewound to", log)
        # Nothing more arrives, and nothing was stored twice.
        time.sleep(0.5)
        self.assertEqual(self.bodies_of(apps), before)
        self.assertEqual(self.metric("cairn_logger_messages_total"), len(bodies))
        self.assertEqual(self.metric("cairn_logger_lines"), sum(b.count("\n") for b in before.values()))

        # Every message delivered once more to the running logger (the channel rewound under it):
        # each is a duplicate or older than what its app dropped, and nothing changes.
        status, text = self.cairnd.http("POST",
                                        "/channel/seek?topic=logs&channel=logger&to=earliest")
        self.assertEqual(status, 200, text)
        self.wait_stored(2 * len(bodies))
        self.assertEqual(self.bodies_of(apps), before)
        self.assertEqual(self.metric("cairn_logger_messages_total", 'result="stored"'), len(bodies))
        self.assertGreater(self.metric("cairn_logger_messages_total", 'result="too_old"'), 0)

        # And it follows live from there.
        self.publish([app_record("catalog", "after the restart")])
        wait_until(lambda: self.get("catalog", "log_lines=1")[1] ==
                   "catalog-web-1-x7k2p -- after the restart\n", "the live line")

    def test_two_brokers_lines_in_publish_time_order_once_each_and_warm_start_on_both(self):
        b = Cairnd(f"{self.tmp}/data_b")
        self.processes.append(b)
        b.start()
        self.start_logger(f"--nsqd-tcp-address=127.0.0.1:{b.port('tcp')}",
                          f"--nsqd-http-address=127.0.0.1:{b.port('http')}")
        # One after the other, alternating brokers: offsets collide (both count from 0) and only
        # the publish time orders them.
        lines = [f"line {i}" for i in range(60)]
        for i, line in enumerate(lines):
            (self.cairnd if i % 2 == 0 else b).pub("logs", app_record("catalog", line))
        expected = "".join(f"catalog-web-1-x7k2p -- {line}\n" for line in lines)
        self.wait_stored(len(lines))
        self.assertEqual(self.get("catalog", "log_lines=1000"), (200, expected))
        self.assertEqual(self.metric("cairn_logger_nsqd_connections"), 2)

        self.assertEqual(self.logger.stop(), 0, self.logger.log()[-3000:])
        self.start_logger(f"--nsqd-tcp-address=127.0.0.1:{b.port('tcp')}",
                          f"--nsqd-http-address=127.0.0.1:{b.port('http')}")
        wait_until(lambda: self.get("catalog", "log_lines=1000") == (200, expected),
                   "the same lines from both brokers after the restart")
        self.assertEqual(self.logger.log().count("warm start: channel logger rewound to"), 2)
        self.assertEqual(self.metric("cairn_logger_messages_total", 'result="stored"'), len(lines))

    def test_through_lookupd_every_broker_is_read_and_rewound(self):
        lookupd = nsqlookupd(self)
        self.processes.append(lookupd)
        lookupd.start()
        register = ("--broadcast-address=127.0.0.1",
                    f"--lookupd-tcp-address=127.0.0.1:{lookupd.port('tcp')}")
        brokers = [Cairnd(f"{self.tmp}/fleet_{i}", extra=register) for i in range(2)]
        for b in brokers:
            self.processes.append(b)
            b.start()
        lines = [f"fleet {i}" for i in range(40)]
        for i, line in enumerate(lines):
            brokers[i % 2].pub("logs", app_record("catalog", line))
        expected = "".join(f"catalog-web-1-x7k2p -- {line}\n" for line in lines)
        flags = (f"--lookupd-http-address=127.0.0.1:{lookupd.port('http')}",
                 "--lookupd-poll-interval=200ms")

        def start():
            self.logger = Process([CAIRN_LOGGER, ADMIN_FLAG, "--http-address=127.0.0.1:0", *flags],
                                  {"http": r"HTTP: listening on (\S+)"}, "cairn-logger")
            self.processes.append(self.logger)
            self.port = self.logger.start().port("http")
        start()
        wait_until(lambda: self.get("catalog", "log_lines=1000") == (200, expected),
                   "the lines of both brokers, in publish-time order")
        self.assertEqual(self.logger.stop(), 0, self.logger.log()[-3000:])
        start()
        wait_until(lambda: self.get("catalog", "log_lines=1000") == (200, expected),
                   "the same lines after the restart (warm start on both brokers)")
        self.assertEqual(self.logger.log().count("warm start: channel logger rewound to"), 2)

        # A broker killed with -9 and back on its volume and its address, as a StatefulSet's pod
        # comes back, is found again; what is published next comes out in order after the rest,
        # and nothing twice: the messages whose FIN it had not persisted yet (it persists
        # cursors every 100 ms) come again from the same broker, offset and publish time. (On
        # other ports it would be another broker to the consumer, and those would show twice.)
        tcp, http_ = brokers[0].port("tcp"), brokers[0].port("http")
        brokers[0].kill()
        brokers[0] = Cairnd(f"{self.tmp}/fleet_0", tcp, http_, extra=register)
        self.processes.append(brokers[0])
        brokers[0].start()
        more = ["after the kill 0", "after the kill 1"]
        for i, line in enumerate(more):
            brokers[i % 2].pub("logs", app_record("catalog", line))
        expected += "".join(f"catalog-web-1-x7k2p -- {line}\n" for line in more)
        served = []

        def all_once():
            served[:] = [self.get("catalog", "log_lines=1000")]
            return served[0] == (200, expected)
        try:
            wait_until(all_once, "the lines published after the broker came back")
        except AssertionError:
            self.fail(f"served {served!r}\nexpected {expected!r}\n{self.logger.log()[-3000:]}")

    def test_unpaired_broker_addresses_are_refused(self):
        r = subprocess.run([CAIRN_LOGGER, f"--nsqd-tcp-address=127.0.0.1:{self.tcp_port}",
                            f"--nsqd-tcp-address=127.0.0.1:{self.tcp_port}",
                            f"--nsqd-http-address=127.0.0.1:{self.http_port}"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("one --nsqd-http-address per --nsqd-tcp-address", r.stderr)

    def alive(self):
        """The logger runs and answers /healthz within 5 s; fails at once if it died."""
        self.assertTrue(self.logger.running(),
                        f"cairn-logger exited {self.logger.proc.returncode}:\n" +
                        self.logger.log()[-3000:])
        try:
            return http_request("GET", "127.0.0.1", self.port, "/healthz", timeout=5) == (200, "OK")
        except OSError:  # timed out: the logger's thread is busy
            return False

    def test_hostile_controller_lines_do_not_stop_the_logger(self):
        # Records naming the controller's container, whose logs made a backtracking regex run
        # for minutes (groups and no colon) or overflow its stack (500 KB, 1 MiB), and a body of
        # a million "[": each is filed like any other line, and the logger keeps answering.
        many_groups = "INFO " + "[a]" * 30 + " and no colon"
        big = "x" * 500_000
        hostile = [controller_log(many_groups),
                   controller_log(f"INFO [big]: {big}\n"),
                   controller_log_of_size("WARN " + "[a]" * 340_000, "b"),
                   "[" * MAX_MSG_SIZE]
        no_match = json.loads(hostile[2])["log"]
        expected = {
            "deis-controller": f"ctl -- {many_groups}\nctl -- {no_match}\n",
            "big": f"ctl -- INFO {big}\n",
            "_unfiled": "[" * MAX_MSG_SIZE + "\n",
            "after": "after-web-1-x7k2p -- the hostile lines\n",
        }
        self.start_logger()
        for body in hostile + [app_record("after", "the hostile lines")]:
            self.cairnd.pub("logs", body)
        wait_until(lambda: self.alive() and self.get("after")[0] == 200,
                   "the line published after the hostile ones, with /healthz answering")
        self.assertEqual(self.bodies_of(expected), expected)
        self.assertEqual(self.metric("cairn_logger_messages_total"), len(hostile) + 1)

        # A restart: the warm start delivers them all again, and the logger stays up.
        self.assertEqual(self.logger.stop(), 0, self.logger.log()[-3000:])
        self.start_logger()
        wait_until(lambda: self.alive() and self.get("after")[0] == 200,
                   "the lines again after a restart, with /healthz answering")
        self.assertEqual(self.bodies_of(expected), expected)
        self.assertTrue(self.alive())

    def test_warm_start_zero_resumes_without_refill(self):
        self.start_logger()
        self.publish([app_record("feeds", "before")])
        self.wait_stored(1)
        self.assertEqual(self.logger.stop(), 0)
        self.publish([app_record("feeds", "while away")])
        self.start_logger("--warm-start=0")
        wait_until(lambda: self.get("feeds")[0] == 200, "the line published while away")
        self.assertEqual(self.get("feeds")[1], "feeds-web-1-x7k2p -- while away\n")

    def test_logger_reconnects_when_cairnd_restarts(self):
        self.start_logger()
        self.publish([app_record("feeds", "first")])
        self.wait_stored(1)
        tcp, http_ = self.tcp_port, self.http_port
        self.assertEqual(self.cairnd.stop(), 0, self.cairnd.log()[-3000:])
        wait_until(lambda: self.metric("cairn_logger_nsqd_connections") == 0, "the disconnect")
        self.assertEqual(self.get("feeds")[1], "feeds-web-1-x7k2p -- first\n")  # still served
        self.start_cairnd(tcp, http_)
        self.assertEqual((self.tcp_port, self.http_port), (tcp, http_))
        self.publish([app_record("feeds", "second")])
        wait_until(lambda: self.get("feeds")[1] ==
                   "feeds-web-1-x7k2p -- first\nfeeds-web-1-x7k2p -- second\n",
                   "the line published after cairnd came back")
        self.assertGreaterEqual(self.metric("cairn_logger_nsqd_reconnects_total"), 1)
        self.assertEqual(self.logger.stop(), 0)

    def test_waits_for_cairnd_at_start(self):
        # cairnd is down when the logger starts: it retries the warm start, then consumes.
        tcp, http_ = self.tcp_port, self.http_port
        self.assertEqual(self.cairnd.stop(), 0)
        self.start_logger()
        wait_until(lambda: "retrying in" in self.logger.log(), "a retry")
        self.start_cairnd(tcp, http_)
        self.publish([app_record("feeds", "hello")])
        wait_until(lambda: self.get("feeds")[0] == 200, "the line")
        self.assertEqual(self.logger.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
