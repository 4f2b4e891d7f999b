"""The contract deploy/k8s/collectors/fluentd.conf's output relies on, against a real cairnd.

fluentd is not packaged in Debian, so it cannot run here; what its built-in out_http (fluentd
1.16, lib/fluent/plugin/out_http.rb) does with cairnd's answers is read from its source and the
configuration, and each of those answers is produced by a real cairnd:

- A request shaped as out_http sends a chunk (Ruby Net::HTTP's request line and headers, the
  json formatter's body: one record a line, ending in a newline; Content-Type
  application/x-ndjson) is answered 200 only once durable, and gives one message a record, each
  the record's line.
- A publish that fails gets an answer out_http retries: cairnd stopped refuses the connection
  (an exception, always retried); a store that cannot write (a real full disk: a small tmpfs,
  as root) answers 503, which the configuration lists as retryable, and the same chunk retried
  once there is room again is taken once. A chunk that can never be taken (413 for a record over
  --max-msg-size) is not retried and goes to the configuration's <secondary> file.
- A retry after a lost answer (the request sent whole, the answer never read; or cairnd killed
  with the request in flight) gives at most one extra copy of the chunk, never a loss, and the
  copy is visible: the same records, byte for byte, in the same order, right after the first.

Python standard library only; environment as dashboards_test.py (CAIRN_BIN)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dashboards_test import SOURCE, CairnOnLoopback, harness  # noqa: E402

FLUENTD_CONF = os.path.join(SOURCE, "deploy", "k8s", "collectors", "fluentd.conf")


def live_match(conf):
    """The live (uncommented) <match kubernetes.**> section's text."""
    m = re.search(r"(?ms)^<match kubernetes\.\*\*>\n(.*?)^</match>", conf)
    assert m, "no live <match kubernetes.**>"
    return m.group(1)


def records(n, tag="a"):
    """n log records as the metadata filter leaves them, one with characters JSON escapes."""
    out = []
    for i in range(n):
        out.append({"log": f"GET /cart/{tag}{i} 200\n", "stream": "stdout",
                    "time": f"2026-11-29T10:00:{i % 60:02d}.{i:09d}Z",
                    "kubernetes": {"pod_name": f"web-{i % 3}", "namespace_name": "shop",
                                   "labels": {"app": "catalog"}}})
    out[0]["log"] = 'quote " tab \t newline \n unicode \u00e9\u4e2d\n'
    return out


def ndjson(recs):
    """The body out_http's json formatter makes of a chunk: one record a line."""
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for r in recs).encode()


def endpoint_path():
    """The path and query of the live output's endpoint: where fluentd publishes."""
    with open(FLUENTD_CONF, encoding="utf-8") as f:
        m = re.search(r'(?m)^\s*endpoint "http://#\{[^}]*\}(/[^"]*)"$', live_match(f.read()))
    assert m, "no endpoint in the live <match>"
    return m.group(1)


def out_http_request(port, body):
    """The bytes Ruby's Net::HTTP sends for out_http's POST (headers as Net::HTTP sets them)."""
    return (f"POST {endpoint_path()} HTTP/1.1\r\n"
            "Content-Type: application/x-ndjson\r\n"
            "Accept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3\r\n"
            "Accept: */*\r\n"
            "User-Agent: Ruby\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n").encode() + body


def send(port, body, read_answer=True):
    """Sends one out_http request; returns (status, body) or None when the answer is not read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(out_http_request(port, body))
        if not read_answer:
            s.shutdown(socket.SHUT_WR)
            return None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(head.split(b" ")[1]), rest.decode()


class FluentdContractTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cairn-fluentd-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data = os.path.join(self.dir, "data")
        self.cairnd = self.start_cairnd()
        # A channel from the start of the log sees every copy of every record.
        for path in ("/topic/create?topic=logs",
                     "/channel/create?topic=logs&channel=check&start=earliest"):
            status, text = self.cairnd.http("POST", path)
            self.assertEqual(status, 200, text)

    def start_cairnd(self, tcp=0, http=0):
        proc = harness.Cairnd(self.data, tcp, http)
        self.addCleanup(CairnOnLoopback.kill, proc)
        return proc.start()

    def messages(self, expected):
        """The topic's messages, from its start: `expected` of them, then a short look for more."""
        reader = harness.NsqReader(self.cairnd.port("tcp"), "logs", "check")
        self.addCleanup(reader.close)
        got = reader.take(expected)
        return got + reader.take(1, timeout=0.5)

    def test_a_chunk_as_out_http_sends_it_is_one_message_a_record(self):
        recs = records(50)
        self.assertEqual(send(self.cairnd.port("http"), ndjson(recs)), (200, "OK"))
        got = self.messages(len(recs))
        self.assertEqual([json.loads(m) for m in got], recs)
        # The largest chunk the configuration makes (chunk_limit_size) is taken whole.
        limit = re.search(r"(?m)^\s*chunk_limit_size (\d+)m$", live_match(open(FLUENTD_CONF).read()))
        self.assertIsNotNone(limit)
        big = records(1)[0]
        big["log"] = "x" * 16384 + "\n"  # a container line is at most 16 KiB
        line = (json.dumps(big) + "\n").encode()
        body = line * (int(limit.group(1)) * 2**20 // len(line))
        self.assertEqual(send(self.cairnd.port("http"), body), (200, "OK"))

    def test_failed_publishes_are_answered_so_that_out_http_retries_them(self):
        match = live_match(open(FLUENTD_CONF).read())
        self.assertRegex(match, r"(?m)^\s*@type http$")
        retryable = {int(c) for c in re.search(r"retryable_response_codes \[([\d, ]+)\]",
                                                match).group(1).split(",")}
        # cairnd's answer to a publish its store could not write (fault_test.cc: a full disk).
        self.assertIn(503, retryable)
        self.assertRegex(match, r"(?m)^\s*retry_forever true$")
        # A record over --max-msg-size can never be taken: not retried, kept on the node.
        over = b'{"log":"' + b"x" * (1 << 20) + b'"}\n'
        status, text = send(self.cairnd.port("http"), over)
        self.assertEqual((status, text), (413, "{\"message\":\"MSG_TOO_BIG\"}"))
        self.assertNotIn(status, retryable)
        self.assertRegex(match, r"(?ms)<secondary>\s*@type secondary_file")
        # cairnd stopped: the connection is refused, an error out_http always retries.
        port = self.cairnd.port("http")
        self.assertEqual(self.cairnd.stop(), 0, self.cairnd.log())
        with self.assertRaises(ConnectionRefusedError):
            send(port, ndjson(records(3)))

    def test_a_full_disk_answers_503_and_the_retried_chunk_lands_once_there_is_room(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs (a real full disk)")
        mnt = os.path.join(self.dir, "mnt")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", mnt]).returncode:
            self.skipTest("could not mount a tmpfs")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        ballast = os.path.join(mnt, "ballast")
        with open(ballast, "wb") as f:
            for _ in range(150):
                f.write(b"z" * (1 << 20))
        proc = harness.Cairnd(os.path.join(mnt, "data"), extra=("--compression=none",))
        self.addCleanup(CairnOnLoopback.kill, proc)
        cairnd = proc.start()
        http = cairnd.port("http")
        # Chunks of 1 MiB (64 container lines of 16 KiB) until the disk is full.
        line = records(1)[0]
        line["log"] = "y" * 16384 + "\n"
        chunk = ndjson([line] * 64)
        acknowledged, answer = 0, None
        for _ in range(300):
            answer = send(http, chunk)
            if answer != (200, "OK"):
                break
            acknowledged += 1
        self.assertEqual(answer, (503, '{"message":"EXITING"}'), f"after {acknowledged} chunks")
        # out_http retries the chunk (503 is retryable) with backoff; room comes back meanwhile.
        os.remove(ballast)
        harness.wait_until(lambda: send(http, chunk) == (200, "OK"),
                           "the retried chunk to be taken once there is room", 60)
        stats = cairnd.topic_stats("logs")
        # Every acknowledged chunk, and the retried one once: nothing lost, nothing doubled.
        self.assertEqual(stats["message_count"], 64 * (acknowledged + 1), stats)

    def test_a_retry_after_a_lost_answer_duplicates_the_chunk_once_and_loses_nothing(self):
        first, second = records(40, "a"), records(30, "b")
        # The answer to the first chunk is lost: out_http's read_timeout fires and it retries.
        self.assertIsNone(send(self.cairnd.port("http"), ndjson(first), read_answer=False))
        harness.wait_until(lambda: self.cairnd.topic_stats("logs").get("message_count") == 40,
                           "the unanswered chunk to be written", 20)
        self.assertEqual(send(self.cairnd.port("http"), ndjson(first)), (200, "OK"))
        self.assertEqual(send(self.cairnd.port("http"), ndjson(second)), (200, "OK"))
        got = [json.loads(m) for m in self.messages(110)]
        # Exactly one extra copy, the whole chunk, right after the first, byte for byte.
        self.assertEqual(got, first + first + second)

    def test_cairnd_killed_with_a_chunk_in_flight_then_the_retry_loses_nothing(self):
        http, tcp = self.cairnd.port("http"), self.cairnd.port("tcp")
        recs = records(200)
        body = ndjson(recs)
        with socket.create_connection(("127.0.0.1", http), timeout=30) as s:
            s.sendall(out_http_request(http, body))
            self.cairnd.send(signal.SIGKILL)
            self.cairnd.proc.wait(timeout=10)
        self.cairnd = self.start_cairnd(tcp, http)
        self.assertEqual(send(http, body), (200, "OK"))
        # Either the first attempt was durable before the kill (two copies) or not (one).
        count = self.cairnd.topic_stats("logs")["message_count"]
        self.assertIn(count, (len(recs), 2 * len(recs)))
        got = [json.loads(m) for m in self.messages(count)]
        self.assertIn(got, (recs, recs + recs))


if __name__ == "__main__":
    unittest.main(verbosity=2)
