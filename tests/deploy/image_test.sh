#!/usr/bin/env bash
# The image without Docker: builds deploy/Dockerfile's runtime stage as a file tree in a temporary
# folder (the five binaries in usr/local/bin, each shared library `ldd` lists for them and the
# dynamic loader at the same paths, the user, the data directory, /tmp, and the few files glibc
# reads to resolve localhost), then runs the binaries inside it with chroot: `--help` for each, and
# cairnd started with the Dockerfile's own CMD (its addresses moved to loopback port 0), a message
# published over HTTP from outside, consumed by cairn-bench from inside, cairn-bench's own sample
# messages published and consumed inside, and a SIGTERM that must end cairnd with exit 0. A
# library missing from the tree fails here.
#
# It also reads the Dockerfile: the runtime stage must copy exactly these binaries, and its
# apt-get line must install exactly the Debian packages (dpkg -S) owning the libraries the tree
# needed, so a Dockerfile that forgets a package, or installs one nothing links, fails here.
#
# usage: image_test.sh SOURCE_DIR BIN_DIR
# Exits 77 (skipped) when this machine can neither chroot (as root) nor chroot in a user
# namespace (unshare --map-root-user), or lacks ldd or dpkg.
set -euo pipefail
umask 022

src=${1:?usage: image_test.sh SOURCE_DIR BIN_DIR}
bin=${2:?usage: image_test.sh SOURCE_DIR BIN_DIR}
dockerfile="$src/deploy/Dockerfile"
binaries=(cairnd cairn-logger cairn-metrics cairn-replay cairn-bench)
uid=10001
data_dir=/var/lib/cairn
# Packages the runtime stage may install although no library of the binaries needs them: none.
extra_allowed=()

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
failures=()
check() { failures+=("$*"); echo "FAIL: $*" >&2; }

for tool in ldd dpkg chroot timeout; do
  command -v "$tool" >/dev/null || skip "$tool is not installed: the image's tree cannot be built or checked here"
done
[ -f "$dockerfile" ] || fail "no $dockerfile"
for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || fail "no binary $bin/$b"; done

# ---------------------------------------------------------------------------------------------
# The Dockerfile, as logical instructions: continuation lines joined, comments dropped.
instructions=$(awk '
  /^[ \t]*#/ { next }
  { line = $0; sub(/[ \t\r]+$/, "", line)
    if (line ~ /\\$/) { acc = acc substr(line, 1, length(line) - 1) " "; next }
    acc = acc line; if (acc ~ /[^ \t]/) print acc; acc = "" }
  END { if (acc ~ /[^ \t]/) print acc }' "$dockerfile" | sed -E 's/[ \t]+/ /g; s/^ //')
stages=$(grep -c '^FROM ' <<<"$instructions" || true)
[ "$stages" -ge 2 ] || check "the Dockerfile is not multi-stage ($stages FROM lines)"
build_stage=$(awk '/^FROM /{n++} n==1' <<<"$instructions")
runtime=$(awk -v last="$stages" '/^FROM /{n++} n==last' <<<"$instructions")

# Build stage: Debian bookworm, the README's build, no tests run, and every directory the
# top-level CMakeLists.txt adds is copied in.
grep -Eq '^FROM debian:bookworm( |$)' <<<"$build_stage" || check "the build stage is not FROM debian:bookworm"
grep -q '^RUN .*bash \.ci/dev build release' <<<"$build_stage" || check "the build stage does not run 'bash .ci/dev build release'"
if grep -Eq '^RUN .*(ctest|\.ci/dev test)' <<<"$build_stage"; then check "the build stage runs tests"; fi
copied=$(grep '^COPY ' <<<"$build_stage" | grep -v -- '--from' | sed -E 's/^COPY //; s/ [^ ]+$//' | tr ' ' '\n' | sed -E 's#/$##; s#^\./##')
for need in CMakeLists.txt CMakePresets.json .ci \
  $(sed -nE 's/^[ \t]*add_subdirectory\(([A-Za-z0-9_]+)\).*/\1/p' "$src/CMakeLists.txt"); do
  grep -qx -- "$need" <<<"$copied" || check "the build stage does not copy $need, which the build reads"
done

# Runtime stage.
grep -Eq '^FROM debian:bookworm-slim( |$)' <<<"$runtime" || check "the runtime stage is not FROM debian:bookworm-slim"
copy_from=$(grep -E '^COPY .*--from=' <<<"$runtime" || true)
[ -n "$copy_from" ] || check "the runtime stage copies nothing from the build stage"
copied_bins=()
while read -r line; do
  [ -n "$line" ] || continue
  # shellcheck disable=SC2206
  words=($line)
  dest=${words[-1]}
  [[ "$dest" == /usr/local/bin/ || "$dest" == /usr/local/bin ]] || check "runtime COPY goes to $dest, not /usr/local/bin/: $line"
  for w in "${words[@]:1:${#words[@]}-2}"; do
    [[ "$w" == --* ]] && continue
    copied_bins+=("$(basename "$w")")
  done
done <<<"$copy_from"
for b in "${binaries[@]}"; do
  printf '%s\n' "${copied_bins[@]}" | grep -qx -- "$b" || check "the runtime stage does not copy $b into /usr/local/bin"
done
for c in "${copied_bins[@]}"; do
  printf '%s\n' "${binaries[@]}" | grep -qx -- "$c" || check "the runtime stage copies $c, which this test does not run"
done
# The packages its apt-get install line names.
installed_pkgs=$(grep '^RUN ' <<<"$runtime" | awk '{
  n = split($0, segs, /&&|;|\|\|/)
  for (i = 1; i <= n; i++) {
    m = split(segs[i], w, /[ \t]+/); apt = 0; on = 0
    for (j = 1; j <= m; j++) {
      if (on && w[j] != "" && w[j] !~ /^-/) print w[j]
      if (w[j] ~ /(^|\/)apt(-get)?$/) apt = 1
      else if (apt && w[j] == "install") on = 1
    }
  }
}' | sort -u)
[ -n "$installed_pkgs" ] || check "the runtime stage installs no packages with apt-get install"
grep -Eq "^USER ${uid}(:${uid})?$" <<<"$runtime" || check "the runtime stage does not run as USER $uid (numeric)"
grep -Eq -- "useradd .*--uid ${uid}( |$)" <<<"$runtime" || check "the runtime stage does not create user $uid"
grep -Eq -- "useradd .*--shell /usr/sbin/nologin" <<<"$runtime" || check "user $uid has a login shell"
grep -Eq -- "install -d -o ${uid} -g ${uid} .*${data_dir}( |$)" <<<"$runtime" || check "$data_dir is not created owned by $uid"
grep -Eq '^EXPOSE( [0-9]+)* 4150( |$)' <<<"$runtime" || check "the runtime stage does not EXPOSE 4150"
grep -Eq '^EXPOSE( [0-9]+)* 4151( |$)' <<<"$runtime" || check "the runtime stage does not EXPOSE 4151"
grep -qx 'STOPSIGNAL SIGTERM' <<<"$runtime" || check "no STOPSIGNAL SIGTERM"
grep -qx 'ENTRYPOINT \["/usr/local/bin/cairnd"\]' <<<"$runtime" ||
  check 'ENTRYPOINT is not the exec form ["/usr/local/bin/cairnd"] (SIGTERM must reach cairnd as PID 1)'
cmd_line=$(grep '^CMD \[' <<<"$runtime" || true)
[ -n "$cmd_line" ] || check "no CMD in exec form"
mapfile -t cmd_args < <(grep -o '"[^"]*"' <<<"$cmd_line" | sed 's/^"//; s/"$//')
printf '%s\n' "${cmd_args[@]}" | grep -qx -- "--data-path=$data_dir" || check "CMD does not set --data-path=$data_dir"
printf '%s\n' "${cmd_args[@]}" | grep -qx -- "--tcp-address=0.0.0.0:4150" || check "CMD does not set --tcp-address=0.0.0.0:4150"
printf '%s\n' "${cmd_args[@]}" | grep -qx -- "--http-address=0.0.0.0:4151" || check "CMD does not set --http-address=0.0.0.0:4151"

# ---------------------------------------------------------------------------------------------
# The libraries: what ldd lists for the binaries (and the loader), each owned by a package.
declare -A libs=()
for b in "${binaries[@]}"; do
  out=$(ldd "$bin/$b") || fail "ldd $b failed: $out"
  if grep -q 'not found' <<<"$out"; then fail "$b needs a library this machine lacks: $(grep 'not found' <<<"$out")"; fi
  while read -r path; do [ -n "$path" ] && libs[$path]=1; done < <(awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }' <<<"$out")
done
libc=""
for l in "${!libs[@]}"; do [[ "$(basename "$l")" == libc.so.6 ]] && libc=$l; done
[ -n "$libc" ] || fail "ldd lists no libc.so.6"
# getaddrinfo("localhost") goes through NSS's "files" module. glibc 2.34 and later build it into
# libc.so.6 (libnss_files.so.2 is an empty stub); an older glibc loads it at run time.
if ! grep -qa _nss_files_gethostbyname4_r "$libc"; then
  nss="$(dirname "$libc")/libnss_files.so.2"
  [ -e "$nss" ] || fail "this glibc needs $nss for /etc/hosts, and it is missing"
  libs[$nss]=1
fi

pkg_of() {  # the package owning a library path; /lib and /usr/lib are one under usrmerge
  local c v out
  for c in "$1" "$(readlink -f "$1")"; do
    for v in "$c" "${c#/usr}" "/usr$c"; do
      out=$(dpkg -S "$v" 2>/dev/null | grep -v '^diversion' | head -n 1) || continue
      [ -n "$out" ] && { echo "${out%%:*}"; return 0; }
    done
  done
  return 1
}
declare -A needed_pkgs=()
for l in $(printf '%s\n' "${!libs[@]}" | sort); do
  p=$(pkg_of "$l") || { check "no Debian package owns $l (dpkg -S)"; continue; }
  needed_pkgs[$p]+="$(basename "$l") "
done
for p in $(printf '%s\n' "${!needed_pkgs[@]}" | sort); do
  grep -qx -- "$p" <<<"$installed_pkgs" ||
    check "the runtime stage's apt-get install lacks $p, which provides ${needed_pkgs[$p]% }"
done
for p in $installed_pkgs; do
  [ -n "${needed_pkgs[$p]:-}" ] && continue
  printf '%s\n' "${extra_allowed[@]:-}" | grep -qx -- "$p" && continue
  check "the runtime stage installs $p, which no library of the binaries comes from"
done
echo "libraries: ${#libs[@]}; packages: $(printf '%s\n' "${!needed_pkgs[@]}" | sort | tr '\n' ' ')"
[ ${#failures[@]} -eq 0 ] || fail "${#failures[@]} disagreement(s) between deploy/Dockerfile and the binaries"

# ---------------------------------------------------------------------------------------------
# How to chroot here: as root, or as root of a user namespace (then everything runs as that
# root, as the user cannot be switched to $uid).
if [ "$(id -u)" -eq 0 ] && chroot / true 2>/dev/null; then
  enter=(chroot); as_user=(--userspec="$uid:$uid"); mode="root, cairnd as uid $uid"
elif command -v unshare >/dev/null && unshare --map-root-user chroot / true 2>/dev/null; then
  enter=(unshare --map-root-user chroot); as_user=(); mode="user namespace, as its root"
else
  skip "cannot chroot: not root (uid $(id -u)) and 'unshare --map-root-user chroot' is not permitted here (no user namespaces?)"
fi

tree=$(mktemp -d "${TMPDIR:-/tmp}/cairn-image.XXXXXX")
pid=""  # cairnd's `timeout` wrapper: it passes a SIGTERM on, and SIGKILLs cairnd 20 s later
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local end=$((SECONDS + 25))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tree"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
chmod 0755 "$tree"  # the user must be able to walk from the chroot's /

# The host's usrmerge links (/lib -> usr/lib, ...), as debian:bookworm-slim has them.
for d in bin sbin lib lib32 lib64 libx32; do
  [ -L "/$d" ] || continue
  target=$(readlink "/$d")
  ln -s "$target" "$tree/$d"
  case "$target" in /*) mkdir -p "$tree$target" ;; *) mkdir -p "$tree/$target" ;; esac
done
mkdir -p "$tree/usr/local/bin" "$tree/etc" "$tree/$data_dir"
mkdir -m 1777 "$tree/tmp"
for b in "${binaries[@]}"; do
  # The build stage strips debug info; so does this, when binutils is here.
  if command -v strip >/dev/null; then
    strip --strip-debug -o "$tree/usr/local/bin/$b" "$bin/$b"
  else
    cp "$bin/$b" "$tree/usr/local/bin/$b"
  fi
  chmod 0755 "$tree/usr/local/bin/$b"
done
for l in "${!libs[@]}"; do
  mkdir -p "$tree$(dirname "$l")"
  cp -L "$l" "$tree$l"
done
# What glibc reads for users and loopback names (the image has Debian's own, plus the runtime's
# /etc/hosts).
cat >"$tree/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
cairn:x:$uid:$uid::$data_dir:/usr/sbin/nologin
EOF
printf 'root:x:0:\ncairn:x:%s:\n' "$uid" >"$tree/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tip6-localhost ip6-loopback\n' >"$tree/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$tree/etc/nsswitch.conf"
if [ ${#as_user[@]} -gt 0 ]; then
  chown "$uid:$uid" "$tree/$data_dir"
  chmod 0750 "$tree/$data_dir"
fi
echo "tree: $tree ($(du -sh "$tree" | cut -f1)), running as $mode"

# --help from each binary: each one loads from the tree alone.
for b in "${binaries[@]}"; do
  out=$(timeout 20 "${enter[@]}" "${as_user[@]}" "$tree" "/usr/local/bin/$b" --help 2>&1) ||
    fail "$b --help failed inside the tree (exit $?): $out"
done
help=$(timeout 20 "${enter[@]}" "${as_user[@]}" "$tree" /usr/local/bin/cairnd --help 2>&1) ||
  fail "cairnd --help failed inside the tree: $help"
grep -q -- "--data-path" <<<"$help" || fail "cairnd --help does not list --data-path: $help"

# cairnd with the Dockerfile's CMD, its addresses moved to loopback; TCP by name, so localhost
# is resolved inside the tree.
args=()
for a in "${cmd_args[@]}"; do
  case "$a" in
    --tcp-address=*) args+=(--tcp-address=localhost:0) ;;
    --http-address=*) args+=(--http-address=127.0.0.1:0) ;;
    *) args+=("$a") ;;
  esac
done
log="$tree.log"
trap 'cleanup; rm -f "$log"' EXIT
# Under `timeout`, so that even a test killed without its traps leaves no cairnd for long.
timeout -k 20 240 "${enter[@]}" "${as_user[@]}" "$tree" /usr/local/bin/cairnd "${args[@]}" >"$log" 2>&1 &
pid=$!
deadline=$((SECONDS + 30))
until grep -q "cairnd ready" "$log"; do
  kill -0 "$pid" 2>/dev/null || { wait "$pid" && rc=0 || rc=$?; fail "cairnd exited ($rc) inside the tree: $(cat "$log")"; }
  [ $SECONDS -lt $deadline ] || fail "cairnd not ready within 30 s inside the tree: $(cat "$log")"
  sleep 0.1
done
tcp=$(sed -nE 's/.*TCP: listening on ([^ ]+:[0-9]+)$/\1/p' "$log" | head -n 1)
http=$(sed -nE 's/.*HTTP: listening on ([^ ]+:[0-9]+)$/\1/p' "$log" | head -n 1)
[[ "$tcp" == 127.0.0.1:* ]] || fail "localhost did not resolve to 127.0.0.1 inside the tree (TCP on '$tcp'): $(cat "$log")"
[[ "$http" == 127.0.0.1:* ]] || fail "no HTTP address in cairnd's log: $(cat "$log")"

# Publish from outside over HTTP (bash's /dev/tcp: no curl needed; the network is shared).
topic=image_test
body="hello from the image tree $$"
exec {fd}<>"/dev/tcp/127.0.0.1/${http##*:}" || fail "cannot connect to cairnd's HTTP on $http"
printf 'POST /pub?topic=%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
  "$topic" "$http" "${#body}" "$body" >&"$fd"
reply=$(timeout 10 cat <&"$fd" || true)
exec {fd}>&-
grep -q '^HTTP/1.1 200' <<<"$reply" && grep -q 'OK$' <<<"$reply" ||
  fail "POST /pub was not answered 200 OK: $reply"

# Consume it from inside, with cairn-bench: a backlog of one message on the topic's first channel.
out=$(timeout 60 "${enter[@]}" "${as_user[@]}" "$tree" /usr/local/bin/cairn-bench \
  --nsqd-tcp-address="$tcp" --topic="$topic" --publishers=0 --channels=1 --consumers=1 --rdy=1 \
  --expect=1 --drain-seconds=20 2>&1) || fail "cairn-bench failed inside the tree (exit $?): $out"
grep -Eq '"delivered":1[,}]' <<<"$out" && grep -q '"delivered_all":true' <<<"$out" ||
  fail "cairn-bench did not receive the published message: $out"

# And publish from inside, as deploy/IMAGE.md runs it: its bodies are sample log records made
# in-process (the tree has no Python and no shell), which a channel of its own receives.
out=$(timeout 60 "${enter[@]}" "${as_user[@]}" "$tree" /usr/local/bin/cairn-bench \
  --nsqd-tcp-address="$tcp" --topic="${topic}_bench" --publishers=1 --batch=10 --messages=100 \
  --size=300 --channels=1 --consumers=1 --drain-seconds=20 2>&1) ||
  fail "cairn-bench failed to publish inside the tree (exit $?): $out"
grep -Eq '"published":100[,}]' <<<"$out" && grep -Eq '"delivered":100[,}]' <<<"$out" &&
  grep -q '"errors":\[\]' <<<"$out" ||
  fail "cairn-bench did not publish and receive 100 messages inside the tree: $out"

# SIGTERM ends cairnd cleanly (exit 0), within its 8 s drain bound and some. (timeout passes the
# signal to cairnd and exits with cairnd's status.)
kill -TERM "$pid"
deadline=$((SECONDS + 15))
while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "cairnd still running 15 s after SIGTERM: $(cat "$log")"
wait "$pid" && rc=0 || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "cairnd exited $rc on SIGTERM: $(cat "$log")"
[ -f "$tree/$data_dir/CURRENT" ] || fail "cairnd wrote no store in $data_dir inside the tree"
if [ ${#as_user[@]} -gt 0 ]; then
  owner=$(stat -c %u "$tree/$data_dir/CURRENT")
  [ "$owner" = "$uid" ] || fail "the store was written by uid $owner, not $uid"
fi
echo "deploy image: ${#binaries[@]} binaries ran from a tree of ${#libs[@]} libraries; publish over HTTP, consume" \
  "with cairn-bench, publish and consume with cairn-bench, SIGTERM exit 0: passed"
