#!/usr/bin/python3
"""deploy/fluentd/Dockerfile against what runs it and what it runs.

No Docker engine is needed: the checks read the files.

- Every `@type` in deploy/k8s/collectors/fluentd.conf (sources, filters, parsers, the
  `format` of multi_format's <pattern>s, matches, <store>s, buffers, formatters), in the live
  configuration and in its commented-out alternatives, names a plugin of that kind that fluentd
  1.16.3 has built in, or that a gem the base image carries or the Dockerfile installs
  provides (BUILTIN, GEM_TYPES, BASE_GEMS: each says where it was read).
- The Dockerfile is FROM the base image whose gems BASE_GEMS lists; the NSQ output is the
  Glose/fluent-plugin-nsq fork built from git at the pinned commit and installed from that file,
  never the RubyGems release of the same name (uken's, which takes nsqlookupd only); nsq-ruby is
  installed at a fixed version its gemspec accepts.
- The image keeps the base's USER and ENTRYPOINT (which runs fluentd -c
  /fluentd/etc/$FLUENTD_CONF); its FLUENTD_CONF is the DaemonSet's; the DaemonSet runs the
  entry point (no command, no args) and mounts, at that path's directory, the ConfigMap that
  kustomization.yaml makes from this fluentd.conf.
- The image name agrees: the DaemonSet's image, its entry in kustomization.yaml's images:,
  the build command in the Dockerfile's header and in deploy/IMAGE.md. The build context is
  deploy/fluentd, so the Dockerfile copies nothing from it.
- The checks fail when they should: an unknown @type, a missing gem, the registry's
  fluent-plugin-nsq, another commit, a FLUENTD_CONF that disagrees (test_checks_can_fail).

Python 3 standard library only (the YAML here is read by a small block-YAML reader, compared
with PyYAML where that is installed). Environment: CAIRN_SOURCE (the repository).
"""

import os
import re
import shlex
import unittest

SOURCE = os.environ.get("CAIRN_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SOURCE, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
DOCKERFILE = os.path.join(DEPLOY, "fluentd", "Dockerfile")
FLUENTD_CONF = os.path.join(K8S, "collectors", "fluentd.conf")
COLLECTORS = os.path.join(K8S, "collectors.yaml")
KUSTOMIZATION = os.path.join(K8S, "kustomization.yaml")
IMAGE_MD = os.path.join(DEPLOY, "IMAGE.md")
CONTEXT = "deploy/fluentd"
IMAGE = "cairn-fluentd"

# The base image and the gems it carries that provide a type fluentd.conf may use. Read in
# github.com/fluent/fluentd-kubernetes-daemonset: the tag v1.16-debian-forward-1 was last pushed
# by commit f76233a1 ("Add v1.16.3-1.0 images"; docker-image/v1.16/debian-forward/hooks/
# post_push), whose docker-image/v1.16/debian-forward/Gemfile.lock has these versions (and
# fluentd 1.16.3). Later v1.16 builds push v1.16-debian-forward-2. Another base: read its
# Gemfile.lock and give it its own entry here.
BASE_IMAGE = "fluent/fluentd-kubernetes-daemonset:v1.16-debian-forward-1"
BASE_GEMS = {
    BASE_IMAGE: {
        "fluent-plugin-kubernetes_metadata_filter": "3.2.0",
        "fluent-plugin-multi-format-parser": "1.0.0",
    },
}
# That base's entry point, docker-image/v1.16/debian-forward/entrypoint.sh at f76233a1:
#   exec fluentd -c /fluentd/etc/${FLUENTD_CONF} -p /fluentd/plugins --gemfile /fluentd/Gemfile
CONF_DIR = "/fluentd/etc"

# What each gem registers (Fluent::Plugin.register_<kind>), read in its source:
# - fluent-plugin-kubernetes_metadata_filter v3.2.0 (github.com/fabric8io/
#   fluent-plugin-kubernetes_metadata_filter): lib/fluent/plugin/filter_kubernetes_metadata.rb,
#   register_filter('kubernetes_metadata').
# - fluent-plugin-multi-format-parser v1.0.0 (github.com/repeatedly/
#   fluent-plugin-multi-format-parser): lib/fluent/plugin/parser_multi_format.rb,
#   register_parser('multi_format'); each <pattern>'s `format` is a parser type.
# - fluent-plugin-nsq at Glose's commit 39834a7 (github.com/Glose/fluent-plugin-nsq):
#   lib/fluent/plugin/out_nsq.rb register_output('nsq') (params nsqd, topic),
#   lib/fluent/plugin/in_nsq.rb register_input('nsq').
GEM_TYPES = {
    "fluent-plugin-kubernetes_metadata_filter": {"filter": {"kubernetes_metadata"}},
    "fluent-plugin-multi-format-parser": {"parser": {"multi_format"}},
    "fluent-plugin-nsq": {"output": {"nsq"}, "input": {"nsq"}},
    "nsq-ruby": {},
}

# fluentd 1.16.3's built-in plugins: every Fluent::Plugin.register_<kind>('<type>') under
# lib/fluent/plugin/ at the tag v1.16.3 of github.com/fluent/fluentd.
BUILTIN = {
    "input": {"debug_agent", "dummy", "exec", "forward", "gc_stat", "http", "monitor_agent",
              "object_space", "sample", "syslog", "tail", "tcp", "udp", "unix"},
    "output": {"copy", "exec", "exec_filter", "file", "forward", "http", "null", "relabel",
               "roundrobin", "secondary_file", "stdout", "tcp", "unix"},
    "filter": {"grep", "parser", "record_transformer", "stdout"},
    "parser": {"apache", "apache2", "apache_error", "csv", "in_http", "json", "ltsv", "msgpack",
               "multiline", "nginx", "none", "regexp", "syslog", "tsv"},
    "formatter": {"csv", "hash", "json", "ltsv", "msgpack", "out_file", "single_value", "stdout",
                  "tsv"},
    "buffer": {"file", "file_single", "memory"},
    "storage": {"local"},
    "sd": {"file", "srv", "static"},
    "metrics": {"local"},
}

# The section a `@type` stands in, and the kind of plugin it names there.
SECTION_KIND = {
    "source": "input", "match": "output", "store": "output", "secondary": "output",
    "filter": "filter",
    "parse": "parser", "pattern": "parser", "format": "formatter", "buffer": "buffer",
    "storage": "storage", "service_discovery": "sd", "metrics": "metrics",
}

# The NSQ output: the fork that publishes to nsqd directly. Its gemspec (at that commit):
# name fluent-plugin-nsq, version `cat VERSION` = 0.0.7, runtime dependencies fluentd > 0.14,
# < 2 and nsq-ruby ~> 2.3.
FORK_REPO = "https://github.com/Glose/fluent-plugin-nsq"
FORK_COMMIT = "39834a7bec0cf1d467514d8e364d88ceabbe871f"
FORK_GEM = "fluent-plugin-nsq-0.0.7.gem"
NSQ_RUBY_MAJOR, NSQ_RUBY_MIN_MINOR = 2, 3  # ~> 2.3


def read_text(path):
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------------------------------------
# A block-YAML reader: mappings, sequences, plain and quoted scalars, {} and [], comments and
# `---`. Anything else (block scalars, flow collections with content, anchors) is refused.


def _strip_comment(s):
    quote = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _scalar(s, where):
    if s in ("{}", "[]"):
        return {} if s == "{}" else []
    if s[:1] in "|>&*!{[" or s[:1] == "%":
        raise ValueError(f"{where}: not read by this reader: {s!r}")
    if s.startswith('"'):
        if not s.endswith('"') or len(s) < 2:
            raise ValueError(f"{where}: unterminated string {s!r}")
        return s[1:-1].encode().decode("unicode_escape")
    if s.startswith("'"):
        if not s.endswith("'") or len(s) < 2:
            raise ValueError(f"{where}: unterminated string {s!r}")
        return s[1:-1].replace("''", "'")
    if s in ("null", "Null", "NULL", "~", ""):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", s):
        return int(s)
    return s


_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^\s"'#:\-?][^:#]*?|-[^\s:#][^:#]*?):(?:\s+(.*)|$)""")


def load_yaml(text, name="yaml"):
    docs, lines = [], []
    for n, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("---"):
            docs.append(lines)
            lines = []
            continue
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise ValueError(f"{name}:{n}: tab in indentation")
        body = _strip_comment(raw)
        if body.strip():
            lines.append([len(body) - len(body.lstrip()), body.strip(), f"{name}:{n}"])
    docs.append(lines)
    out = []
    for lines in docs:
        if not lines:
            continue
        value, i = _block(lines, 0, lines[0][0])
        if i != len(lines):
            raise ValueError(f"{lines[i][2]}: unexpected indentation")
        out.append(value)
    return out


def _is_item(content):
    return content == "-" or content.startswith("- ")


def _block(lines, i, indent):
    if _is_item(lines[i][1]):
        return _sequence(lines, i, indent)
    return _mapping(lines, i, indent)


def _sequence(lines, i, indent):
    out = []
    while i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
        rest = lines[i][1][1:].lstrip()
        if not rest:
            if i + 1 < len(lines) and lines[i + 1][0] > indent:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            else:
                value, i = None, i + 1
        elif _is_item(rest) or _KEY.match(rest):
            # "- key: value" opens a mapping whose keys sit at the column of `key`.
            lines[i] = [indent + len(lines[i][1]) - len(rest), rest, lines[i][2]]
            value, i = _block(lines, i, lines[i][0])
        else:
            value, i = _scalar(rest, lines[i][2]), i + 1
        out.append(value)
    return out, i


def _mapping(lines, i, indent):
    out = {}
    while i < len(lines) and lines[i][0] == indent and not _is_item(lines[i][1]):
        m = _KEY.match(lines[i][1])
        if not m:
            raise ValueError(f"{lines[i][2]}: not a `key: value` line: {lines[i][1]!r}")
        key = _scalar(m.group(1), lines[i][2])
        if key in out:
            raise ValueError(f"{lines[i][2]}: duplicate key {key!r}")
        rest = m.group(2)
        if rest:
            out[key], i = _scalar(rest, lines[i][2]), i + 1
        elif i + 1 < len(lines) and lines[i + 1][0] > indent:
            out[key], i = _block(lines, i + 1, lines[i + 1][0])
        elif i + 1 < len(lines) and lines[i + 1][0] == indent and _is_item(lines[i + 1][1]):
            out[key], i = _sequence(lines, i + 1, indent)
        else:
            out[key], i = None, i + 1
    if i < len(lines) and lines[i][0] > indent:
        raise ValueError(f"{lines[i][2]}: unexpected indentation")
    return out, i


# ---------------------------------------------------------------------------------------------
# fluentd.conf: every `@type` with the kind of plugin its section asks for.

_DIRECTIVE = re.compile(r"^(<(/?)([a-z_]+)(?:\s[^>]*)?>|@type\s+(\S+)|format\s+(\S+))$")


def conf_types(text):
    """[(kind, type, line number, 'live' or 'commented')] for every @type (and <pattern>'s
    format). A commented-out line counts when it is a directive by itself (`# <match ...>`,
    `#   @type http`): the alternatives the comments offer are checked as well."""
    found, problems = [], []
    stacks = {"live": [], "commented": []}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = "live"
        if line.startswith("#"):
            line, where = line[1:].strip(), "commented"
        m = _DIRECTIVE.match(line)
        if not m:
            continue
        stack = stacks[where]
        if m.group(3):
            if m.group(2):
                if not stack or stack[-1] != m.group(3):
                    problems.append(f"line {n}: </{m.group(3)}> closes {stack[-1:]} ({where})")
                else:
                    stack.pop()
            else:
                stack.append(m.group(3))
            continue
        section = stack[-1] if stack else None
        if m.group(5) is not None and section != "pattern":
            continue  # `format` outside a <pattern>: a parameter of something else
        kind = SECTION_KIND.get(section)
        if kind is None:
            problems.append(f"line {n}: @type in <{section}>, a section this test does not know")
            continue
        found.append((kind, m.group(4) or m.group(5), n, where))
    for where, stack in stacks.items():
        if stack:
            problems.append(f"unclosed sections ({where}): {stack}")
    return found, problems


# ---------------------------------------------------------------------------------------------
# The Dockerfile: stages and instructions.


def dockerfile_stages(text):
    """[{'from': image, 'name': alias or None, 'instructions': [(INSTR, args)]}]"""
    joined, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not cur):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        joined.append(cur + s)
        cur = ""
    if cur:
        joined.append(cur)
    stages = []
    for line in joined:
        instr, _, args = line.partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "instructions": []})
        elif not stages:
            if instr != "ARG":
                raise ValueError(f"{instr} before FROM")
        else:
            stages[-1]["instructions"].append((instr, args))
    return stages


def shell_commands(run_args):
    """The simple commands of a RUN (shell form), split on && ; ||."""
    tokens = shlex.split(run_args, posix=True)
    out, cur = [], []
    for t in tokens:
        if t in ("&&", ";", "||"):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


_GEM_OPTS_WITH_VALUE = {"-v", "--version", "-s", "--source", "-i", "--install-dir", "-n",
                        "--bindir", "--platform", "--build-root", "-g", "--file"}


def gem_installs(stage):
    """[{'gem': name or None, 'file': path or None, 'version': v, 'local': bool}]"""
    out = []
    for instr, args in stage["instructions"]:
        if instr != "RUN":
            continue
        for cmd in shell_commands(args):
            if cmd[:2] != ["gem", "install"]:
                continue
            opts, names, i = {}, [], 2
            while i < len(cmd):
                t = cmd[i]
                if t.startswith("-"):
                    key, eq, val = t.partition("=")
                    if key in _GEM_OPTS_WITH_VALUE and not eq:
                        i += 1
                        val = cmd[i]
                    opts[key] = val
                else:
                    names.append(t)
                i += 1
            version = opts.get("--version", opts.get("-v"))
            local = "--local" in opts or "-l" in opts
            for n in names:
                if n.endswith(".gem"):
                    out.append({"gem": None, "file": n, "version": None, "local": local})
                else:
                    name, _, v = n.partition(":")
                    out.append({"gem": name, "file": None, "version": v or version,
                                "local": local})
    return out


def gem_name_of_file(path):
    m = re.fullmatch(r"(.+)-(\d[0-9A-Za-z.]*)\.gem", os.path.basename(path))
    return (m.group(1), m.group(2)) if m else (None, None)


def copies(stage):
    """[(from stage or None, [sources], destination)]"""
    out = []
    for instr, args in stage["instructions"]:
        if instr not in ("COPY", "ADD"):
            continue
        words = args.split()
        src_stage = None
        rest = []
        for w in words:
            if w.startswith("--from="):
                src_stage = w.split("=", 1)[1]
            elif not w.startswith("--"):
                rest.append(w)
        out.append((src_stage if instr == "COPY" else "ADD", rest[:-1], rest[-1]))
    return out


def env_of(stage, name):
    value = None
    for instr, args in stage["instructions"]:
        if instr != "ENV":
            continue
        words = shlex.split(args)
        if words and "=" not in words[0]:
            if words[0] == name:  # legacy `ENV NAME value`
                value = " ".join(words[1:])
            continue
        for w in words:
            k, _, v = w.partition("=")
            if k == name:
                value = v
    return value


def check_dockerfile(text):
    """Problems with the Dockerfile's base and NSQ plugin, and the gems it makes available."""
    problems = []
    stages = dockerfile_stages(text)
    if not stages:
        return ["no FROM"], set(), None
    final = stages[-1]
    base = final["from"].split("@", 1)[0]
    if base not in BASE_GEMS:
        problems.append(f"final stage FROM {final['from']}: not a base whose gems were read "
                        f"(BASE_GEMS has {sorted(BASE_GEMS)})")
    gems = set(BASE_GEMS.get(base, {}))
    by_name = {s["name"]: s for s in stages if s["name"]}
    copied = {}  # destination path of a copied file -> (stage, source)
    for src_stage, sources, dest in copies(final):
        if src_stage is None or src_stage == "ADD":
            problems.append(f"final stage copies {sources} from the build context ({CONTEXT} "
                            f"holds only the Dockerfile)")
            continue
        for s in sources:
            target = dest + os.path.basename(s) if dest.endswith("/") else dest
            copied[target] = (by_name.get(src_stage), s)
    for inst in gem_installs(final):
        if inst["file"]:
            name, version = gem_name_of_file(inst["file"])
            stage, src = copied.get(inst["file"], (None, None))
            if stage is None:
                problems.append(f"gem install {inst['file']}: not copied from a build stage")
                continue
            if name == "fluent-plugin-nsq":
                problems += check_fork_stage(stage, src)
            if not inst["local"]:
                problems.append(f"gem install {inst['file']} without --local")
            gems.add(name)
        else:
            if inst["gem"] == "fluent-plugin-nsq":
                problems.append("fluent-plugin-nsq installed by name: that is the RubyGems "
                                "release (nsqlookupd only), not the fork that takes nsqd")
                continue
            if inst["gem"] == "nsq-ruby":
                v = inst["version"] or ""
                m = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)*", v)
                if not m or int(m.group(1)) != NSQ_RUBY_MAJOR or \
                        int(m.group(2)) < NSQ_RUBY_MIN_MINOR:
                    problems.append(f"nsq-ruby version {v!r}: a fixed 2.x >= 2.3 is needed "
                                    f"(the fork's gemspec: ~> 2.3)")
            gems.add(inst["gem"])
    if "fluent-plugin-nsq" in gems and "nsq-ruby" not in gems:
        problems.append("fluent-plugin-nsq needs nsq-ruby (~> 2.3), which nothing installs")
    for instr, _ in final["instructions"]:
        if instr in ("USER", "ENTRYPOINT", "CMD"):
            problems.append(f"final stage sets {instr}: the base's is the one this test read "
                            f"(root; tini -- /fluentd/entrypoint.sh)")
    return problems, gems, env_of(final, "FLUENTD_CONF")


def check_fork_stage(stage, src):
    """The stage that built the fork's gem: a clone of FORK_REPO at FORK_COMMIT, gem build."""
    problems = []
    if stage is None:
        return ["the fluent-plugin-nsq gem comes from no named stage"]
    if stage["from"].split("@", 1)[0] not in BASE_GEMS:
        problems.append(f"stage {stage['name']} is FROM {stage['from']}, not the base")
    if os.path.basename(src) != FORK_GEM:
        problems.append(f"stage {stage['name']}: {src} is not {FORK_GEM} (the fork's "
                        f"name and version)")
    cmds = [c for i, a in stage["instructions"] if i == "RUN" for c in shell_commands(a)]
    clones = [c for c in cmds if c[:2] == ["git", "clone"]]
    urls = [re.sub(r"\.git$", "", t) for c in clones for t in c[2:] if "://" in t]
    if urls != [FORK_REPO]:
        problems.append(f"stage {stage['name']} clones {urls}, not {FORK_REPO}")
    checkouts = [t for c in cmds if c[:2] == ["git", "checkout"] for t in c[2:]
                 if not t.startswith("-")]
    if len(checkouts) != 1 or len(checkouts[0]) < 7 or not FORK_COMMIT.startswith(checkouts[0]):
        problems.append(f"stage {stage['name']} checks out {checkouts}, not {FORK_COMMIT}")
    if not any(c[:2] == ["gem", "build"] for c in cmds):
        problems.append(f"stage {stage['name']} runs no `gem build`")
    if not any(FORK_GEM in t for c in cmds for t in c):
        problems.append(f"stage {stage['name']} never names {FORK_GEM}")
    return problems


def unprovided_types(conf_text, gems):
    found, problems = conf_types(conf_text)
    provided = {k: set(v) for k, v in BUILTIN.items()}
    for gem in gems:
        if gem not in GEM_TYPES:
            continue
        for kind, types in GEM_TYPES[gem].items():
            provided.setdefault(kind, set()).update(types)
    for kind, t, n, where in found:
        if t not in provided.get(kind, set()):
            problems.append(f"fluentd.conf:{n}: {kind} `@type {t}` ({where}) is neither "
                            f"built into fluentd 1.16.3 nor in a gem the image has "
                            f"({sorted(gems)})")
    return found, problems


# ---------------------------------------------------------------------------------------------
# The manifests.


def daemonset():
    docs = [d for d in load_yaml(read_text(COLLECTORS), "collectors.yaml") if d]
    (ds,) = [d for d in docs if d.get("kind") == "DaemonSet"
             and any(c.get("image", "").split(":")[0] == IMAGE
                     for c in d["spec"]["template"]["spec"]["containers"])]
    (c,) = [c for c in ds["spec"]["template"]["spec"]["containers"]
            if c["image"].split(":")[0] == IMAGE]
    return ds, c


def kustomization():
    (k,) = load_yaml(read_text(KUSTOMIZATION), "kustomization.yaml")
    return k


def build_commands(text):
    """(image reference, context) of every `docker build -f deploy/fluentd/Dockerfile` in text."""
    return re.findall(r"(?:docker|podman) build -f deploy/fluentd/Dockerfile -t (\S+) (\S+)",
                      text)


def repository_name(ref):
    """The last path part of an image reference, without tag or digest: REGISTRY/a/b:T -> b."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def check_conf_path(fluentd_conf_env, c, ds, k):
    """FLUENTD_CONF (the image's) against the DaemonSet and the ConfigMap it mounts."""
    problems = []
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if fluentd_conf_env is None:
        problems.append("the Dockerfile sets no FLUENTD_CONF")
    if env.get("FLUENTD_CONF") != fluentd_conf_env:
        problems.append(f"FLUENTD_CONF: DaemonSet {env.get('FLUENTD_CONF')!r}, "
                        f"Dockerfile {fluentd_conf_env!r}")
    for key in ("command", "args"):
        if c.get(key):
            problems.append(f"the DaemonSet's container sets {key}: the base's entry point, "
                            f"which reads FLUENTD_CONF, would not run as this test read it")
    path = os.path.join(CONF_DIR, env.get("FLUENTD_CONF") or "")
    mounts = [m for m in c.get("volumeMounts", [])
              if m["mountPath"].rstrip("/") == os.path.dirname(path)]
    if len(mounts) != 1:
        return problems + [f"{len(mounts)} volumes mounted at {os.path.dirname(path)}"]
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"].get("volumes", [])}
    cm = (volumes.get(mounts[0]["name"]) or {}).get("configMap", {}).get("name")
    generated = {g["name"]: g for g in k.get("configMapGenerator", [])}
    if cm not in generated:
        return problems + [f"{os.path.dirname(path)} is volume {mounts[0]['name']}, not a "
                           f"ConfigMap kustomization.yaml generates ({cm})"]
    files = {}
    for f in generated[cm].get("files", []):
        key, eq, p = f.partition("=")
        files[key if eq else os.path.basename(f)] = p if eq else f
    key = os.path.basename(path)
    if os.path.normpath(os.path.join(K8S, files.get(key, ""))) != os.path.normpath(FLUENTD_CONF):
        problems.append(f"ConfigMap {cm}'s key {key} is {files.get(key)!r}, not "
                        f"collectors/fluentd.conf")
    return problems


class FluentdImageTest(unittest.TestCase):
    def dockerfile(self):
        problems, gems, conf = check_dockerfile(read_text(DOCKERFILE))
        return problems, gems, conf

    def test_dockerfile_base_and_nsq_plugin(self):
        problems, gems, _ = self.dockerfile()
        self.assertEqual(problems, [])
        self.assertLessEqual({"fluent-plugin-nsq", "nsq-ruby",
                              "fluent-plugin-kubernetes_metadata_filter",
                              "fluent-plugin-multi-format-parser"}, gems)

    def test_every_type_in_fluentd_conf_is_provided(self):
        _, gems, _ = self.dockerfile()
        found, problems = unprovided_types(read_text(FLUENTD_CONF), gems)
        self.assertEqual(problems, [])
        # Not vacuous: the live configuration's plugins were all seen.
        live = {(k, t) for k, t, _, w in found if w == "live"}
        self.assertLessEqual({("input", "tail"), ("parser", "multi_format"), ("parser", "json"),
                              ("parser", "regexp"), ("filter", "kubernetes_metadata"),
                              ("output", "http"), ("formatter", "json"), ("buffer", "file"),
                              ("output", "secondary_file")}, live)
        self.assertIn(("output", "nsq"), {(k, t) for k, t, _, w in found if w == "commented"})

    def test_conf_path_user_and_entry_point(self):
        _, _, conf = self.dockerfile()
        ds, c = daemonset()
        self.assertEqual(check_conf_path(conf, c, ds, kustomization()), [])

    def test_image_name_agrees(self):
        ds, c = daemonset()
        k = kustomization()
        entries = [i for i in k.get("images", []) if i["name"] == c["image"].split(":")[0]]
        self.assertEqual(len(entries), 1, f"kustomization.yaml images: {c['image']}")
        self.assertEqual(repository_name(entries[0].get("newName", entries[0]["name"])), IMAGE)
        for path in (DOCKERFILE, IMAGE_MD):
            cmds = build_commands(read_text(path))
            self.assertTrue(cmds, f"{path}: no `docker build -f deploy/fluentd/Dockerfile`")
            for ref, context in cmds:
                self.assertEqual(repository_name(ref), IMAGE, f"{path}: {ref}")
                self.assertEqual(context.rstrip("/"), CONTEXT, f"{path}: context {context}")
        # The context holds the Dockerfile and nothing the build needs.
        self.assertEqual(sorted(os.listdir(os.path.dirname(DOCKERFILE))), ["Dockerfile"])

    def test_checks_can_fail(self):
        """Each check, given a broken copy, reports it."""
        conf, docker = read_text(FLUENTD_CONF), read_text(DOCKERFILE)
        _, gems, env = check_dockerfile(docker)
        # An unknown output, an unknown filter, and an unknown type in a commented alternative.
        bad = re.sub(r"(?m)^(\s*)@type http$", r"\1@type kafka2", conf)
        self.assertNotEqual(bad, conf)
        bad += "\n<filter kubernetes.**>\n  @type concat\n</filter>\n"
        bad += "# <match x>\n#   @type elasticsearch\n# </match>\n"
        _, before = unprovided_types(conf, gems)
        _, problems = unprovided_types(bad, gems)
        problems = [p for p in problems if p not in before]  # the same lines keep their numbers
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(any("output `@type kafka2`" in p for p in problems), problems)
        self.assertTrue(any("filter `@type concat`" in p for p in problems), problems)
        self.assertTrue(any("`@type elasticsearch` (commented)" in p for p in problems), problems)
        # A multi_format pattern with a parser nobody provides.
        _, problems = unprovided_types(conf.replace("format regexp", "format grok", 1), gems)
        self.assertTrue(any("parser `@type grok`" in p for p in problems), problems)
        # Unbalanced sections.
        _, problems = conf_types(conf.replace("</filter>", "", 1))
        self.assertTrue(problems)
        # Without the fork, `@type nsq` is unprovided.
        _, problems = unprovided_types(conf, gems - {"fluent-plugin-nsq"})
        self.assertTrue(any("`@type nsq`" in p for p in problems), problems)
        # Another base; the registry's fluent-plugin-nsq; another commit; another repository;
        # nsq-ruby unpinned or too old; a USER; FLUENTD_CONF elsewhere.
        cases = {
            "not a base whose gems were read": docker.replace(
                "FROM " + BASE_IMAGE + "\n", "FROM fluent/fluentd:v1.16-debian-1\n"),
            "installed by name": docker.replace(
                "--local /tmp/gems/" + FORK_GEM, "fluent-plugin-nsq"),
            "checks out": docker.replace(FORK_COMMIT, "4418c14"),
            "clones": docker.replace("Glose/fluent-plugin-nsq", "uken/fluent-plugin-nsq"),
            "nsq-ruby version": docker.replace("--version 2.4.1 ", ""),
            "a fixed 2.x": docker.replace("--version 2.4.1", "--version 2.2.0"),
            "sets USER": docker + "USER fluent\n",
            "from the build context": docker + "COPY fluent.conf /fluentd/etc/\n",
        }
        for expect, text in cases.items():
            self.assertNotEqual(text, docker, expect)
            problems, _, _ = check_dockerfile(text)
            self.assertTrue(any(expect in p for p in problems), f"{expect}: {problems}")
        ds, c = daemonset()
        self.assertTrue(check_conf_path("fluentd.conf", c, ds, kustomization()))
        self.assertTrue(check_conf_path(env, dict(c, args=["-c", "/x"]), ds, kustomization()))

    def test_yaml_reader_agrees_with_pyyaml(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("PyYAML is not installed")
        for path in (COLLECTORS, KUSTOMIZATION):
            text = read_text(path)
            self.assertEqual(load_yaml(text, path),
                             [d for d in yaml.safe_load_all(text) if d is not None], path)


if __name__ == "__main__":
    unittest.main(verbosity=2)
