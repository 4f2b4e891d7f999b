"""A real Prometheus (Debian's `prometheus`) on deploy/prometheus/, against the binaries.

- promtool: `check rules` on cairn-alerts.yml, `test rules` on cairn-alerts_test.yml (each alert
  fires on a series that should fire it and stays quiet beside one that should not), and
  prometheus-rule.yaml (the Operator's PrometheusRule) holds the same groups.
- cairnd (registered with a real nsqlookupd), cairn-logger, cairn-metrics and cairn-replay run on
  loopback under a little traffic (dashboards_test.CairnOnLoopback). Prometheus runs on the
  scrape configuration deploy/ ships, its Kubernetes pod discovery replaced by the test's
  processes carrying the labels Kubernetes would give their pods, so the relabelling is the
  shipped one: every target is up, under the job the rules select on, and pods that are not
  Cairn's, or have finished, are dropped.
- `promtool check metrics` accepts each process's /metrics.
- Every PromQL expression of deploy/grafana/cairn.json and of the rules evaluates without error
  through Prometheus' HTTP API, and returns series once the traffic is in; every rule group
  evaluates healthy; every metric and label the rules name is one the binaries expose.

Debian's Prometheus 2.42 is built without Kubernetes discovery, so the file with discovery
replaced is the one `promtool check config` and Prometheus read. Skipped where prometheus or
promtool are not installed (CI installs them: .ci/dev). Environment as dashboards_test.py, plus
NSQ_BIN_DIR for nsqlookupd."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashboards_test  # noqa: E402  (its fixture, its PromQL readers)
from dashboards_test import BIN, SOURCE, CairnOnLoopback, harness  # noqa: E402

PROMETHEUS_DIR = os.path.join(SOURCE, "deploy", "prometheus")
SCRAPE_CONFIG = os.path.join(PROMETHEUS_DIR, "prometheus.yml")
RULES = os.path.join(PROMETHEUS_DIR, "cairn-alerts.yml")
RULE_TESTS = os.path.join(PROMETHEUS_DIR, "cairn-alerts_test.yml")
PROMETHEUS_RULE = os.path.join(PROMETHEUS_DIR, "prometheus-rule.yaml")

# Grafana's variables, filled in as a dashboard would on this test's data.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$topic": ".*",
                     "$channel": ".*", "$instance": ".*"}


def need_tools(test):
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            test.skipTest(f"{tool} is not installed (Debian package prometheus)")


def promtool(*args, stdin=None):
    r = subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    return r.returncode, r.stdout + r.stderr


def listening_ports(pid):
    """The TCP ports process `pid` listens on, from /proc (Prometheus does not log the port it
    was given when asked for port 0)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# In a rule's expression: the metrics it selects by name, and its __name__ regular expressions.
SELECTOR = re.compile(r"(?<![\w:])(cairn_[a-z_]+|up\b)(\{[^}]*\})?")
NAME_MATCHER = re.compile(r'__name__=~"([^"]+)"')


def rule_queries(groups):
    """[(where, expr)] for every rule of `groups`."""
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"])
            for g in groups for r in g["rules"]]


class PromtoolTest(unittest.TestCase):
    def setUp(self):
        need_tools(self)

    def test_rules_check_and_their_unit_tests_pass(self):
        code, out = promtool("check", "rules", RULES)
        self.assertEqual(code, 0, out)
        code, out = promtool("test", "rules", RULE_TESTS)
        self.assertEqual(code, 0, out)

    def test_a_rule_test_fails_when_an_alert_would_not_fire(self):
        # The unit tests can fail: with the lag threshold raised over every series, the test
        # that expects CairnChannelLagHigh to fire fails.
        d = tempfile.mkdtemp(prefix="cairn-rules-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(RULES, encoding="utf-8") as f:
            rules = f.read()
        changed = rules.replace("expr: vector(900)", "expr: vector(90000)")
        self.assertNotEqual(changed, rules)
        with open(os.path.join(d, "cairn-alerts.yml"), "w", encoding="utf-8") as f:
            f.write(changed)
        shutil.copy(RULE_TESTS, d)
        code, out = promtool("test", "rules", os.path.join(d, "cairn-alerts_test.yml"))
        self.assertNotEqual(code, 0, out)
        self.assertIn("CairnChannelLagHigh", out)

    def test_the_prometheus_rule_holds_the_same_groups(self):
        with open(RULES, encoding="utf-8") as f:
            groups = yaml.safe_load(f)["groups"]
        with open(PROMETHEUS_RULE, encoding="utf-8") as f:
            rule = yaml.safe_load(f)
        self.assertEqual((rule["apiVersion"], rule["kind"]),
                         ("monitoring.coreos.com/v1", "PrometheusRule"))
        self.assertEqual(rule["spec"]["groups"], groups)


class PrometheusScrapesCairnTest(CairnOnLoopback):
    def cairnd_flags(self):
        self.lookupd = harness.nsqlookupd(self)
        self.addCleanup(self.kill, self.lookupd)
        self.lookupd.start()
        return (f"--lookupd-tcp-address=127.0.0.1:{self.lookupd.port('tcp')}",
                "--broadcast-address=127.0.0.1")

    def setUp(self):
        need_tools(self)
        super().setUp()
        self.publish_traffic()
        # A topic with a retention by size, as the volume alerts and the bytes panel compare.
        status, text = self.cairnd.http(
            "POST", "/topic/config?topic=logs&retention_bytes=1000000000", admin=True)
        self.assertEqual(status, 200, text)
        # cairn-replay over the router points, writing to a port that refuses: it keeps retrying,
        # so it is still there to be scraped (and its write failures have a series).
        self.replay = self.start(harness.Process(
            [os.path.join(BIN, "cairn-replay"),
             f"--nsqd-tcp-address=127.0.0.1:{self.cairnd.port('tcp')}",
             f"--nsqd-http-address=127.0.0.1:{self.cairnd.port('http')}",
             "--http-address=127.0.0.1:0", "--from=-1h", "--to=now",
             f"--influxdb-url={harness.refusing_url(self)}", "--database=metrics",
             "--flush-interval=100ms", harness.ADMIN_FLAG],
            {"http": r"HTTP: listening on (\S+)"}, "cairn-replay"))
        self.prometheus = self.start_prometheus()

    def pods(self):
        """Static targets standing for pods, with the labels Kubernetes' pod discovery gives
        them: (those the shipped relabelling keeps, one per process; those it must drop:
        nsqlookupd's pod, a replay Job's pod that finished, cairnd's TCP port)."""
        def pod(app, name, proc, port_name="http", phase="Running"):
            return {"targets": [f"127.0.0.1:{proc.port(port_name)}"],
                    "labels": {
                        "__meta_kubernetes_namespace": "cairn",
                        "__meta_kubernetes_pod_name": name,
                        "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
                        "__meta_kubernetes_pod_container_port_name": port_name,
                        "__meta_kubernetes_pod_phase": phase}}
        keep = [pod("cairnd", "cairnd-0", self.cairnd),
                pod("cairn-logger", "cairn-logger-5d8f-x2k4q", self.logger),
                pod("cairn-metrics", "cairn-metrics-7c9b-h8m2z", self.metrics),
                pod("cairn-replay", "cairn-replay-q7x2v", self.replay)]
        drop = [pod("nsqlookupd", "nsqlookupd-0", self.lookupd),
                pod("cairn-replay", "cairn-replay-old-j4k9p", self.replay, phase="Succeeded"),
                pod("cairnd", "cairnd-0", self.cairnd, port_name="tcp")]
        return keep, drop

    def start_prometheus(self):
        with open(SCRAPE_CONFIG, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [os.path.join(PROMETHEUS_DIR, r) for r in config["rule_files"]]
        (job,) = config["scrape_configs"]
        self.assertIn("kubernetes_sd_configs", job)
        del job["kubernetes_sd_configs"]
        keep, drop = self.pods()
        job["static_configs"] = keep + drop
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        code, out = promtool("check", "config", path)
        self.assertEqual(code, 0, out)
        proc = harness.Process(
            ["prometheus", f"--config.file={path}",
             f"--storage.tsdb.path={os.path.join(self.dir, 'tsdb')}",
             "--web.listen-address=127.0.0.1:0"], {}, "prometheus")
        self.start(proc)
        harness.wait_until(lambda: proc.proc.poll() is not None or any(
            "Server is ready to receive web requests" in line for line in proc.lines),
            "prometheus to be ready", 30)
        self.assertIsNone(proc.proc.poll(), proc.log())
        ports = listening_ports(proc.proc.pid)
        self.assertEqual(len(ports), 1, proc.log())
        self.prom_port = ports[0]
        return proc

    def api(self, path, **params):
        query = urllib.parse.urlencode(params)
        status, text = harness.http_request("GET", "127.0.0.1", self.prom_port,
                                            f"/api/v1/{path}{'?' + query if query else ''}")
        body = json.loads(text)
        self.assertEqual(status, 200, text)
        self.assertEqual(body["status"], "success", text)
        return body["data"]

    def query(self, expr):
        status, text = harness.http_request(
            "GET", "127.0.0.1", self.prom_port,
            "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return status, json.loads(text)

    def test_every_target_is_up_and_every_query_evaluates(self):
        with open(RULES, encoding="utf-8") as f:
            groups = yaml.safe_load(f)["groups"]
        self.check_targets()
        self.check_metrics_pages_and_rule_names(groups)
        self.check_queries(groups)

    def check_targets(self):
        """Every process is a target that is up, under the job its program names; the pods
        that are not targets were dropped by the relabelling."""
        keep, drop = self.pods()

        def targets_up():
            active = self.api("targets")["activeTargets"]
            return len(active) == len(keep) and all(t["health"] == "up" for t in active)
        harness.wait_until(targets_up, "every target up", 60)
        data = self.api("targets")
        jobs = sorted(t["labels"]["job"] for t in data["activeTargets"])
        self.assertEqual(jobs, ["cairn-logger", "cairn-metrics", "cairn-replay", "cairnd"])
        for t in data["activeTargets"]:
            self.assertEqual(t["labels"]["namespace"], "cairn", t)
            self.assertTrue(t["labels"]["pod"], t)
        self.assertEqual(len(data["droppedTargets"]), len(drop), data["droppedTargets"])

    def check_metrics_pages_and_rule_names(self, groups):
        """promtool accepts every /metrics page; the rules name only what the binaries expose
        (their own recording rules and `up` aside)."""
        procs = (self.cairnd, self.logger, self.metrics, self.replay)
        for proc in procs:
            code, out = promtool("check", "metrics", stdin=self.scrape(proc))
            self.assertEqual(code, 0, f"{proc.name}: {out}")
        samples = self.samples(procs)
        samples.update({r["record"]: set() for g in groups for r in g["rules"] if "record" in r})
        samples["up"] = set()
        pseudo = {"panels": [{"title": where, "targets": [{"refId": "A", "expr": expr}]}
                             for where, expr in rule_queries(groups)]}
        problems = dashboards_test.check_prometheus_queries(pseudo, samples)
        self.assertEqual(problems, [], "\n".join(problems))
        # A __name__ matcher names metrics the check above cannot see: each must match one.
        for where, expr in rule_queries(groups):
            for rx in NAME_MATCHER.findall(expr):
                self.assertTrue(any(re.fullmatch(rx, n) for n in samples), f"{where}: {rx}")

    def check_queries(self, groups):
        """Every dashboard and rule expression evaluates, and returns series once the traffic has
        been scraped long enough to make a rate. Alert expressions hold only when something is
        wrong, so of those the selectors must return series; every rule evaluates healthy."""
        queries = []
        for where, expr, _ in dashboards_test.prometheus_queries(
                dashboards_test.load(dashboards_test.CAIRN_JSON)):
            for key in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(key, GRAFANA_VARIABLES[key])
            self.assertIsNone(re.search(r"\$\w|\$\{", expr), f"{where}: unfilled: {expr}")
            queries.append((f"dashboard {where}", expr))
        for g in groups:
            for r in g["rules"]:
                if "record" in r:
                    queries.append((f"rule {r['record']}", r["expr"]))
                    continue
                status, body = self.query(r["expr"])
                self.assertEqual((status, body["status"]), (200, "success"),
                                 f"alert {r['alert']}: {body}")
                selectors = SELECTOR.findall(r["expr"])
                selectors += [("", '{__name__=~"%s"}' % rx) for rx in NAME_MATCHER.findall(r["expr"])]
                queries += [(f"alert {r['alert']}: selector", name + labels)
                            for name, labels in selectors]
        for where, expr in queries:
            status, body = self.query(expr)
            self.assertEqual((status, body["status"]), (200, "success"), f"{where}: {body}")

        def empty():
            return [f"{where}: {expr}" for where, expr in queries
                    if not self.query(expr)[1]["data"]["result"]]
        try:
            harness.wait_until(lambda: not empty(), "every query to return series", 60)
        except AssertionError:
            self.fail("no series:\n" + "\n".join(empty()))

        def evaluated():
            got = self.api("rules")["groups"]
            return len(got) == len(groups) and all(
                r.get("health") == "ok" for g in got for r in g["rules"])
        harness.wait_until(evaluated, "every rule evaluated healthy", 30)

if __name__ == "__main__":
    unittest.main(verbosity=2)
