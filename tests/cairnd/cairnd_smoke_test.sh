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
grep -q -- "--sync" <<<"$help" || fail "--help does not document --sync"
grep -q -- "--retention-age" <<<"$help" || fail "--help does not document --retention-age"
out=$("$bin" --sync=sometimes --data-path="$dir/x" 2>&1) && fail "a bad --sync was accepted"
grep -q "bad sync policy" <<<"$out" || fail "a bad --sync gave no reason: $out"

"$bin" --data-path="$dir/store" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "cairnd ready" "$dir/log" && break; sleep 0.1; done
grep -q "cairnd ready" "$dir/log" || fail "cairnd did not report ready: $(cat "$dir/log")"
kill -TERM "$pid"
start=$(date +%s)
wait "$pid" && rc=0 || rc=$?
[ "$rc" -eq 0 ] || fail "cairnd exited $rc on SIGTERM"
[ $(( $(date +%s) - start )) -le 10 ] || fail "cairnd took more than 10 s to stop"
[ -f "$dir/store/CURRENT" ] || fail "no store was written"

mkdir "$dir/other" && echo hello >"$dir/other/notes.txt"
if "$bin" --data-path="$dir/other" >"$dir/log2" 2>&1; then fail "cairnd opened a directory that is not a store"; fi
grep -q "refusing" "$dir/log2" || fail "no reason given: $(cat "$dir/log2")"
echo "cairnd smoke: 1 passed, 0 failed"
