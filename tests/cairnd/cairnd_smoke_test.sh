#!/usr/bin/env bash
# cairnd as an operator meets it today: --help documents the flags, it opens a store and says so,
# a SIGTERM ends it cleanly (exit 0, well within 10 s) with the data kept, and a store of an
# unknown format is refused with a non-zero exit and a message saying why.
set -euo pipefail
bin="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

help=$("$bin" --help)
# nsqd's flags where the concept is the same, then Cairn's own; each with its default.
for flag in tcp-address http-address data-path msg-timeout max-msg-timeout max-msg-size max-body-size \
  max-rdy-count max-req-timeout max-heartbeat-interval max-output-buffer-size \
  max-output-buffer-timeout sync retention-age retention-bytes compression; do
  grep -Eq -- "--$flag [A-Z]+=[^ ]" <<<"$help" || fail "--help does not document --$flag with its default"
done
grep -q -- "--max-msg-timeout TEXT=15m " <<<"$help" || fail "--max-msg-timeout default is not nsqd's 15m"
grep -q -- "--tcp-address TEXT=0.0.0.0:4150" <<<"$help" || fail "--tcp-address default is not 0.0.0.0:4150"
out=$("$bin" --sync=sometimes --data-path="$dir/x" 2>&1) && fail "a bad --sync was accepted"
grep -q "bad sync policy" <<<"$out" || fail "a bad --sync gave no reason: $out"

"$bin" --data-path="$dir/store" --tcp-address=127.0.0.1:0 --http-address=127.0.0.1:0 >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "cairnd ready" "$dir/log" && break; sleep 0.1; done
grep -q "cairnd ready" "$dir/log" || fail "cairnd did not report ready: $(cat "$dir/log")"
grep -Eq "TCP: listening on 127\.0\.0\.1:[1-9][0-9]*$" "$dir/log" ||
  fail "cairnd did not log the address it bound: $(cat "$dir/log")"
kill -TERM "$pid"
start=$(date +%s)
wait "$pid" && rc=0 || rc=$?
[ "$rc" -eq 0 ] || fail "cairnd exited $rc on SIGTERM"
[ $(( $(date +%s) - start )) -le 10 ] || fail "cairnd took more than 10 s to stop"
[ -f "$dir/store/CURRENT" ] || fail "no store was written"

mkdir "$dir/other" && echo hello >"$dir/other/notes.txt"
if "$bin" --data-path="$dir/other" --tcp-address=127.0.0.1:0 --http-address=127.0.0.1:0 >"$dir/log2" 2>&1; then fail "cairnd opened a directory that is not a store"; fi
grep -q "refusing" "$dir/log2" || fail "no reason given: $(cat "$dir/log2")"
echo "cairnd smoke: 1 passed, 0 failed"
