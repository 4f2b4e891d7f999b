#!/usr/bin/python3
"""deploy/k8s against the code it deploys.

Renders the manifests with `kubectl kustomize deploy/k8s` and lints every YAML file under deploy/
(yamllint). Then checks what breaks when the manifests and the binaries disagree:

- every cairn container runs, on loopback, with exactly its manifest's flags (ConfigMap values
  and downward-API fields substituted as the kubelet does, listen addresses moved to 127.0.0.1
  port 0, the brokers it names replaced by a cairnd the test started from its own manifest, the
  InfluxDB URL by an unreachable loopback one): it starts and rejects no flag;
- every path its probes name answers 200 on the port the probe names;
- the data volume is mounted at --data-path; the grace periods exceed cairnd's drain bound
  (kDrainDeadline in src/server/main.cc) and cairn-metrics' --shutdown-timeout (its --help), and the
  processes do stop within them on SIGTERM;
- container ports are the ports the args listen on; Services' targetPorts and probes name
  container ports; the broker addresses the workers and the collectors (collectors/*.conf, their
  environment) name resolve, through the Services and the StatefulSet here, to the port cairnd
  listens on for that protocol; the collectors' configurations are mounted where they are read;
- images are named once (kustomization.yaml's images:, which replay-job.yaml must agree with);
  a namespace set with kustomize reaches every object, the ClusterRoleBinding's subject too;
- every pod runs as non-root on a read-only root file system, without capabilities; the one
  exception, fluentd reading the node's logs as root, writes only the host directory its
  configuration names.

yamllint runs with deploy/.yamllint; the test is skipped only if yamllint is not installed.

Python 3 standard library plus PyYAML (Debian's python3-yaml); run by /usr/bin/python3.
Environment: CAIRN_BIN (directory of the binaries), CAIRN_SOURCE (the repository).
Every process is killed in tearDown, every wait is bounded, everything is on loopback, port 0.
"""

import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import yaml

SOURCE = os.environ.get("CAIRN_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CAIRN_BIN") or os.path.join(SOURCE, "build", "release", "bin")
DEPLOY = os.path.join(SOURCE, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
K8S_TLS = os.path.join(DEPLOY, "k8s-tls")  # the TLS overlay
REPLAY_JOB = os.path.join(K8S, "replay-job.yaml")
CAIRN_BINARIES = ("cairnd", "cairn-logger", "cairn-metrics", "cairn-replay", "cairn-bench")
sys.path.insert(0, os.path.join(SOURCE, "tests", "consumers"))
from harness import make_certificates, refusing_url, wait_until  # noqa: E402  (tests/consumers/harness.py)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Flags that name an address to listen on, and the line the binary logs once it listens there.
LISTEN_FLAGS = {"--tcp-address": "TCP", "--http-address": "HTTP", "--https-address": "HTTPS"}
# Flags that name a broker to reach, and the broker's listen flag they must land on.
BROKER_FLAGS = {"--nsqd-tcp-address": "--tcp-address", "--nsqd-http-address": "--http-address"}
# Flags that name an nsqlookupd to reach, and its listen flag they must land on.
LOOKUPD_FLAGS = {"--lookupd-tcp-address": "--tcp-address",
                 "--lookupd-http-address": "--http-address"}
# NSQ's own binaries the manifests run (from $NSQ_BIN_DIR in the loopback runs).
NSQ_BINARIES = ("nsqlookupd", "nsqadmin")
URL_FLAGS = ("--influxdb-url",)
# Flags that name a file of the TLS Secret, and the test certificate (make_test_certs.sh) that
# stands in for each of the Secret's keys.
TLS_FILE_FLAGS = ("--tls-cert", "--tls-key", "--tls-root-ca-file", "--http-client-tls-root-ca-file")
TLS_TEST_FILES = {"tls.crt": "server.pem", "tls.key": "server.key", "ca.crt": "ca.pem"}
# Pods allowed to run as uid 0, and why: the node's container logs are root's.
ROOT_EXCEPTIONS = {("DaemonSet", "cairn-fluentd")}
# What the downward API gives the test's pods.
NAMESPACE = "cairn-test"

# Filled by setUpModule.
DOCS = []
RENDER_ERROR = None


def render(directory):
    """(documents, error) of `kubectl kustomize directory`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return [], "kubectl is not installed (Debian: kubernetes-client)"
    r = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        return [], f"kubectl kustomize {directory} exited {r.returncode}:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None], None


def setUpModule():
    global DOCS, RENDER_ERROR
    DOCS, RENDER_ERROR = render(K8S)


# ---------------------------------------------------------------------------------------------
# Reading the manifests


def read_text(path):
    with open(path) as f:
        return f.read()


def rendered():
    if RENDER_ERROR:
        raise AssertionError(RENDER_ERROR)
    return DOCS


def replay_job():
    with open(REPLAY_JOB) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert len(docs) == 1 and docs[0]["kind"] == "Job", f"{REPLAY_JOB}: one Job expected"
    return docs[0]


def workloads(include_job_template=True):
    out = [d for d in rendered() if d["kind"] in WORKLOAD_KINDS]
    if include_job_template:
        out.append(replay_job())
    return out


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload):
    return pod_spec(workload).get("containers", []) + pod_spec(workload).get("initContainers", [])


def by_kind(kind):
    return [d for d in rendered() if d["kind"] == kind]


def one(kind, name):
    found = [d for d in rendered() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def kustomization():
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        return yaml.safe_load(f)


def cairn_image():
    """The image kustomization.yaml's `images:` gives the cairn workloads, as rendered."""
    for entry in kustomization().get("images", []):
        if entry["name"] == "cairn":
            name = entry.get("newName", "cairn")
            return f"{name}:{entry['newTag']}" if "newTag" in entry else name
    raise AssertionError("kustomization.yaml sets no image named cairn")


def is_cairn(container):
    return container["image"] == cairn_image()


def binary_of(container):
    """The binary a container runs: its command, or for the cairn image its entry point
    (cairnd); None for another image's entry point."""
    if container.get("command"):
        return os.path.basename(container["command"][0])
    if not is_cairn(container):
        return None
    entry = dockerfile_entrypoint()
    return os.path.basename(entry[0]) if entry else "cairnd"


def dockerfile():
    path = os.path.join(DEPLOY, "Dockerfile")
    return read_text(path) if os.path.exists(path) else None


def dockerfile_entrypoint():
    text = dockerfile()
    if text is None:
        return None
    m = None
    for m in re.finditer(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M):
        pass
    return json.loads(m.group(1)) if m else None


def flag_items(args):
    """[(flag, value or None)] of `--flag=value` / `--flag` arguments; anything else fails."""
    out = []
    for a in args:
        if not a.startswith("--"):
            raise AssertionError(f"argument {a!r}: the test understands only --flag[=value]")
        flag, eq, value = a.partition("=")
        out.append((flag, value if eq else None))
    return out


def flag_value(args, flag):
    values = [v for f, v in flag_items(args) if f == flag]
    return values[-1] if values else None


def split_address(value):
    host, sep, port = value.rpartition(":")
    assert sep and port.isdigit(), f"{value!r} is not <host>:<port>"
    return host.strip("[]"), int(port)


def configmaps():
    return {d["metadata"]["name"]: d.get("data", {}) for d in by_kind("ConfigMap")}


def resolve_env(workload, container, pod_name):
    """The container's environment as the kubelet builds it (no Secrets here)."""
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE,
              "spec.nodeName": "node-1"}
    cms = configmaps()
    env = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        assert ref, f"{container['name']}: only configMapRef is understood in envFrom"
        assert ref["name"] in cms, (
            f"{container['name']}: envFrom names ConfigMap {ref['name']}, not rendered")
        env.update({src.get("prefix", "") + k: v for k, v in cms[ref["name"]].items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                assert path in fields, f"{container['name']}: env {e['name']} from {path}"
                env[e["name"]] = fields[path]
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                assert ref["name"] in cms, (
                    f"{workload['metadata']['name']}/{container['name']}: env {e['name']} names "
                    f"ConfigMap {ref['name']}, which is not rendered (not rewritten by kustomize?)")
                assert ref["key"] in cms[ref["name"]], (
                    f"{container['name']}: env {e['name']}: no key {ref['key']} in the ConfigMap")
                env[e["name"]] = cms[ref["name"]][ref["key"]]
            else:
                raise AssertionError(f"{container['name']}: env {e['name']}: unsupported valueFrom")
        else:
            env[e["name"]] = ""
    return env


def expand(text, env):
    """Kubernetes' $(VAR) expansion: $$ is a literal $, an undefined $(VAR) stays as it is."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def pod_name_of(workload):
    name = workload["metadata"].get("name") or workload["metadata"]["generateName"] + "x7k2p"
    return f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-5d8f9c7b6-q2w4e"


def expanded_args(workload, container):
    env = resolve_env(workload, container, pod_name_of(workload))
    args = [expand(a, env) for a in container.get("args", [])]
    for a in args:
        assert "$(" not in a, f"{container['name']}: {a!r} names a variable the container lacks"
    return args


def quantity(q):
    """Kubernetes quantities: bytes (or cores)."""
    q = str(q)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", q)
    assert m and (m.group(2) == "" or m.group(2) in units), f"quantity {q!r}"
    return float(m.group(1)) * (units[m.group(2)] if m.group(2) else 1)


def duration_seconds(text):
    """Go durations as the binaries take them (1h30m, 20s, 500ms)."""
    total, rest = 0.0, text
    for m in re.finditer(r"([0-9.]+)(h|ms|m|s|us|ns)", text):
        total += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6,
                                      "ns": 1e-9}[m.group(2)]
        rest = rest.replace(m.group(0), "", 1)
    assert rest == "" or text == "0", f"duration {text!r}"
    return total


def help_text(binary):
    r = subprocess.run([os.path.join(BIN, binary), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"{binary} --help exited {r.returncode}: {r.stderr}"
    return r.stdout


def help_default(binary, flag):
    m = re.search(rf"^\s*{re.escape(flag)} \S+?=(\S+)", help_text(binary), re.M)
    assert m, f"{binary} --help shows no default for {flag}"
    return m.group(1)


def drain_deadline_seconds():
    with open(os.path.join(SOURCE, "src", "server", "main.cc")) as f:
        m = re.search(r"kDrainDeadline\s*=\s*std::chrono::(seconds|milliseconds)\((\d+)\)",
                      f.read())
    assert m, "kDrainDeadline (std::chrono::seconds(N)) not found in src/server/main.cc"
    return int(m.group(2)) / (1000 if m.group(1) == "milliseconds" else 1)


def container_port(workload, container, port):
    """The containerPort a probe or Service port names (by name or number), or None."""
    for p in container.get("ports", []):
        if port == p.get("name") or port == p["containerPort"]:
            return p["containerPort"]
    return None


def listen_flag_for_port(container, args, number):
    for flag in LISTEN_FLAGS:
        value = flag_value(args, flag)
        if value is not None and split_address(value)[1] == number:
            return flag
    return None


def workload_for_selector(selector):
    matches = [w for w in workloads(include_job_template=False)
               if selector and all(pod_labels(w).get(k) == v for k, v in selector.items())]
    return matches


def resolve_in_cluster(host, port):
    """(workload, container, listen flag) that <host>:<port> reaches through this deployment's
    Services and StatefulSet pods, or raises with the reason."""
    labels = host.split(".")
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    statefulsets = {s["metadata"]["name"]: s for s in by_kind("StatefulSet")}
    # The rest of the name may only be a namespace and the cluster's suffix.
    def check_suffix(rest):
        allowed = [[], ["svc"], ["svc", "cluster", "local"]]
        assert (rest in allowed or (len(rest) >= 1 and rest[1:] in allowed)), (
            f"{host}: expected <name>[.<namespace>[.svc[.cluster.local]]]")
    sts_pod = re.fullmatch(r"(.+)-(\d+)", labels[0])
    if sts_pod and sts_pod.group(1) in statefulsets and len(labels) >= 2:
        sts = statefulsets[sts_pod.group(1)]
        assert labels[1] == sts["spec"]["serviceName"], (
            f"{host}: the pods of {sts['metadata']['name']} are named under "
            f"{sts['spec']['serviceName']}")
        assert labels[1] in services, f"{host}: no Service {labels[1]}"
        assert services[labels[1]]["spec"].get("clusterIP") == "None", f"{labels[1]} not headless"
        assert int(sts_pod.group(2)) < sts["spec"].get("replicas", 1), f"{host}: no such replica"
        check_suffix(labels[2:])
        for c in containers(sts):
            flag = listen_flag_for_port(c, expanded_args(sts, c), port)
            if flag and container_port(sts, c, port) == port:
                return sts, c, flag
        raise AssertionError(f"{host}:{port}: no container of {sts['metadata']['name']} "
                             "declares and listens on that port")
    assert labels[0] in services, f"{host}: no Service or StatefulSet pod of that name here"
    check_suffix(labels[1:])
    svc = services[labels[0]]
    ports = [p for p in svc["spec"]["ports"] if p["port"] == port]
    assert ports, f"{host}:{port}: Service {labels[0]} has no port {port}"
    target = ports[0].get("targetPort", port)
    targets = workload_for_selector(svc["spec"].get("selector", {}))
    assert targets, f"Service {labels[0]} selects no workload"
    for w in targets:
        for c in containers(w):
            number = container_port(w, c, target)
            if number is not None:
                flag = listen_flag_for_port(c, expanded_args(w, c), number)
                assert flag, (f"{host}:{port}: {c['name']} declares port {number}, "
                              "but no flag listens there")
                return w, c, flag
    raise AssertionError(f"{host}:{port}: targetPort {target} is no container port of the "
                         "workloads the Service selects")


# ---------------------------------------------------------------------------------------------
# Processes


class Process:
    def __init__(self, argv, name):
        self.argv, self.name, self.lines = argv, name, []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        return "\n".join(self.lines[-40:])

    def listening(self, what, timeout=20.0):
        """The port of `<what>: listening on <addr>:<port>`; fails if the process exits first."""
        rx = re.compile(rf"\b{what}: listening on (\S+)")

        def found():
            for line in list(self.lines):
                m = rx.search(line)
                if m:
                    return split_address(m.group(1))[1]
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} before listening "
                                     f"({' '.join(self.argv)}):\n{self.log()}")
            return None
        return wait_until(found, f"{self.name} to log '{what}: listening on'", timeout)

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def terminate(self, timeout):
        """SIGTERM; (exit code, seconds it took). Killed, and failed, after `timeout`."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"{self.name} still running {timeout}s after SIGTERM:\n{self.log()}")
        self.reader.join(timeout=5)
        return code, time.monotonic() - start

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=5)


def http_get(port, path, timeout=5.0, context=None):
    """GET on 127.0.0.1: (status, body), or (None, why). With an ssl.SSLContext, over HTTPS."""
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except OSError as e:
        return None, str(e)
    finally:
        conn.close()


def http_post(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", path, body=b"")
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


class Cluster:
    """Runs manifest containers as loopback processes. The broker addresses a container names are
    replaced by those of the cairnd the test started from its own manifest (`broker`)."""

    def __init__(self, test):
        self.test = test
        self.processes = []
        self.tmp = tempfile.mkdtemp(prefix="cairn-k8s-test-")
        # An InfluxDB URL nothing answers: connecting is refused at once.
        self.dead_url = refusing_url(test)
        self.broker = {}  # listen flag of the broker -> its bound port
        self.lookupd = {}  # listen flag of the one nsqlookupd standing in for all -> its port

    def close(self):
        for p in self.processes:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - tearDown must reach the others
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def argv(self, workload, container):
        """The loopback command line for a container: its manifest args, rewritten."""
        binary = binary_of(container)
        self.test.assertIn(binary, CAIRN_BINARIES + NSQ_BINARIES,
                           f"{container['name']} runs {binary}")
        args = expanded_args(workload, container)
        out = []
        for flag, value in flag_items(args):
            if flag in LISTEN_FLAGS:
                out.append(f"{flag}=127.0.0.1:0")
            elif flag == "--broadcast-address":
                # What is registered with nsqlookupd must be dialable here.
                out.append(f"{flag}=127.0.0.1")
            elif flag in LOOKUPD_FLAGS:
                target_w, target_c, target = resolve_in_cluster(*split_address(value))
                self.test.assertEqual(binary_of(target_c), "nsqlookupd", f"{flag}={value}")
                self.test.assertEqual(target, LOOKUPD_FLAGS[flag], f"{flag}={value}")
                if not self.lookupd:
                    self.start_lookupd()
                out.append(f"{flag}=127.0.0.1:{self.lookupd[target]}")
            elif flag in BROKER_FLAGS:
                host, port = split_address(value)
                _, _, target = resolve_in_cluster(host, port)
                self.test.assertEqual(target, BROKER_FLAGS[flag],
                                      f"{flag}={value} reaches cairnd's {target}")
                self.test.assertIn(target, self.broker, "start the broker first")
                out.append(f"{flag}=127.0.0.1:{self.broker[target]}")
            elif flag in URL_FLAGS:
                out.append(f"{flag}={self.dead_url}")
            elif flag == "--admin-secret-file":
                self.test.assertTrue(mounted_from_secret(workload, container, value),
                                     f"{flag}={value} is not in a volume mounted from a Secret")
                path = os.path.join(self.tmp, "admin-secret")
                with open(path, "w") as f:
                    f.write("k8s-test-admin-secret\n")
                out.append(f"{flag}={path}")
            elif flag in TLS_FILE_FLAGS:
                self.test.assertTrue(mounted_from_secret(workload, container, value),
                                     f"{flag}={value} is not in a volume mounted from a Secret")
                self.test.assertIn(os.path.basename(value), TLS_TEST_FILES, f"{flag}={value}")
                out.append(f"{flag}={self.certificates()}/"
                           f"{TLS_TEST_FILES[os.path.basename(value)]}")
            elif flag == "--data-path":
                out.append(f"{flag}={tempfile.mkdtemp(prefix='data-', dir=self.tmp)}")
            else:
                if value is not None and re.fullmatch(r"[\w.-]+:\d+", value):
                    self.test.fail(f"{flag}={value} looks like an address the test does not "
                                   "know how to map to loopback; teach it")
                out.append(flag if value is None else f"{flag}={value}")
        if binary in NSQ_BINARIES:
            return [os.path.join(os.environ["NSQ_BIN_DIR"], binary)] + out
        return [os.path.join(BIN, binary)] + out

    def certificates(self):
        """The test certificates (for 127.0.0.1) standing in for the TLS Secret's files."""
        path = os.path.join(self.tmp, "certs")
        if not os.path.isdir(path):
            os.mkdir(path)
            make_certificates(path)
        return path

    def start(self, workload, container):
        """Starts the container's process and waits until it listens on every listen flag.
        Returns (process, {listen flag: bound port})."""
        argv = self.argv(workload, container)
        p = Process(argv, f"{workload['metadata'].get('name')}/{container['name']}")
        self.processes.append(p)
        ports = {}
        for flag, _ in flag_items(argv[1:]):
            if flag in LISTEN_FLAGS:
                ports[flag] = p.listening(LISTEN_FLAGS[flag])
        return p, ports

    def start_lookupd(self):
        """nsqlookupd from $NSQ_BIN_DIR, with its manifest's flags: one process stands in for
        every replica (the loopback runs map each replica's address to it)."""
        binary = os.path.join(os.environ.get("NSQ_BIN_DIR", ""), "nsqlookupd")
        if not os.environ.get("NSQ_BIN_DIR") or not os.access(binary, os.X_OK):
            self.test.skipTest(f"needs nsqlookupd from NSQ_BIN_DIR ({binary!r} is not there)")
        sts = one("StatefulSet", "nsqlookupd")
        (c,) = containers(sts)
        self.lookupd = {"--tcp-address": None}  # argv() must not start it again
        _, self.lookupd = self.start(sts, c)
        return self.lookupd

    def start_broker(self):
        sts = one("StatefulSet", "cairnd")
        (c,) = [c for c in containers(sts) if is_cairn(c)]
        p, ports = self.start(sts, c)
        self.broker = ports
        return sts, c, p, ports


def mounted_from_secret(workload, container, path):
    """Whether `path` lies in one of the container's volume mounts whose volume is a Secret."""
    secrets = {v["name"] for v in pod_spec(workload).get("volumes", []) if "secret" in v}
    for m in container.get("volumeMounts", []):
        if m["name"] in secrets and path.startswith(m["mountPath"].rstrip("/") + "/"):
            return True
    return False


def probes(container):
    return {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in container}


# ---------------------------------------------------------------------------------------------
# Tests


class Render(unittest.TestCase):
    def test_renders_with_kubectl_kustomize(self):
        docs = rendered()
        kinds = sorted({d["kind"] for d in docs})
        for kind in ("StatefulSet", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget"):
            self.assertIn(kind, kinds)
        for d in docs:
            self.assertIn("apiVersion", d)
            self.assertIn("name", d["metadata"], d)
            # Namespace-agnostic: kustomize's `namespace:` (an overlay) puts it anywhere.
            self.assertNotIn("namespace", d["metadata"], d["metadata"]["name"])

    def test_labels(self):
        for d in rendered() + [replay_job()]:
            name = d["metadata"].get("name") or d["metadata"]["generateName"]
            labels = d["metadata"].get("labels", {})
            self.assertEqual(labels.get("app.kubernetes.io/part-of"), "cairn", name)
            if d["kind"] not in ("ConfigMap",):
                self.assertIn("app.kubernetes.io/name", labels, f"{d['kind']} {name}")
        for w in workloads():
            self.assertEqual(pod_labels(w).get("app.kubernetes.io/part-of"), "cairn")
            self.assertIn("app.kubernetes.io/name", pod_labels(w))

    def test_images_named_in_one_place(self):
        """The manifests name bare images; kustomization.yaml's images: gives each its registry
        and tag. replay-job.yaml, which kustomize does not render, must name the same image."""
        entries = {e["name"]: e for e in kustomization().get("images", [])}
        for path in glob.glob(os.path.join(K8S, "*.yaml")):
            if path.endswith(("kustomization.yaml", "replay-job.yaml")):
                continue
            for m in re.finditer(r"(?m)^\s*image:\s*(\S+)", read_text(path)):
                self.assertIn(m.group(1), entries, f"{os.path.basename(path)}: image {m.group(1)} "
                              "is not a bare name that kustomization.yaml's images: sets")
        for w in workloads(False):
            for c in containers(w):
                name = c["image"].rsplit(":", 1)[0] if ":" in c["image"] else c["image"]
                matches = [e for e in entries.values() if e.get("newName", e["name"]) == name]
                self.assertTrue(matches, f"{c['name']}: rendered image {c['image']}")
                self.assertIn("newTag", matches[0], f"{matches[0]['name']} has no tag")
                self.assertEqual(c["image"], f"{name}:{matches[0]['newTag']}")
        image = cairn_image()
        self.assertTrue([c for w in workloads(False) for c in containers(w) if c["image"] == image])
        for c in containers(replay_job()):
            self.assertEqual(c["image"], image, "replay-job.yaml's image differs from "
                             "kustomization.yaml's images:")

    def test_configmap_keys_are_all_used(self):
        cms = configmaps()
        config = [n for n in cms if n.startswith("cairn-config")]
        self.assertEqual(len(config), 1, sorted(cms))
        used = set()
        for w in workloads(False):
            for c in containers(w):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("configMapKeyRef")
                    if ref and ref["name"] == config[0]:
                        used.add(ref["key"])
                resolve_env(w, c, pod_name_of(w))  # every reference resolves
        self.assertEqual(set(cms[config[0]]) - used, set(), "settings no container reads")


class Lint(unittest.TestCase):
    def test_yamllint_every_yaml_file_under_deploy(self):
        yamllint = shutil.which("yamllint")
        if yamllint is None:
            self.skipTest("yamllint is not installed (Debian: yamllint)")
        files = sorted(p for ext in ("yaml", "yml")
                       for p in glob.glob(os.path.join(DEPLOY, "**", f"*.{ext}"), recursive=True))
        self.assertIn(os.path.join(K8S, "kustomization.yaml"), files)
        config = os.path.join(DEPLOY, ".yamllint")
        cmd = [yamllint, "-f", "parsable"] + (["-c", config] if os.path.exists(config)
                                              else ["-d", "relaxed"])
        r = subprocess.run(cmd + files, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, f"yamllint:\n{r.stdout}{r.stderr}")


class Consistency(unittest.TestCase):
    """What the manifests say against what the code says, without running anything."""

    def test_network_policy_opens_nsq_widely_and_the_http_api_to_cairns_own_pods(self):
        policy = one("NetworkPolicy", "cairnd")
        sts = one("StatefulSet", "cairnd")
        selected = policy["spec"]["podSelector"]["matchLabels"]
        self.assertLessEqual(selected.items(), pod_labels(sts).items(), "it selects cairnd")
        (c,) = [c for c in containers(sts) if is_cairn(c)]
        rules = {r["ports"][0]["port"]: r["from"] for r in policy["spec"]["ingress"]}
        self.assertEqual(set(rules), {p["name"] for p in c["ports"]}, "one rule per named port")
        self.assertIn({"namespaceSelector": {}}, rules["tcp"], "NSQ from anywhere in the cluster")
        self.assertNotIn({"namespaceSelector": {}}, rules["http"])
        admitted = next(f["podSelector"]["matchLabels"] for f in rules["http"] if "podSelector" in f)
        callers = {"cairn-logger", "cairn-metrics", "nsqadmin", "cairn-replay"}
        found = set()
        for w in workloads():
            meta = w["metadata"]
            name = meta.get("name") or meta.get("generateName", "").rstrip("-")
            if name in callers:
                found.add(name)
                self.assertLessEqual(admitted.items(), pod_labels(w).items(),
                                     f"{name} calls cairnd's HTTP API and must be admitted")
        self.assertEqual(found, callers)

    def test_data_volume_is_mounted_at_data_path(self):
        sts = one("StatefulSet", "cairnd")
        claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
        self.assertIn("data", claims)
        (c,) = [c for c in containers(sts) if binary_of(c) == "cairnd"]
        data_path = flag_value(expanded_args(sts, c), "--data-path")
        self.assertIsNotNone(data_path, "cairnd has no --data-path: it would write ./data")
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] in claims]
        self.assertEqual([m["mountPath"].rstrip("/") for m in mounts], [data_path.rstrip("/")])
        self.assertFalse(mounts[0].get("readOnly", False))
        (tmpl,) = [t for t in sts["spec"]["volumeClaimTemplates"]
                   if t["metadata"]["name"] == "data"]
        self.assertEqual(tmpl["spec"]["accessModes"], ["ReadWriteOnce"])

    def test_grace_periods_exceed_shutdown_bounds(self):
        drain = drain_deadline_seconds()
        metrics_default = duration_seconds(help_default("cairn-metrics", "--shutdown-timeout"))
        checked = set()
        for w in workloads():
            grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
            for c in containers(w):
                if not is_cairn(c):
                    continue
                binary = binary_of(c)
                if binary == "cairnd":
                    # The drain is bounded by kDrainDeadline; the store's close follows it.
                    self.assertGreater(grace, drain, f"{w['metadata']['name']}: grace {grace}s "
                                       f"<= cairnd's {drain}s drain")
                    checked.add(binary)
                if binary == "cairn-metrics":
                    args = expanded_args(w, c)
                    timeout = flag_value(args, "--shutdown-timeout")
                    bound = duration_seconds(timeout) if timeout else metrics_default
                    self.assertGreater(grace, bound, f"{w['metadata']['name']}: grace {grace}s "
                                       f"<= cairn-metrics' --shutdown-timeout {bound}s")
                    checked.add(binary)
        self.assertEqual(checked, {"cairnd", "cairn-metrics"})

    def test_container_ports_are_the_ports_the_args_listen_on(self):
        for w in workloads():
            for c in containers(w):
                if not is_cairn(c):
                    continue
                args = expanded_args(w, c)
                listened = {split_address(v)[1] for f, v in flag_items(args) if f in LISTEN_FLAGS}
                declared = {p["containerPort"] for p in c.get("ports", [])}
                self.assertEqual(declared, listened, f"{c['name']}: containerPorts vs args")
                names = [p.get("name") for p in c.get("ports", [])]
                self.assertEqual(len(names), len(set(names)), f"{c['name']}: duplicate port names")
                for flag in LISTEN_FLAGS:
                    value = flag_value(args, flag)
                    if value is not None:
                        host, _ = split_address(value)
                        # Probes and Services come from outside the pod.
                        self.assertIn(host, ("0.0.0.0", "", "::"), f"{c['name']} {flag}={value}")

    def test_services_target_declared_container_ports(self):
        services = by_kind("Service")
        self.assertTrue(services)
        for svc in services:
            name = svc["metadata"]["name"]
            targets = workload_for_selector(svc["spec"].get("selector", {}))
            self.assertTrue(targets, f"Service {name} selects no pod template")
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                found = [container_port(w, c, target) for w in targets for c in containers(w)]
                self.assertTrue(any(n is not None for n in found),
                                f"Service {name} port {port['port']}: targetPort {target!r} is no "
                                "container port")
        sts = one("StatefulSet", "cairnd")
        headless = one("Service", sts["spec"]["serviceName"])
        self.assertEqual(headless["spec"].get("clusterIP"), "None")
        self.assertTrue(headless["spec"].get("publishNotReadyAddresses"))
        self.assertEqual({p["port"] for p in one("Service", "cairnd")["spec"]["ports"]},
                         {4150, 4151})
        self.assertEqual({(p["port"], p["targetPort"]) for p in
                          one("Service", "cairn-logger")["spec"]["ports"]}, {(80, "http")})

    def test_probes_name_declared_ports(self):
        for w in workloads():
            for c in containers(w):
                for kind, probe in probes(c).items():
                    handler = probe.get("httpGet") or probe.get("tcpSocket")
                    self.assertIsNotNone(handler, f"{c['name']} {kind}: httpGet or tcpSocket")
                    self.assertIsNotNone(container_port(w, c, handler["port"]),
                                         f"{c['name']} {kind}: port {handler['port']!r}")
                    if "httpGet" in probe:
                        self.assertEqual(probe["httpGet"].get("scheme", "HTTP"), "HTTP")

    def test_cairnd_probes_wait_for_recovery(self):
        (c,) = containers(one("StatefulSet", "cairnd"))
        startup = c.get("startupProbe")
        self.assertIsNotNone(startup, "without a startup probe, liveness can kill a recovery")
        budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
        self.assertGreaterEqual(budget, 30 * 60, "startup probe gives recovery under 30 minutes")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/ping")
        live = c["livenessProbe"]
        self.assertEqual((live.get("periodSeconds"), live.get("failureThreshold")), (10, 6))

    def test_broker_addresses_resolve_to_cairnd(self):
        """Every --nsqd-*-address names a Service or StatefulSet pod here whose port reaches the
        cairnd listen flag of the same protocol."""
        seen = 0
        for w in workloads():
            for c in containers(w):
                if not is_cairn(c):
                    continue
                for flag, value in flag_items(expanded_args(w, c)):
                    if flag in BROKER_FLAGS:
                        target_w, target_c, target_flag = resolve_in_cluster(*split_address(value))
                        self.assertEqual(binary_of(target_c), "cairnd", f"{flag}={value}")
                        self.assertEqual(target_flag, BROKER_FLAGS[flag], f"{flag}={value}")
                        seen += 1
        # The replay job's pair, cairn-metrics' publish target and its HTTP address (the
        # consumers find the brokers through nsqlookupd).
        self.assertGreaterEqual(seen, 4)

    def test_brokers_register_with_every_nsqlookupd_and_consumers_ask_every_one(self):
        """Every --lookupd-*-address reaches nsqlookupd's listen flag of its protocol; cairnd
        names each nsqlookupd replica once, and so does every consumer and nsqadmin."""
        lookupd = one("StatefulSet", "nsqlookupd")
        replicas = lookupd["spec"]["replicas"]
        self.assertGreaterEqual(replicas, 3)
        users = set()
        for w in workloads():
            for c in containers(w):
                by_flag = {}
                for flag, value in flag_items(expanded_args(w, c)):
                    if flag in LOOKUPD_FLAGS:
                        target_w, target_c, target = resolve_in_cluster(*split_address(value))
                        self.assertEqual(binary_of(target_c), "nsqlookupd", f"{flag}={value}")
                        self.assertEqual(target, LOOKUPD_FLAGS[flag], f"{flag}={value}")
                        by_flag.setdefault(flag, []).append(value.split(".")[0])
                for flag, pods in by_flag.items():
                    self.assertEqual(sorted(pods), [f"nsqlookupd-{i}" for i in range(replicas)],
                                     f"{c['name']} {flag}")
                    users.add((binary_of(c), flag))
        self.assertTrue({("cairnd", "--lookupd-tcp-address"),
                         ("cairn-metrics", "--lookupd-http-address"),
                         ("cairn-logger", "--lookupd-http-address"),
                         ("nsqadmin", "--lookupd-http-address")} <= users, users)

    def test_collector_configs_name_addresses_that_resolve(self):
        """The cairnd addresses in collectors/*.conf and in every container's environment reach,
        through the Services here, the listen flag of their protocol."""
        confs = sorted(glob.glob(os.path.join(K8S, "collectors", "*.conf")))
        self.assertTrue(confs, "no deploy/k8s/collectors/*.conf")
        refs = []
        for path in confs:
            text = re.sub(r"(?m)^\s*#.*$", "", read_text(path))
            for m in re.finditer(r"(https?://)?\b(cairn[\w.-]*):(\d+)", text):
                # A URL's scheme may stand before a default in Ruby's "#{ENV['X'] || 'host:port'}".
                line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
                http = m.group(1) or re.search(r"https?://", line)
                refs.append((os.path.basename(path), m.group(0), http, m.group(2),
                             int(m.group(3))))
        for w in workloads():
            for c in containers(w):
                for e in c.get("env", []):
                    m = re.fullmatch(r"(https?://)?(cairn[\w.-]*):(\d+)\S*", e.get("value", ""))
                    if m:
                        http = m.group(1) or ("HTTP" in e["name"] and "NSQ" not in e["name"])
                        refs.append((f"{c['name']} env {e['name']}", m.group(0), http,
                                     m.group(2), int(m.group(3))))
        self.assertTrue(refs)
        for where, text, http, host, port in refs:
            _, target_c, flag = resolve_in_cluster(host, port)
            self.assertEqual(binary_of(target_c) if is_cairn(target_c) else None, "cairnd",
                             f"{where}: {text}")
            self.assertEqual(flag, "--http-address" if http else "--tcp-address",
                             f"{where}: {text}")

    def test_collector_configs_are_mounted_where_they_are_read(self):
        cms = configmaps()
        checked = 0
        for w in workloads(False):
            spec = pod_spec(w)
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in containers(w):
                env = resolve_env(w, c, pod_name_of(w))
                files = [v for f, v in flag_items(expanded_args(w, c) if c.get("args") and
                                                   all(a.startswith("--") for a in c["args"])
                                                   else [])
                         if f == "--config"]
                if "FLUENTD_CONF" in env:  # the fluentd image runs -c /fluentd/etc/$FLUENTD_CONF
                    files.append("/fluentd/etc/" + env["FLUENTD_CONF"])
                for path in files:
                    mount = [m for m in c.get("volumeMounts", [])
                             if os.path.dirname(path) == m["mountPath"].rstrip("/")]
                    self.assertEqual(len(mount), 1, f"{c['name']}: nothing mounted at {path}")
                    cm = volumes[mount[0]["name"]].get("configMap", {}).get("name")
                    self.assertIn(cm, cms, f"{c['name']}: {path} is not from a rendered ConfigMap")
                    key = os.path.basename(path)
                    self.assertIn(key, cms[cm], f"{c['name']}: ConfigMap {cm} has no {key}")
                    checked += 1
        self.assertGreaterEqual(checked, 2)

    def test_telegraf_runs_inputs_its_configuration_has(self):
        conf = read_text(os.path.join(K8S, "collectors", "telegraf.conf"))
        inputs = set(re.findall(r"(?m)^\s*\[\[inputs\.(\w+)\]\]", conf))
        (w,) = [w for w in workloads(False) for c in containers(w)
                if binary_of(c) == "telegraf" or c["image"].startswith("telegraf")]
        (c,) = containers(w)
        wanted = flag_value(c["args"], "--input-filter")
        self.assertIsNotNone(wanted)
        self.assertLessEqual(set(wanted.split(":")), inputs, "--input-filter names inputs "
                             "telegraf.conf does not have")
        # Not both cairn-metrics and Telegraf's consumer, writing every point twice.
        metrics = [w for w in workloads(False) for c in containers(w)
                   if is_cairn(c) and binary_of(c) == "cairn-metrics"
                   and w["spec"].get("replicas", 1) > 0]
        if metrics and "nsq_consumer" in wanted.split(":"):
            self.fail("cairn-metrics and Telegraf's nsq_consumer both write the `metrics` topic")

    def test_service_accounts_and_roles_resolve(self):
        accounts = {d["metadata"]["name"] for d in by_kind("ServiceAccount")}
        for w in workloads(False):
            name = pod_spec(w).get("serviceAccountName")
            if name:
                self.assertIn(name, accounts, w["metadata"]["name"])
        for d in by_kind("ClusterRoleBinding") + by_kind("RoleBinding"):
            ref = d["roleRef"]
            self.assertIn(ref["name"], {r["metadata"]["name"] for r in by_kind(ref["kind"])},
                          d["metadata"]["name"])
            for subject in d.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    self.assertIn(subject["name"], accounts, d["metadata"]["name"])

    def test_namespace_set_in_an_overlay_reaches_every_object(self):
        """Namespaced objects carry no namespace; one set with kustomize's `namespace:` reaches
        them and the ClusterRoleBinding's ServiceAccount subject."""
        # The API server refuses a ServiceAccount subject without a namespace.
        for d in by_kind("ClusterRoleBinding") + by_kind("RoleBinding"):
            for subject in d.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    self.assertTrue(subject.get("namespace"), d["metadata"]["name"])
        tmp = tempfile.mkdtemp(prefix="cairn-k8s-overlay-")
        try:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                # `bases:`, which kubectl 1.20's kustomize needs for a directory.
                f.write(f"namespace: {NAMESPACE}\nbases:\n  - {os.path.relpath(K8S, tmp)}\n")
            r = subprocess.run(["kubectl", "kustomize", tmp], capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "Namespace"}
        for d in docs:
            if d["kind"] not in cluster_scoped:
                self.assertEqual(d["metadata"].get("namespace"), NAMESPACE, d["metadata"]["name"])
            for subject in d.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    self.assertEqual(subject.get("namespace"), NAMESPACE, d["metadata"]["name"])

    def test_every_pod_is_non_root_with_a_read_only_root(self):
        """Every pod: non-root, read-only root file system, no privilege escalation, no
        capabilities. The one exception is the node log collector (ROOT_EXCEPTIONS), which must
        then hold no capability at all (root reads only what root owns) and mount the host
        read-only except the state directory its configuration names."""
        for w in workloads():
            name = w["metadata"].get("name") or w["metadata"]["generateName"]
            pod_sc = pod_spec(w).get("securityContext", {})
            for c in containers(w):
                sc = c.get("securityContext", {})
                where = f"{name}/{c['name']}"
                self.assertTrue(sc.get("readOnlyRootFilesystem"),
                                f"{where}: readOnlyRootFilesystem")
                self.assertIs(sc.get("allowPrivilegeEscalation"), False, where)
                self.assertFalse(sc.get("privileged", False), where)
                self.assertEqual(sc.get("capabilities", {}).get("drop"), ["ALL"], where)
                self.assertNotIn("add", sc.get("capabilities", {}), where)
                non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
                uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
                if (w["kind"], name) in ROOT_EXCEPTIONS:
                    self.check_root_collector(w, c)
                    continue
                self.assertTrue(non_root, f"{where}: runAsNonRoot")
                self.assertIsNotNone(uid, f"{where}: runAsUser (numeric, for runAsNonRoot)")
                self.assertNotEqual(uid, 0, where)

    def check_root_collector(self, w, c):
        volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
        conf = read_text(os.path.join(K8S, "collectors", "fluentd.conf"))
        m = re.search(r"(?m)^\s*root_dir\s+(\S+)", conf)
        self.assertIsNotNone(m, "fluentd.conf sets no root_dir")
        root_dir = m.group(1)
        for pos in re.findall(r"(?m)^\s*pos_file\s+(\S+)", conf):
            self.assertTrue(pos.startswith(root_dir + "/"), f"pos_file {pos} outside {root_dir}")
        writable = []
        for mount in c.get("volumeMounts", []):
            v = volumes[mount["name"]]
            if "hostPath" in v and not mount.get("readOnly"):
                writable.append(mount["mountPath"])
        self.assertEqual(writable, [root_dir], "host paths fluentd may write")
        self.assertIn("/var/log", [m["mountPath"] for m in c.get("volumeMounts", [])])

    def test_pod_disruption_budget_lets_a_drain_move_a_single_broker(self):
        sts = one("StatefulSet", "cairnd")
        pdbs = [p for p in by_kind("PodDisruptionBudget")
                if all(pod_labels(sts).get(k) == v
                       for k, v in p["spec"]["selector"]["matchLabels"].items())]
        self.assertEqual(len(pdbs), 1)
        spec = pdbs[0]["spec"]
        if sts["spec"].get("replicas", 1) == 1:
            self.assertNotIn("minAvailable", spec, "minAvailable would block every node drain")
            self.assertEqual(spec.get("maxUnavailable"), 1)

    def test_image_runs_what_the_manifests_run(self):
        text = dockerfile()
        if text is None:
            self.skipTest("no deploy/Dockerfile yet")
        entry = dockerfile_entrypoint()
        self.assertIsNotNone(entry, "deploy/Dockerfile has no exec-form ENTRYPOINT")
        for w in workloads():
            for c in containers(w):
                if not is_cairn(c):
                    continue
                if not c.get("command"):
                    self.assertEqual(os.path.basename(entry[0]), "cairnd", c["name"])
                    continue
                binary = c["command"][0]
                # A bare name is looked up on the image's PATH: the Dockerfile must put it there.
                if "/" not in binary:
                    self.assertRegex(text, rf"(?m)^COPY\b.*\b{re.escape(binary)}\b.*\s"
                                     r"(/usr/local/bin|/usr/bin|/bin)/?\s*$",
                                     f"deploy/Dockerfile copies no {binary} onto the PATH")


class Processes(unittest.TestCase):
    """Each cairn container, run with its manifest's flags on loopback."""

    def setUp(self):
        self.cluster = Cluster(self)

    def tearDown(self):
        self.cluster.close()

    def probe_all(self, workload, container, ports):
        """GETs every path the container's probes name on the bound port; each must be 200."""
        checked = []
        for kind, probe in probes(container).items():
            handler = probe.get("httpGet")
            number = container_port(workload, container, (handler or probe["tcpSocket"])["port"])
            flag = listen_flag_for_port(container, expanded_args(workload, container), number)
            self.assertIn(flag, ports,
                          f"{container['name']} {kind}: port {number} is not listened on")
            if handler is None:
                socket.create_connection(("127.0.0.1", ports[flag]), timeout=5).close()
                continue
            path = handler.get("path", "/")
            last = []

            def answered(port=ports[flag], path=path, last=last):
                last[:] = http_get(port, path)
                return last[0] == 200
            try:
                wait_until(answered, f"{container['name']} {kind} GET {path}", timeout=20)
            except AssertionError:
                self.fail(f"{container['name']} {kind}: GET {path} answered {last} "
                          f"within 20 s, not 200")
            checked.append((kind, path))
        return checked

    def test_cairnd_runs_with_its_manifest_flags(self):
        sts, c, broker, ports = self.cluster.start_broker()
        self.assertEqual(set(ports), {"--tcp-address", "--http-address"})  # HTTPS: k8s-tls
        checked = self.probe_all(sts, c, ports)
        self.assertEqual({k for k, _ in checked}, {"startupProbe", "readinessProbe",
                                                    "livenessProbe"})
        # The name it registers: its pod's stable DNS name (127.0.0.1 in this loopback run).
        self.assertEqual(dict(flag_items(expanded_args(sts, c)))["--broadcast-address"],
                         f"cairnd-0.cairnd-headless.{NAMESPACE}.svc")
        status, body = http_get(ports["--http-address"], "/info")
        self.assertEqual(status, 200)
        info = json.loads(body)
        self.assertEqual((info["tcp_port"], info["http_port"]),
                         (ports["--tcp-address"], ports["--http-address"]))
        # It registered with nsqlookupd: a topic created on it is listed there at once.
        self.assertEqual(http_post(ports["--http-address"], "/topic/create?topic=check")[0], 200)
        lookupd_http = self.cluster.lookupd["--http-address"]

        def listed():
            status, body = http_get(lookupd_http, "/lookup?topic=check")
            return status == 200 and any(p["tcp_port"] == ports["--tcp-address"]
                                         for p in json.loads(body)["producers"])
        wait_until(listed, "nsqlookupd to list cairnd for the topic", timeout=20)
        # A connected client while it stops: it still ends within the grace period.
        client = socket.create_connection(("127.0.0.1", ports["--tcp-address"]), timeout=5)
        client.sendall(b"  V2")
        try:
            grace = pod_spec(sts)["terminationGracePeriodSeconds"]
            code, took = broker.terminate(timeout=grace)
        finally:
            client.close()
        self.assertEqual(code, 0, broker.log())
        self.assertLess(took, grace)

    def test_nsq_containers_run_with_their_manifest_flags(self):
        """nsqlookupd and nsqadmin (from $NSQ_BIN_DIR) take every flag their manifests give and
        answer their probes; nsqadmin lists the broker registered with that nsqlookupd."""
        _, _, _, broker_ports = self.cluster.start_broker()
        ran = set()
        for w in workloads():
            for c in containers(w):
                if binary_of(c) not in NSQ_BINARIES:
                    continue
                with self.subTest(workload=w["metadata"]["name"], container=c["name"]):
                    if binary_of(c) == "nsqlookupd":
                        ports = self.cluster.lookupd
                    else:
                        _, ports = self.cluster.start(w, c)
                    checked = self.probe_all(w, c, ports)
                    self.assertEqual({k for k, _ in checked}, {"readinessProbe", "livenessProbe"})
                    ran.add(binary_of(c))
                    if binary_of(c) == "nsqadmin":
                        def lists_broker(port=ports["--http-address"]):
                            status, body = http_get(port, "/api/nodes")
                            return status == 200 and any(
                                n.get("tcp_port") == broker_ports["--tcp-address"]
                                for n in json.loads(body).get("nodes", []))
                        wait_until(lists_broker, "nsqadmin to list cairnd", timeout=20)
        self.assertEqual(ran, set(NSQ_BINARIES))

    def test_workers_run_with_their_manifest_flags(self):
        self.cluster.start_broker()
        started = []
        for w in workloads(include_job_template=False):
            for c in containers(w):
                if not is_cairn(c) or binary_of(c) == "cairnd":
                    continue
                with self.subTest(workload=w["metadata"]["name"], container=c["name"]):
                    p, ports = self.cluster.start(w, c)
                    self.assertIn("--http-address", ports, "a worker without /healthz")
                    checked = self.probe_all(w, c, ports)
                    self.assertTrue(any(k == "readinessProbe" for k, _ in checked), c["name"])
                    self.assertTrue(any(k == "livenessProbe" for k, _ in checked), c["name"])
                    grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
                    started.append((w, c, p, grace))
        self.assertEqual({binary_of(c) for _, c, _, _ in started},
                         {"cairn-logger", "cairn-metrics"})
        for w, c, p, grace in started:
            code, took = p.terminate(timeout=grace)
            self.assertEqual(code, 0, f"{c['name']}:\n{p.log()}")
            self.assertLess(took, grace)

    def test_logger_memory_limit_covers_max_memory(self):
        """bench/run_pipeline_bench: 195 MiB of RSS per 1,000,000 lines held, for 199 MiB by the
        logger's own estimate (what --max-memory bounds). The limit must cover --max-memory
        scaled so, plus what the logger takes with nothing held."""
        self.cluster.start_broker()
        (w,) = [w for w in workloads(False) for c in containers(w)
                if is_cairn(c) and binary_of(c) == "cairn-logger"]
        (c,) = containers(w)
        p, ports = self.cluster.start(w, c)
        wait_until(lambda: http_get(ports["--http-address"], "/healthz")[0] == 200, "healthz")
        idle = p.rss_bytes()
        self.assertGreater(idle, 0)
        # The bound as the logger understood its flag (it logs it in bytes when ready).
        logged = wait_until(lambda: [m.group(1) for line in list(p.lines)
                                     for m in [re.search(r"\bmax_memory=(\d+)", line)] if m],
                            "cairn-logger to log max_memory=")
        max_memory = int(logged[0])
        limit = quantity(c["resources"]["limits"]["memory"])
        needed = max_memory * 195 / 199 + idle
        self.assertGreaterEqual(limit, needed * 1.25,
                                f"limit {limit / 2**20:.0f} MiB; lines {max_memory / 2**20:.0f} "
                                f"MiB + idle {idle / 2**20:.0f} MiB, with 25% headroom")

    def test_replay_job_runs_with_its_flags(self):
        _, _, _, ports = self.cluster.start_broker()
        job = replay_job()
        (c,) = containers(job)
        self.assertEqual(binary_of(c), "cairn-replay")
        # Its time range and target are set in one place: the env the args read.
        names = {e["name"] for e in c.get("env", [])}
        self.assertTrue({"FROM", "TO", "INFLUXDB_URL", "DATABASE"} <= names, names)
        for flag, var in (("--from", "FROM"), ("--to", "TO"), ("--influxdb-url", "INFLUXDB_URL"),
                          ("--database", "DATABASE")):
            self.assertEqual([a for a in c["args"] if a.startswith(flag + "=")],
                             [f"{flag}=$({var})"])
        # Its target defaults to cairn-metrics' (the ConfigMap's), written out: kustomize does
        # not render this file, so it cannot read the generated ConfigMap.
        env = {e["name"]: e.get("value") for e in c["env"]}
        (config,) = [v for k, v in configmaps().items() if k.startswith("cairn-config")]
        self.assertEqual((env["INFLUXDB_URL"], env["DATABASE"]),
                         (config["INFLUXDB_URL"], config["INFLUXDB_DATABASE"]))
        topic = flag_value(expanded_args(job, c), "--topic") or "metrics"
        status, body = http_post(ports["--http-address"], f"/topic/create?topic={topic}")
        self.assertEqual(status, 200, body)
        p = Process(self.cluster.argv(job, c), "replay-job")
        self.cluster.processes.append(p)
        try:
            code = p.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail(f"cairn-replay still running after 60 s:\n{p.log()}")
        p.reader.join(timeout=5)
        self.assertEqual(code, 0, p.log())
        self.assertIn("no messages in the range", p.log())
        self.assertEqual(pod_spec(job).get("restartPolicy"), "Never")


class TlsOverlay(unittest.TestCase):
    """deploy/k8s-tls: cairnd's certificate from the Secret cairn-tls, HTTPS beside HTTP, and
    Cairn's clients speaking TLS; rendered, and run on loopback with the test certificates
    standing in for the Secret's files."""

    @classmethod
    def setUpClass(cls):
        global DOCS, RENDER_ERROR
        cls.saved = (DOCS, RENDER_ERROR)
        DOCS, RENDER_ERROR = render(K8S_TLS)

    @classmethod
    def tearDownClass(cls):
        global DOCS, RENDER_ERROR
        DOCS, RENDER_ERROR = cls.saved

    def setUp(self):
        self.cluster = Cluster(self)

    def tearDown(self):
        self.cluster.close()

    def test_every_tls_file_comes_from_the_secret_and_clients_get_only_the_ca(self):
        sts = one("StatefulSet", "cairnd")
        (c,) = containers(sts)
        args = dict(flag_items(expanded_args(sts, c)))
        for flag in ("--tls-cert", "--tls-key", "--tls-root-ca-file"):
            self.assertTrue(mounted_from_secret(sts, c, args[flag]), flag)
        secrets = {v["secret"]["secretName"] for w in workloads(False)
                   for v in pod_spec(w).get("volumes", []) if "secret" in v}
        self.assertIn("cairn-tls", secrets)
        clients = 0
        for w in workloads(False):
            for c in containers(w):
                args = dict(flag_items(expanded_args(w, c)))
                if binary_of(c) not in ("cairn-logger", "cairn-metrics", "nsqadmin"):
                    continue
                clients += 1
                with self.subTest(workload=w["metadata"]["name"]):
                    if binary_of(c) != "nsqadmin":
                        self.assertIn("--tls", args)
                    ca = args.get("--tls-root-ca-file") or args["--http-client-tls-root-ca-file"]
                    self.assertTrue(mounted_from_secret(w, c, ca))
                    # A client mounts the CA, never cairnd's key.
                    for v in pod_spec(w)["volumes"]:
                        if v.get("secret", {}).get("secretName") == "cairn-tls":
                            self.assertEqual([i["key"] for i in v["secret"].get("items", [])],
                                             ["ca.crt"])
        self.assertEqual(clients, 3)
        # HTTPS is reachable as HTTP is: on both Services, and from the same peers.
        for name in ("cairnd", "cairnd-headless"):
            self.assertIn("https", [p["name"] for p in one("Service", name)["spec"]["ports"]])
        rules = {r["ports"][0]["port"]: r["from"]
                 for r in one("NetworkPolicy", "cairnd")["spec"]["ingress"]}
        self.assertEqual(rules["https"], rules["http"])

    def test_cairnd_serves_https_and_the_workers_connect_over_tls(self):
        sts, c, _, ports = self.cluster.start_broker()
        self.assertEqual(set(ports), {"--tcp-address", "--http-address", "--https-address"})
        context = ssl.create_default_context(
            cafile=os.path.join(self.cluster.certificates(), "ca.pem"))
        self.assertEqual(http_get(ports["--https-address"], "/ping", context=context)[0], 200)
        # TLS is offered, not required: plain HTTP (the probes, Prometheus) still answers.
        self.assertEqual(http_get(ports["--http-address"], "/ping")[0], 200)
        # The workers find the broker through nsqlookupd, which lists it once it has the topic.
        lookupd_http = self.cluster.lookupd["--http-address"]
        for topic in ("logs", "metrics"):
            self.assertEqual(http_post(ports["--http-address"], f"/topic/create?topic={topic}")[0],
                             200)
            wait_until(lambda t=topic: json.loads(
                http_get(lookupd_http, f"/lookup?topic={t}")[1] or "{}").get("producers"),
                f"nsqlookupd to list cairnd for {topic}", timeout=20)
        started = []
        for w in workloads(include_job_template=False):
            for c in containers(w):
                if is_cairn(c) and binary_of(c) in ("cairn-logger", "cairn-metrics"):
                    started.append(self.cluster.start(w, c)[0])
        self.assertEqual(len(started), 2)

        def tls_clients():
            status, body = http_get(ports["--https-address"], "/stats?format=json",
                                    context=context)
            if status != 200:
                return None
            clients = [cl for t in json.loads(body)["topics"] for ch in t["channels"]
                       for cl in ch["clients"]]
            return (len(clients) == 2 and all(cl.get("tls") for cl in clients)) or clients
        clients = wait_until(tls_clients, "both workers subscribed over TLS", timeout=20)
        self.assertIs(clients, True, clients)


if __name__ == "__main__":
    unittest.main(verbosity=2)
