#!/usr/bin/python3
"""The layers hold: every project #include in the source folders follows the layer table.

Each folder is a layer and a library (README.md, "Layout"). A file may include its own layer and
the layers its row names, nothing else; arrows run one way, from the daemon down to the
utilities. The test reads every #include "..." of every C++ file under the layers' folders and
fails on each one the table forbids, naming the file and the line. A C++ file in a folder that
is no layer fails too, so that a new folder gets a row here before it gets code.

Usage: layers_test.py [source root]  (default: the tree this file is in)
       layers_test.py --self-test      (the check itself, on a small tree it writes)
"""

import os
import re
import sys
import tempfile

# Layer (a folder, relative to the root) -> the layers it may include besides itself.
LAYERS = {
    # Utilities every layer may use: clock, histogram, durations, addresses, names.
    "src/base": [],
    # The log store on RocksDB: no broker, no socket.
    "storage": ["src/base"],
    # Wire libraries that know no broker: the NSQ codec and client, HTTP server and client,
    # Prometheus text.
    "net": ["src/base"],
    # The broker core: topics, channels, delivery, over either kind of log. No socket, no frame.
    "src/core": ["src/base", "storage"],
    # cairnd's server: sessions, IDENTIFY, the HTTP API, the wiring and main. The only layer
    # that composes the core with the wire.
    "src/server": ["src/base", "storage", "net", "src/core"],
    # The workers reach cairnd only through the wire, as any third party.
    "consumers": ["src/base", "net"],
    # The benchmarks and the sample traffic, as clients too.
    "bench": ["src/base", "net"],
}

# Single files allowed one more arrow, each with its reason.
EXCEPTIONS = {
    # The storage benchmark measures the storage layer itself, below any broker.
    ("bench/storage_bench.cc", "storage"),
}

# Folders that hold C++ and are no layer: they may include anything.
UNCHECKED = ("tests/",)

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
CPP = (".h", ".hpp", ".cc", ".cpp")


def layer_of(path):
    """The layer a repository-relative path lies in (longest folder prefix), or None."""
    best = None
    for layer in LAYERS:
        if path == layer or path.startswith(layer + "/"):
            if best is None or len(layer) > len(best):
                best = layer
    return best


def check(root):
    """Yields one message per forbidden include, per C++ file outside any layer."""
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                         not (rel_folder == "." and d in ("build", "data")))
        for name in sorted(files):
            if not name.endswith(CPP):
                continue
            path = os.path.normpath(os.path.join(rel_folder, name))
            if path.startswith(UNCHECKED):
                continue
            own = layer_of(path)
            if own is None:
                yield f"{path}: C++ in a folder that is no layer (add its row to LAYERS)"
                continue
            allowed = {own, *LAYERS[own]}
            with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    to = layer_of(target)
                    if to is None:
                        yield (f"{path}:{number}: includes \"{target}\", which is in no layer "
                               "(project includes are written from the root)")
                    elif to not in allowed and (path, to) not in EXCEPTIONS:
                        yield (f"{path}:{number}: {own} may not include {to} (\"{target}\"); "
                               f"{own} may include {', '.join(sorted(allowed))}")


def self_test():
    """The check finds an upward arrow, an include from no layer and a file in no layer, with
    the file and line of each, and passes a tree that follows the table."""
    with tempfile.TemporaryDirectory() as root:
        def write(path, text):
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(text)
        write("src/base/clock.h", "#pragma once\n#include <chrono>\n")
        write("src/core/broker.cc", '#include "src/core/broker.h"\n#include "src/base/clock.h"\n')
        write("bench/storage_bench.cc", '#include "storage/store.h"\n')
        write("tests/any_test.cc", '#include "src/server/main.cc"\n')
        clean = list(check(root))
        assert clean == [], clean
        write("net/client.cc", '#include "net/client.h"\n\n#include "src/core/broker.h"\n')
        write("consumers/x.cc", '#include "broker.h"\n')
        write("src/other/y.cc", "int y;\n")
        found = list(check(root))
        expect = ["consumers/x.cc:1: includes \"broker.h\"",
                  "net/client.cc:3: net may not include src/core",
                  "src/other/y.cc: C++ in a folder that is no layer"]
        assert len(found) == len(expect), found
        for message, prefix in zip(found, expect):
            assert message.startswith(prefix), (message, prefix)
    print("the check finds what breaks the table and passes what follows it")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    problems = list(check(root))
    for p in problems:
        print(p)
    checked = sum(1 for layer in LAYERS if os.path.isdir(os.path.join(root, layer)))
    if checked != len(LAYERS):
        print(f"only {checked} of the {len(LAYERS)} layers' folders exist under {root}")
        return 1
    if problems:
        print(f"{len(problems)} include(s) break the layer table (tests/layers_test.py)")
        return 1
    print(f"the includes of {len(LAYERS)} layers follow the table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
