"""The Grafana dashboards in deploy/grafana/ against the binaries they describe.

- Both JSON models parse; every panel has a data source (the dashboard's templated one) and
  targets with a query.
- cairn.json (Prometheus): cairnd, cairn-logger and cairn-metrics run on loopback and carry a
  little traffic; every metric name in any expression of the dashboard (panels and template
  variables) must be a sample name one of their /metrics pages shows (a histogram only as its
  _bucket, _sum or _count series), and every label a selector matches on, groups by or puts in a
  legend must exist on those metrics (or be one Prometheus adds, such as `instance`).
- influxdb.json (InfluxQL): when influxd is installed, cairn-metrics writes cairn-sample's router
  points through cairnd into a real InfluxDB and every panel's query, its variables filled in,
  must run without error and return data.
- telegraf.conf parses as TOML with the option names Telegraf's plugins read.

Standard library only, run by /usr/bin/python3. Env: CAIRN_BIN (directory of the binaries,
default /work/main/build/release/bin; cairn-sample is taken from there too), CAIRN_SOURCE (the
repository, default: two levels up). Every wait is bounded; every
process started is killed (SIGKILL) at the end of its test, by cleanups registered as it starts,
so a setUp that fails half-way leaves nothing behind."""

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import unittest

SOURCE = os.environ.get("CAIRN_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CAIRN_BIN") or "/work/main/build/release/bin"
CAIRN_JSON = os.path.join(SOURCE, "deploy", "grafana", "cairn.json")
INFLUX_JSON = os.path.join(SOURCE, "deploy", "grafana", "influxdb.json")
TELEGRAF_CONF = os.path.join(SOURCE, "deploy", "k8s", "collectors", "telegraf.conf")

sys.path.insert(0, os.path.join(SOURCE, "tests", "consumers"))
import harness  # noqa: E402  (tests/consumers/harness.py: processes, InfluxDB, bounded waits)

harness.CAIRND = os.path.join(BIN, "cairnd")
harness.CAIRN_SAMPLE = os.path.join(BIN, "cairn-sample")

# Labels Prometheus attaches to every scraped series (target labels, and the usual Kubernetes
# service-discovery relabelling), so a dashboard may group by them without the binary having them.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "service", "endpoint",
                 "node"}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}

# What the Deis output (and cairn-sample metrics) writes: the InfluxDB dashboard may name only these.
ROUTER_MEASUREMENTS = {"deis_router_request_time_ms", "deis_router_response_time_ms",
                       "deis_router_bytes_sent"}
ROUTER_TAGS = {"app", "status_code", "host"}


# ---------------------------------------------------------------------------------------------
# Reading dashboards and PromQL

def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dashboard):
    """Every panel, rows' nested panels included; rows themselves are returned too."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _blank_strings_and_variables(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    return re.sub(r"\$\{[^}]*\}|\$\w+", " 0 ", s)


def promql_metric_names(expr):
    """Metric names an expression selects: identifiers that are not functions, aggregations,
    keywords, label names (in {...}, by(...), on(...), ...) or durations."""
    s = _blank_strings_and_variables(expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def promql_selector_labels(expr):
    """{metric: {label names matched in its selector}} for selectors that name a metric."""
    s = _blank_strings_and_variables(expr)
    out = {}
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", s):
        keys = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2)))
        out.setdefault(m.group(1), set()).update(keys)
    return out


def promql_grouping_labels(expr):
    s = _blank_strings_and_variables(expr)
    labels = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        labels.update(x.strip() for x in m.group(1).split(",") if x.strip())
    return labels


def variable_query(var):
    q = var.get("query", "")
    return q.get("query", "") if isinstance(q, dict) else q


def prometheus_queries(dashboard):
    """[(where, expr, legend labels)]: every panel target's expr and every query variable's
    PromQL (label_values(selector, label) gives its selector, and the label to check)."""
    out = []
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            out.append((f"panel {p.get('title')!r} {t.get('refId')}", t.get("expr", ""), legend))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = variable_query(v)
        m = re.fullmatch(r"\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*", q)
        if m:
            out.append((f"variable {v['name']}", m.group(1), {m.group(2)}))
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q, set()))
    return out


def check_prometheus_queries(dashboard, samples):
    """Problems found: names that no /metrics page shows, labels that none of the named metrics
    carries. `samples` maps each sample name to the set of its label names."""
    problems = []
    for where, expr, legend in prometheus_queries(dashboard):
        if not expr.strip():
            problems.append(f"{where}: empty expression")
            continue
        names = promql_metric_names(expr)
        for name in sorted(names - samples.keys()):
            hint = ""
            if name + "_bucket" in samples:
                hint = " (a histogram: use its _bucket, _sum or _count series)"
            problems.append(f"{where}: no binary exposes {name}{hint}: {expr}")
        known = set(TARGET_LABELS)
        for name in names & samples.keys():
            known |= samples[name]
        for metric, keys in promql_selector_labels(expr).items():
            for key in sorted(keys - samples.get(metric, set()) - TARGET_LABELS):
                problems.append(f"{where}: {metric} has no label {key}: {expr}")
        for label in sorted((promql_grouping_labels(expr) | legend) - known):
            problems.append(f"{where}: label {label} is on none of {sorted(names)}: {expr}")
    return problems


def parse_exposition(text):
    """Prometheus text format -> {sample name: set of label names}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+\S+", line)
        assert m, f"not a sample line: {line!r}"
        keys = set(re.findall(r'(?:^|,)\s*([a-zA-Z_]\w*)="', m.group(3) or ""))
        out.setdefault(m.group(1), set()).update(keys)
    return out


def influx_queries(dashboard):
    out = []
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            out.append((f"panel {p.get('title')!r} {t.get('refId')}", t.get("query", "")))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            out.append((f"variable {v['name']}", variable_query(v)))
    return out


def router_lines(n):
    """`n` router points in line protocol, as the Deis output writes them (cairn-sample)."""
    return harness.sample_traffic("metrics", n)


# ---------------------------------------------------------------------------------------------

class DashboardModelTest(unittest.TestCase):
    """The JSON models themselves, and the checker (a check that cannot fail proves nothing)."""

    def check_model(self, path, ds_type, query_key):
        d = load(path)
        self.assertGreaterEqual(d.get("schemaVersion", 0), 36, path)
        ds_vars = {v["name"] for v in d["templating"]["list"]
                   if v.get("type") == "datasource" and v.get("query") == ds_type}
        self.assertTrue(ds_vars, f"{path}: no templated data source of type {ds_type}")
        panels = all_panels(d)
        self.assertTrue(panels, path)
        ids = [p.get("id") for p in panels]
        self.assertEqual(len(ids), len(set(ids)), f"{path}: panel ids repeat: {ids}")
        for p in panels:
            what = f"{path}: panel {p.get('title')!r}"
            self.assertIn("gridPos", p, what)
            ds = p.get("datasource")
            self.assertIsInstance(ds, dict, f"{what} has no data source")
            self.assertEqual(ds.get("type"), ds_type, what)
            self.assertIn(ds.get("uid", "").strip("${}"), ds_vars, what)
            targets = p.get("targets")
            self.assertTrue(targets, f"{what} has no targets")
            refs = [t.get("refId") for t in targets]
            self.assertEqual(len(refs), len(set(refs)), f"{what}: refIds repeat")
            for t in targets:
                self.assertTrue(t.get(query_key, "").strip(), f"{what} {t.get('refId')}: no {query_key}")
                tds = t.get("datasource", ds)
                self.assertEqual(tds.get("type"), ds_type, what)
        return d

    def test_cairn_json_model(self):
        d = self.check_model(CAIRN_JSON, "prometheus", "expr")
        for v in d["templating"]["list"]:
            if v.get("type") == "query":
                self.assertEqual(v["datasource"]["type"], "prometheus", v["name"])

    def test_influxdb_json_model_names_only_what_the_router_output_writes(self):
        d = self.check_model(INFLUX_JSON, "influxdb", "query")
        for where, q in influx_queries(d):
            measurements = set(re.findall(r'\bFROM\s+"([^"]+)"', q, re.I))
            self.assertTrue(measurements, f"{where}: no measurement: {q}")
            self.assertLessEqual(measurements, ROUTER_MEASUREMENTS, f"{where}: {q}")
            tags = set(re.findall(r'GROUP BY[^;]*', q, re.I))
            tags = set(re.findall(r'"(\w+)"', " ".join(tags)))
            tags |= set(re.findall(r'"(\w+)"\s*=~', q))
            tags |= set(re.findall(r'WITH KEY\s*=\s*"(\w+)"', q, re.I))
            self.assertLessEqual(tags, ROUTER_TAGS, f"{where}: {q}")

    def test_the_name_check_fails_on_a_name_that_does_not_exist(self):
        samples = {"cairn_topic_messages_total": {"topic"},
                   "cairn_store_fsync_duration_seconds_bucket": {"le"},
                   "cairn_store_fsync_duration_seconds_sum": set(),
                   "cairn_store_fsync_duration_seconds_count": set()}

        def problems(expr, legend=""):
            d = {"panels": [{"title": "t", "targets": [{"refId": "A", "expr": expr,
                                                        "legendFormat": legend}]}]}
            return check_prometheus_queries(d, samples)

        self.assertEqual(problems('sum by (instance, topic) (rate(cairn_topic_messages_total'
                                  '{topic=~"$topic"}[$__rate_interval]))', "{{topic}}"), [])
        self.assertEqual(problems('histogram_quantile(0.99, sum by (le) (rate('
                                  'cairn_store_fsync_duration_seconds_bucket[5m])))'), [])
        self.assertEqual(len(problems("rate(cairn_topic_mesages_total[5m])")), 1)
        self.assertIn("histogram", problems("rate(cairn_store_fsync_duration_seconds[5m])")[0])
        self.assertEqual(len(problems('cairn_topic_messages_total{chanel="x"}')), 1)
        self.assertEqual(len(problems("sum by (channel) (cairn_topic_messages_total)")), 1)
        self.assertEqual(len(problems("cairn_topic_messages_total", "{{channel}}")), 1)
        self.assertEqual(promql_metric_names(
            'a_total / on(instance) group_left(topic) b{c="d"} offset 5m * 1e3 + vector($v)'),
            {"a_total", "b"})

    def test_telegraf_conf_uses_the_plugins_option_names(self):
        try:
            import tomllib
        except ImportError:
            self.skipTest("tomllib needs Python 3.11")
        with open(TELEGRAF_CONF, "rb") as f:
            conf = tomllib.load(f)
        nsq = conf["inputs"]["nsq"][0]
        self.assertEqual(set(nsq) - {"endpoints", "interval"}, set(), nsq)
        self.assertTrue(all(e.startswith("http://") and e.endswith(":4151")
                            for e in nsq["endpoints"]), nsq)
        consumer = conf["inputs"]["nsq_consumer"][0]
        self.assertLessEqual(set(consumer), {"nsqd", "nsqlookupd", "topic", "channel",
                                             "max_in_flight", "max_undelivered_messages",
                                             "data_format"}, consumer)
        self.assertEqual((consumer["topic"], consumer["channel"], consumer["data_format"]),
                         ("metrics", "telegraf", "influx"))
        self.assertTrue(all(a.endswith(":4150") for a in consumer["nsqd"]), consumer)
        self.assertLessEqual(consumer["max_in_flight"], 2500)  # cairnd --max-rdy-count
        out = conf["outputs"]["influxdb"][0]
        self.assertEqual(out["database"], "metrics")
        self.assertTrue(out["urls"], out)


class CairnOnLoopback(unittest.TestCase):
    """cairnd, cairn-logger and cairn-metrics on loopback, each with its own /metrics, and a
    little traffic through them (publish_traffic). Holds no test: the dashboards' and
    prometheus_test.py's classes derive from it."""

    # Flags cairnd is started with besides its addresses and data path.
    def cairnd_flags(self):
        return ()

    def setUp(self):
        # Each resource is released by a cleanup registered as soon as it exists, so a setUp
        # that fails half-way still kills what it started.
        self.dir = tempfile.mkdtemp(prefix="cairn-dashboards-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.influx = None
        if shutil.which("influxd"):
            self.influx = harness.Influx()
            self.addCleanup(self.kill_influx)
            self.influx.start()
        self.cairnd = self.start(harness.Cairnd(os.path.join(self.dir, "data"),
                                                extra=self.cairnd_flags()))
        tcp = f"127.0.0.1:{self.cairnd.port('tcp')}"
        http = f"127.0.0.1:{self.cairnd.port('http')}"
        listening = {"http": r"HTTP: listening on (\S+)"}
        self.logger = self.start(harness.Process(
            [os.path.join(BIN, "cairn-logger"), f"--nsqd-tcp-address={tcp}",
             f"--nsqd-http-address={http}", "--http-address=127.0.0.1:0"], listening,
            "cairn-logger"))
        # Without influxd: a port that refuses, so writes fail and are retried (and timed).
        influx_url = self.influx.url if self.influx else harness.refusing_url(self)
        self.metrics = self.start(harness.Process(
            [os.path.join(BIN, "cairn-metrics"), f"--nsqd-tcp-address={tcp}",
             f"--nsqd-http-address={http}", "--http-address=127.0.0.1:0",
             f"--influxdb-url={influx_url}", "--database=metrics", "--flush-interval=100ms"],
            listening, "cairn-metrics"))

    def start(self, proc):
        self.addCleanup(self.kill, proc)
        return proc.start()

    @staticmethod
    def kill(proc):
        if proc.proc is None:
            return
        proc.stop(signal.SIGKILL, timeout=10)
        for pipe in (proc.proc.stdout, proc.proc.stderr):
            if pipe:
                pipe.close()

    def kill_influx(self):
        if self.influx.proc is not None:
            self.kill(self.influx.proc)
        self.influx.cleanup()

    def scrape(self, proc):
        status, text = harness.http_request("GET", "127.0.0.1", proc.port("http"), "/metrics")
        self.assertEqual(status, 200, text)
        return text

    def metric(self, proc, name):
        return harness.metric_total("127.0.0.1", proc.port("http"), name)

    def publish_traffic(self):
        """Log records (one per filing rule) and router points (three to a message, as the Deis
        output publishes them); returns the router lines."""
        # Both workers are subscribed before anything is published.
        harness.wait_until(lambda: self.metric(self.logger, "cairn_logger_nsqd_connections") == 1
                           and self.metric(self.metrics, "cairn_metrics_nsqd_connections") == 1,
                           "both workers subscribed", 20)
        records = [
            {"log": "GET /cart 200\n", "kubernetes": {"pod_name": "web-1", "labels": {"app": "catalog"}}},
            {"log": "INFO [catalog]: deployed v2\n",
             "kubernetes": {"pod_name": "deis-controller-1", "container_name": "deis-controller",
                            "labels": {"app": "deis-controller"}}},
        ]
        self.cairnd.mpub("logs", [json.dumps(r) for r in records] + ["plain text line"])
        lines = router_lines(30)
        for i in range(0, len(lines), 3):
            self.cairnd.pub("metrics", "\n".join(lines[i:i + 3]))
        # A channel nobody reads, so lag and depth have a non-zero series too.
        status, text = self.cairnd.http("POST", "/channel/create?topic=logs&channel=idle&start=earliest")
        self.assertEqual(status, 200, text)
        harness.wait_until(lambda: (self.metric(self.logger, "cairn_logger_messages_total") or 0) >= 3,
                           "cairn-logger to store the records", 20)
        if self.influx:
            harness.wait_until(lambda: (self.metric(self.metrics, "cairn_metrics_points_written_total") or 0)
                               >= len(lines), "cairn-metrics to write every point", 30)
        else:
            harness.wait_until(lambda: (self.metric(self.metrics, "cairn_metrics_write_failures_total") or 0) >= 1,
                               "cairn-metrics to try InfluxDB", 20)
        return lines

    def samples(self, procs):
        """{sample name: label names} over the /metrics pages of `procs`."""
        samples = {}
        for proc in procs:
            for name, labels in parse_exposition(self.scrape(proc)).items():
                samples.setdefault(name, set()).update(labels)
        return samples


class DashboardAgainstBinariesTest(CairnOnLoopback):
    def test_every_metric_and_label_the_dashboard_names_exists(self):
        self.publish_traffic()
        samples = self.samples((self.cairnd, self.logger, self.metrics))
        dashboard = load(CAIRN_JSON)
        problems = check_prometheus_queries(dashboard, samples)
        self.assertEqual(problems, [], "\n".join(problems))
        used = set()
        for _, expr, _ in prometheus_queries(dashboard):
            used |= promql_metric_names(expr)
        # The dashboard covers each binary: a name of each is used.
        for prefix in ("cairn_topic_", "cairn_channel_", "cairn_store_", "cairn_logger_",
                       "cairn_metrics_"):
            self.assertTrue(any(n.startswith(prefix) for n in used), prefix)
        print(f"\n{len(used)} metric names checked against the binaries: "
              + ", ".join(sorted(used)), file=sys.stderr)

    def test_influxdb_dashboard_queries_return_the_router_points(self):
        if not self.influx:
            self.skipTest("influxd is not installed (Debian package influxdb)")
        lines = self.publish_traffic()
        stamps = [int(line.rsplit(" ", 1)[1]) for line in lines]
        subst = {
            "$timeFilter": f"time >= {min(stamps)} AND time <= {max(stamps)}",
            "$__interval_ms": "1000",
            "$__interval": "1s",
            "$app": ".*",
        }
        dashboard = load(INFLUX_JSON)
        for where, q in influx_queries(dashboard):
            for key in sorted(subst, key=len, reverse=True):
                q = q.replace(key, subst[key])
            self.assertIsNone(re.search(r"\$\w|\$\{", q), f"{where}: a variable left unfilled: {q}")
            result = self.influx.query(q, "metrics")["results"][0]
            self.assertNotIn("error", result, f"{where}: {q}")
            values = [v for s in result.get("series", []) for v in s["values"]]
            self.assertTrue(values, f"{where}: no data: {q}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
