#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpora, tests/fuzz/corpus/<harness>/seed-*, from the inputs the
unit tests use (string literals of their sources, the commands, frames, targets and records they
build) and a few records of cairn-sample's sample traffic. Regression inputs (regress-*) are left
alone. Deterministic: running it again rewrites the same files.

  tests/fuzz/make_seeds.py [path/to/cairn-sample]   (default: build/release/bin/cairn-sample)
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
CAIRN_SAMPLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "release", "bin", "cairn-sample")


def cpp_string_literals(path):
    """The string literals of a C++ source, adjacent ones joined, escapes decoded, as bytes."""
    src = open(path, encoding="utf-8").read()
    out, i, n = [], 0, len(src)
    pending = None  # literal being joined with the next adjacent one

    def flush():
        nonlocal pending
        if pending is not None:
            out.append(pending)
            pending = None

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            i = src.find("*/", i) + 2
        elif c == "'":  # a character literal: skip it
            j = i + 1
            while src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            flush()
        elif src.startswith('R"', i) and not (src[i - 1].isalnum() or src[i - 1] == "_"):
            delim_end = src.index("(", i)
            delim = src[i + 2:delim_end]
            end = src.index(")" + delim + '"', delim_end)
            text = src[delim_end + 1:end].encode()
            pending = text if pending is None else pending + text
            i = end + len(delim) + 2
        elif c == '"':
            j, buf = i + 1, bytearray()
            while src[j] != '"':
                if src[j] != "\\":
                    buf += src[j].encode()
                    j += 1
                    continue
                e = src[j + 1]
                simple = {"n": 10, "t": 9, "r": 13, "0": 0, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, '"': 34,
                          "'": 39, "?": 63}
                if e == "x":
                    k = j + 2
                    while k < len(src) and src[k] in "0123456789abcdefABCDEF":
                        k += 1
                    buf.append(int(src[j + 2:k], 16) & 0xFF)
                    j = k
                elif e in "01234567" and src[j + 2] in "01234567":
                    k = j + 1
                    while k < j + 4 and src[k] in "01234567":
                        k += 1
                    buf.append(int(src[j + 1:k], 8) & 0xFF)
                    j = k
                else:
                    buf.append(simple.get(e, ord(e)))
                    j += 2
            pending = bytes(buf) if pending is None else pending + bytes(buf)
            i = j + 1
        elif c.isspace():
            i += 1
        else:
            flush()
            i += 1
    flush()
    return out


def be32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def command(line, body=None):
    out = line.encode() + b"\n"
    if body is not None:
        out += be32(len(body)) + body
    return out


def mpub(topic, bodies):
    payload = be32(len(bodies)) + b"".join(be32(len(b)) + b for b in bodies)
    return command("MPUB " + topic, payload)


def frame(kind, data):
    return be32(len(data) + 4) + be32(kind) + data


def message_frame(ts, attempts, msg_id, body):
    return frame(2, struct.pack(">QH", ts, attempts) + msg_id + body)


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def batch_value(base, messages, first_ts):
    """A record batch with codec none, as record_batch.h lays it out; messages are (ts, defer, body)."""
    payload = b"".join(varint(ts - first_ts) + varint(defer) + varint(len(body)) + body
                       for ts, defer, body in messages)
    header = struct.pack("<BBHQIIqq", 1, 0, 0, base, len(messages), len(payload), first_ts, messages[-1][0])
    crc = crc32c(payload + header)  # BatchCrc: the payload, then header bytes 4..40
    return struct.pack("<I", crc) + header + payload


def deis_record(app, pod, container, log):
    """tests/consumers/log_store_test.cc's Record(): nlohmann's dump, keys sorted."""
    j = {"log": log, "stream": "stdout", "time": "2016-10-18T20:29:38.123456+00:00",
         "docker": {"container_id": "abc"},
         "kubernetes": {"namespace_name": app, "pod_name": pod, "container_name": container,
                        "labels": {"app": app, "heritage": "deis"}, "host": "node-1"}}
    return json.dumps(j, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sample(kind, n):
    if not os.path.exists(CAIRN_SAMPLE):
        sys.exit(f"{CAIRN_SAMPLE}: not found (build it, or pass the path to cairn-sample)")
    return subprocess.run([CAIRN_SAMPLE, kind, str(n)], check=True,
                          capture_output=True).stdout.splitlines(keepends=True)


def nsq_command():
    seeds = [command("NOP"), command("CLS"), command("SUB logs archive"), command("RDY 100"),
             command("FIN 000000000000002a"), command("REQ 000000000000002a 500"),
             command("TOUCH 000000000000002a"), command("PUB logs", b"hello"),
             command("DPUB logs 1500", b"later"), mpub("logs", [b"a", b"bb", b"ccc"]),
             command("IDENTIFY", b'{"client_id":"x"}'), command("AUTH", b"secret"),
             b"SUB logs archive\r\n", command("PUB"), command("PUB bad!topic"),
             command("PUB logs") + be32(0), command("PUB logs") + be32(0xFFFFFFFF), command("PUB logs") + be32(101),
             command("DPUB logs"), command("MPUB a:b"), command("MPUB logs") + be32(4) + be32(0),
             command("MPUB logs") + be32(14) + be32(2) + be32(1) + b"a" + be32(0) + b"x",
             command("MPUB logs") + be32(9) + be32(1) + be32(5) + b"a", command("SUB logs"),
             command('SUB lo"gs c'), command("SUB logs a\tb"), command("FIN"), command("FIN 12345"),
             command("AUTH x"), command("IDENTIFY") + be32(0), command("ASDF"), b"\n", command("pub logs"),
             b"A" * 200]
    stream = (command("IDENTIFY", b'{"heartbeat_interval":1000}') + command("PUB logs", b"hello world")
              + mpub("metrics", [b"one", b"two"]) + b"SUB a b\nRDY 5\nFIN 0000000000000001\n"
              + b"REQ 0000000000000001 5\n")
    return seeds + [stream]


def nsq_frame():
    negotiated = (b'{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":5000,'
                  b'"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,'
                  b'"sample_rate":10,"auth_required":false,"output_buffer_size":16384,'
                  b'"output_buffer_timeout":250,"topology_region":"","topology_zone":""}')
    msg = message_frame(0x0102030405060708, 0x0A0B, b"000000000000002a", b"body")
    seeds = [frame(0, b"OK"), frame(0, b"_heartbeat_"), frame(0, b"CLOSE_WAIT"),
             frame(1, b"E_INVALID invalid command X"), frame(1, b"E_FIN_FAILED FIN 000000000000002a failed"),
             msg, frame(0, negotiated), negotiated, msg[:9]]
    # nsqlookupd's answers to cairnd: a size and the data, no frame type.
    lookupd = (b'{"broadcast_address":"vm","hostname":"vm","http_port":4161,"tcp_port":4160,'
               b'"version":"1.3.0"}')
    answers = [answer(lookupd), answer(b"OK"), answer(b"E_BAD_TOPIC REGISTER topic name 'a!' is not valid"),
               answer(b"E_INVALID client must IDENTIFY")]
    # nsqlookupd's /lookup?topic= answer, as consumers read it.
    lookup = (b'{"channels":["c"],"producers":[{"remote_address":"127.0.0.1:5","hostname":"vm",'
              b'"broadcast_address":"127.0.0.1","tcp_port":4150,"http_port":4151,"version":"1.3.0"},'
              b'{"broadcast_address":"::1","tcp_port":4150},{"broadcast_address":"x","tcp_port":70000}]}')
    return (seeds + answers + [lookup, answer(lookupd) + answer(b"OK") * 3]
            + [frame(0, negotiated) + frame(0, b"OK") + msg + frame(0, b"_heartbeat_") + msg])


def answer(data):
    return struct.pack(">I", len(data)) + data


def identify():
    return [b'{"feature_negotiation":true,"msg_timeout":5000,"heartbeat_interval":1000,"sample_rate":10,'
            b'"client_id":"c1","user_agent":"ua"}',
            b'{"feature_negotiation":true,"tls_v1":true,"snappy":true,"deflate":true}', b"{}", b"null",
            b'{"Heartbeat_Interval":2000}', b'{"heartbeat_interval":-1}', b'{"heartbeat_interval":999}',
            b'{"heartbeat_interval":60001}', b'{"output_buffer_timeout":10}', b'{"output_buffer_size":63}',
            b'{"output_buffer_size":-1}', b'{"sample_rate":100}', b'{"msg_timeout":999}',
            b'{"msg_timeout":900001}', b'{"heartbeat_interval":"1000"}', b'{"heartbeat_interval":1000.5}',
            b'{"feature_negotiation":1}', b"[]", b"{", b'{"sample_rate":4294967296}', b'{"unknown":[1,2,3]}',
            b'{"client_id":"worker1","hostname":"w1.local","user_agent":"test/1"}', b'{"msg_timeout":1000}',
            b'{"msg_timeout":10}', b'{"sample_rate":25}']


def http_params():
    targets = cpp_string_literals(os.path.join(ROOT, "tests/server/http_test.cc"))
    seeds = [t for t in targets if t.startswith(b"/") and len(t) < 200]
    return seeds + [b"/topic/config?topic=t&retention_age=1h30m&message_ttl=1.5h&retention_bytes=1048576",
                    b"/channel/create?topic=t&channel=c&start=time:2026-11-25T10:00:00.5%2B01:00",
                    b"/topic/offset?topic=t&at=offset:18446744073709551615",
                    b"/logs/foo?log_lines=10&follow=true", b"/pub?topic=a%20b&defer=1&defer=2"]


def record_batch():
    ts = 1_700_000_000_000_000_000
    seeds = []
    # Mode 3, written then damaged: codec, base, shift, count, then per message its length, body, time step
    # and defer; then no damage (tests/storage/record_batch_test.cc's bodies, the long one cut to 255).
    bodies = [b"hello", b"", b"x" * 255, b"binary\0zero"]
    for codec in range(3):
        msg = b"".join(bytes([len(b)]) + b + struct.pack("<HH", 0x4000 + 10, 4 if i != 1 else 5)
                       for i, b in enumerate(bodies))
        seeds.append(bytes([3, codec]) + struct.pack("<QHB", 42, 0, len(bodies) - 1) + struct.pack("<I", 7)
                     + msg + bytes([0]))
    # Mode 2, a payload compressed by the harness: codec, base, count, first_ts, last_ts, raw_len flag and value.
    payload = b"".join(varint(i * 10) + varint(0) + varint(len(b)) + b for i, b in enumerate(bodies))
    for codec in range(3):
        seeds.append(bytes([2, codec]) + struct.pack("<QIqq", 7, len(bodies), ts, ts + 30) + bytes([0])
                     + struct.pack("<I", 0) + payload)
    # Modes 0 and 1: whole stored values (codec none, valid CRC).
    value = batch_value(256, [(ts + 10 * i, 5_000_000 if i == 0 else 0, b) for i, b in enumerate(bodies)], ts)
    seeds += [bytes([0]) + value, bytes([1]) + value, bytes([0]) + value[:40], bytes([1]) + value[:39]]
    return seeds


def snappy_stored(*texts):
    """A snappy framed stream of stored (uncompressed) chunks, one per text."""
    out = b"\xff\x06\x00\x00sNaPpY"
    for t in texts:
        crc = crc32c(t)
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        out += bytes([1]) + struct.pack("<I", len(t) + 4)[:3] + struct.pack("<I", masked) + t
    return out


def raw_deflate(*texts):
    """Raw DEFLATE, a sync flush after each text, as nsqd's writer sends it."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return b"".join(z.compress(t) + z.flush(zlib.Z_SYNC_FLUSH) for t in texts)


def stream_codec():
    # The harness's first three bytes: decoder (odd: snappy), read size, plain bytes asked for.
    frames = [command("IDENTIFY", b'{"feature_negotiation":true}'), command("SUB logs ch"),
              command("RDY 100"), mpub("logs", [b"a" * 100, b"b" * 3000])]
    seeds = []
    for head in (b"\x01\x00\x00", b"\x01\x07\x10", b"\x00\x00\x00", b"\x00\x3f\x01"):
        snappy = head[0] & 1
        seeds.append(head + (snappy_stored(*frames) if snappy else raw_deflate(*frames)))
        seeds.append(head + (snappy_stored(b"x" * 70000) if snappy else raw_deflate(b"\0" * 200000)))
    seeds.append(b"\x01\x00\x00\xff\x06\x00\x00sNaPpY\x80\x03\x00\x00abc\xfe\x00\x00\x00")
    return seeds


def auth_answer():
    # The harness's first byte: how many bytes of topic (and half as many of channel) follow.
    answers = [b'{"ttl":3600,"identity":"w","identity_url":"u","authorizations":'
               b'[{"topic":"^logs$","channels":[".*"],"permissions":["publish","subscribe"]}]}',
               b'{"ttl":1,"authorizations":[{"topic":"logs","channels":["a","b+"],"permissions":["publish"]}]}',
               b'{"ttl":3600,"authorizations":[]}', b'{"ttl":0}', b'{"ttl":5,"authorizations":[{"topic":"(",'
               b'"permissions":["subscribe"]}]}', b'{"ttl":5,"authorizations":[{"permissions":["admin"]}]}']
    return [bytes([4]) + b"logsch" + a for a in answers] + [bytes([2]) + b"xyz" + answers[0]]


def line_protocol():
    literals = cpp_string_literals(os.path.join(ROOT, "tests/consumers/line_protocol_test.cc"))
    seeds = [s for s in literals if 3 <= len(s) <= 512]
    points = sample("metrics", 9)
    return seeds + points[:3] + [b"".join(points[3:])]


def log_record():
    seeds = [deis_record("foo", "foo-web-845861952-nzf60", "foo-web", "hello world\n"),
             deis_record("a", "p", "c", "x\r\n"), deis_record("a", "p", "c", "a\nb\n"),
             deis_record("deis-controller", "deis-controller-3539876574-wq6jx", "deis-controller",
                         "INFO [foo]: admin deployed 2fd9226\n"),
             deis_record("deis-controller", "ctl", "x-deis-controller-y", "ERROR   [bar]:    build failed   \n"),
             deis_record("deis-controller", "ctl", "deis-controller", "WARN [x][baz]: y"),
             deis_record("deis-controller", "ctl", "deis-controller", "x\nINFO [foo]: y"),
             deis_record("deis-controller", "ctl", "deis-controller", "INFO [foo]: a\rb\r\n"),
             deis_record("deis-controller", "ctl", "deis-controller", "DEBUG [q]:"),
             deis_record("deis-controller", "ctl", "deis-controller",
                         "[2016-10-18 20:29:38 +0000] [1] [INFO] Booting worker\n"),
             deis_record("deis-controller", "ctl", "deis-controller", "info [foo]: lower case"),
             b"just some text\n", b"{not json", b"42", b'["a"]\n', b"bin\0ary\xff",
             b'{"log":"no labels\\n","kubernetes":{"pod_name":"p-1"}}', b'{"log":"no kubernetes\\n"}',
             b'{"log":"x","kubernetes":{"pod_name":"p","labels":{"app":""}}}',
             b'{"log":"x","kubernetes":{"labels":{"app":7}}}', b'{"msg":"other"}',
             b'{"log":"x\\n","kubernetes":{"labels":{"app":"foo"}}}',
             b'{"kubernetes":{"pod_name":"p","labels":{"app":"foo"}}}']
    return seeds + [line.rstrip(b"\n") for line in sample("logs", 4)]


def main():
    for harness, make in [("nsq_command", nsq_command), ("nsq_frame", nsq_frame), ("identify", identify),
                          ("http_params", http_params), ("record_batch", record_batch),
                          ("stream_codec", stream_codec), ("auth_answer", auth_answer),
                          ("line_protocol", line_protocol), ("log_record", log_record)]:
        d = os.path.join(CORPUS, harness)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if name.startswith("seed-"):
                os.remove(os.path.join(d, name))
        seeds = sorted(set(make()))
        for s in seeds:
            with open(os.path.join(d, "seed-" + hashlib.sha1(s).hexdigest()[:12]), "wb") as f:
                f.write(s)
        print(f"{harness}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
