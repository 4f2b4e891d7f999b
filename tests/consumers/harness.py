"""Real processes for the end-to-end tests of the workers: cairnd, InfluxDB (Debian's influxd,
with its own config and data directory, on loopback ports it picks), the workers, and a minimal
NSQ reader to look into a topic. Standard library only; every wait is bounded."""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

CAIRND = os.environ.get("CAIRND", "")
CAIRN_SAMPLE = os.environ.get("CAIRN_SAMPLE", "")

# cairnd's admin credential: every cairnd started here requires it for the HTTP calls that can
# erase messages (its --admin-secret-file), and the workers are given it (ADMIN_FLAG), as a
# deployment would give them the same Secret.
_admin_dir = tempfile.TemporaryDirectory(prefix="cairn-admin-")
ADMIN_SECRET_FILE = os.path.join(_admin_dir.name, "admin-secret")
ADMIN_SECRET = "cairn-test-admin"
with open(ADMIN_SECRET_FILE, "w") as f:
    f.write(ADMIN_SECRET + "\n")
ADMIN_FLAG = f"--admin-secret-file={ADMIN_SECRET_FILE}"


def wait_until(predicate, what, timeout=20):
    """Polls predicate() until it returns a truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})"[:2000])


def refusing_url(test):
    """An http:// URL on loopback that refuses connections at once: a port bound, so nothing else
    takes it while `test` runs, and never listened on. Released when `test` ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    test.addCleanup(sock.close)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def http_request(method, host, port, path, body=None, headers=None, timeout=10, context=None):
    status, text, _ = http_exchange(method, host, port, path, body, headers, timeout, context)
    return status, text


def http_exchange(method, host, port, path, body=None, headers=None, timeout=10, context=None):
    """As http_request, with the response's headers too: (status, text, headers). With an
    ssl.SSLContext `context`, over HTTPS."""
    if context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), r.headers
    finally:
        conn.close()


# The measurements of the sample router points (cairn-sample metrics).
MEASUREMENTS = ("deis_router_request_time_ms", "deis_router_response_time_ms",
                "deis_router_bytes_sent")


def expected_totals(lines):
    """{measurement: (count, sum of value)} of line-protocol lines from cairn-sample."""
    out = {}
    for line in lines:
        measurement = line.split(",", 1)[0]
        value = line.split(" value=", 1)[1].split(" ", 1)[0].rstrip("i")
        count, total = out.get(measurement, (0, 0.0))
        out[measurement] = (count + 1, total + float(value))
    return out


def sample_traffic(kind, n):
    """`n` records of cairn-sample's `kind` (logs: JSON log records; metrics: router points in
    line protocol), the default seed: the same lines on every run."""
    out = subprocess.run([CAIRN_SAMPLE, kind, str(n)], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    lines = out.splitlines()
    assert len(lines) == n, f"cairn-sample {kind} {n} gave {len(lines)} lines"
    return lines


class Process:
    """A child process whose stderr (and stdout) lines are collected; `listening` maps a name to
    a regex with one group, the address the process logs once it listens."""

    def __init__(self, args, listening, name):
        self.args, self.listening, self.name = args, listening, name
        self.proc = None
        self.lines = []
        self.stdout = ""
        self.addresses = {}

    def start(self, timeout=20):
        self.lines = []
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        for key, pattern in self.listening.items():
            rx = re.compile(pattern)

            def found():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n" +
                                         "\n".join(self.lines[-30:]))
                for line in list(self.lines):
                    m = rx.search(line)
                    if m:
                        return m.group(1)
                return None
            addr = wait_until(found, f"{self.name} to log {pattern}", timeout)
            host, _, port = addr.rpartition(":")
            self.addresses[key] = (host.strip("[]"), int(port))
        return self

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.stdout += line

    def port(self, key):
        return self.addresses[key][1]

    def log(self):
        return "\n".join(self.lines)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, signo):
        self.proc.send_signal(signo)

    def stop(self, signo=signal.SIGTERM, timeout=30):
        """Sends `signo` and waits; returns the exit code (negative: killed by a signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signo)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"{self.name} did not exit within {timeout}s of {signo}")
        self._reader.join(timeout=5)
        self._out_reader.join(timeout=5)
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


def nsqlookupd(test):
    """A Process running nsqlookupd from $NSQ_BIN_DIR on loopback ports, started ("tcp" and
    "http" addresses); skips `test` when NSQ_BIN_DIR has none."""
    binary = os.path.join(os.environ.get("NSQ_BIN_DIR", ""), "nsqlookupd")
    if not os.environ.get("NSQ_BIN_DIR") or not os.access(binary, os.X_OK):
        test.skipTest(f"needs nsqlookupd from NSQ_BIN_DIR ({binary!r} is not there)")
    return Process([binary, "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"],
                   {"tcp": r"TCP: listening on (\S+)", "http": r"HTTP: listening on (\S+)"},
                   "nsqlookupd")


class Cairnd(Process):
    def __init__(self, data_path, tcp_port=0, http_port=0, extra=()):
        super().__init__([CAIRND, f"--data-path={data_path}",
                          f"--tcp-address=127.0.0.1:{tcp_port}",
                          f"--http-address=127.0.0.1:{http_port}",
                          "--https-address=127.0.0.1:0",  # served only with a certificate
                          *([] if any(a.startswith("--admin-") for a in extra) else [ADMIN_FLAG]),
                          *extra],
                         {"tcp": r"TCP: listening on (\S+)", "http": r"HTTP: listening on (\S+)"},
                         "cairnd")

    def restart_same_ports(self, data_path, extra=()):
        tcp, http_ = self.port("tcp"), self.port("http")
        assert self.stop() == 0, self.log()
        again = Cairnd(data_path, tcp, http_, extra)
        return again.start()

    def http(self, method, path, body=None, admin=False):
        """`admin`: with the admin credential, for the calls that can erase messages."""
        headers = {"Authorization": f"Bearer {ADMIN_SECRET}"} if admin else None
        return http_request(method, "127.0.0.1", self.port("http"), path, body, headers)

    def mpub(self, topic, bodies):
        assert all("\n" not in b for b in bodies)
        status, text = self.http("POST", f"/mpub?topic={topic}", "\n".join(bodies).encode())
        assert status == 200, (status, text)

    def pub(self, topic, body):
        status, text = self.http("POST", f"/pub?topic={topic}", body.encode())
        assert status == 200, (status, text)

    def channel_stats(self, topic, channel):
        status, text = self.http("GET", f"/stats?format=json&topic={topic}&channel={channel}")
        assert status == 200, text
        for t in json.loads(text)["topics"] or []:
            for c in t["channels"]:
                if c["channel_name"] == channel:
                    return c
        return None

    def topic_stats(self, topic):
        status, text = self.http("GET", f"/stats?format=json&topic={topic}")
        for t in json.loads(text)["topics"] or []:
            if t["topic_name"] == topic:
                return t
        return None


def make_certificates(directory):
    """The tests' certificates (tests/server/make_test_certs.sh) in `directory`: ca.pem,
    server.pem and server.key (for 127.0.0.1), and the rest that script lists."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server",
                          "make_test_certs.sh")
    subprocess.run(["bash", script, directory], check=True, capture_output=True)
    return directory


class Influx:
    """Debian's influxd on loopback, in a temporary directory that outlives restarts. Given a
    directory of make_certificates(), it serves HTTPS with server.pem."""

    def __init__(self, certificates=None):
        self.dir = tempfile.mkdtemp(prefix="cairn-influx-")
        self.proc = None
        self.http_port = 0
        self.certificates = certificates
        self.context = None
        if certificates:
            self.context = ssl.create_default_context(cafile=os.path.join(certificates, "ca.pem"))

    def start(self, timeout=30):
        conf = os.path.join(self.dir, "influxdb.conf")
        with open(conf, "w") as f:
            f.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:0"
[meta]
  dir = "{self.dir}/meta"
[data]
  dir = "{self.dir}/data"
  wal-dir = "{self.dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false
  max-body-size = 0
{self._https()}
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
""")
        self.proc = Process(["influxd", "-config", conf],
                            {"http": r'msg="Listening on HTTP".* addr=(\S+)'}, "influxd")
        self.proc.start(timeout)
        self.http_port = self.proc.port("http")
        wait_until(lambda: self._ping(), "influxd /ping", timeout)
        return self

    def _https(self):
        if not self.certificates:
            return ""
        return (f'  https-enabled = true\n'
                f'  https-certificate = "{self.certificates}/server.pem"\n'
                f'  https-private-key = "{self.certificates}/server.key"')

    def request(self, method, path, body=None, headers=None):
        return http_request(method, "127.0.0.1", self.http_port, path, body, headers,
                            context=self.context)

    def _ping(self):
        try:
            return self.request("GET", "/ping")[0] == 204
        except OSError:
            return False

    @property
    def url(self):
        scheme = "https" if self.certificates else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def stop(self):
        if self.proc is not None:
            code = self.proc.stop()
            self.proc = None
            return code
        return None

    def query(self, q, db=None):
        params = {"q": q}
        if db:
            params["db"] = db
        status, text = self.request("POST", "/query", urllib.parse.urlencode(params),
                                    {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, (status, text)
        return json.loads(text)

    def rows(self, q, db):
        """The first series' rows of `q`, as dicts; [] when there is none, including when the
        database does not exist (nothing was ever written to it)."""
        result = self.query(q, db)["results"][0]
        if result.get("error", "").startswith("database not found"):
            return []
        assert "error" not in result, result
        out = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values))
                row.update(series.get("tags", {}))
                out.append(row)
        return out

    def count(self, measurement, db):
        rows = self.rows(f'SELECT count("value") FROM "{measurement}"', db)
        return rows[0]["count"] if rows else 0

    def sum(self, measurement, db):
        rows = self.rows(f'SELECT sum("value") FROM "{measurement}"', db)
        return rows[0]["sum"] if rows else 0

    def write(self, db, body):
        return self.request("POST", f"/write?db={db}&precision=ns", body.encode())

    def cleanup(self):
        self.stop()
        subprocess.run(["rm", "-rf", self.dir], check=False)


class WithInflux(unittest.TestCase):
    """A test class with one InfluxDB for all its tests (each test makes its own database)."""

    @classmethod
    def setUpClass(cls):
        cls.influx = Influx().start()

    @classmethod
    def tearDownClass(cls):
        cls.influx.cleanup()


class NsqReader:
    """A minimal NSQ V2 consumer: subscribes, takes up to `n` messages (FINs them), returns the
    bodies. Enough to look into a topic such as the rejected one."""

    def __init__(self, port, topic, channel):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"  V2")
        self.sock.sendall(f"SUB {topic} {channel}\n".encode())
        self._expect_ok()

    def _frame(self):
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        return struct.unpack(">i", data[:4])[0], data[4:]

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def _expect_ok(self):
        kind, data = self._frame()
        assert kind == 0 and data == b"OK", (kind, data)

    def take(self, n, timeout=20):
        self.sock.sendall(f"RDY {n}\n".encode())
        bodies = []
        deadline = time.monotonic() + timeout
        while len(bodies) < n and time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                kind, data = self._frame()
            except socket.timeout:
                break
            if kind == 0 and data == b"_heartbeat_":
                self.sock.sendall(b"NOP\n")
            elif kind == 2:
                msg_id = data[10:26]
                bodies.append(data[26:].decode("utf-8", "replace"))
                self.sock.sendall(b"FIN " + msg_id + b"\n")
        return bodies

    def close(self):
        self.sock.close()


def metrics_text(host, port):
    """A worker's /metrics as {"name{labels}": value}."""
    status, text = http_request("GET", host, port, "/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric_total(host, port, name, labels=None):
    """A worker's /metrics sample `name{labels}`; without labels, the sum over the family's
    samples. None when there is no such sample."""
    total, seen = 0.0, False
    for key, value in metrics_text(host, port).items():
        if labels:
            match = key == f"{name}{{{labels}}}"
        else:
            match = key == name or key.startswith(name + "{")
        if match:
            total += value
            seen = True
    return total if seen else None
