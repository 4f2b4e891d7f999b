#!/usr/bin/env bash
# Compatibility suite: drives cairnd with nsqjs, a third-party NSQ client from the npm registry.
#   bash tests/compat/run.sh [path/to/cairnd]      (or set CAIRND)
# Installs the locked nsqjs into tests/compat/node_modules when it is missing or older than
# package-lock.json, then runs every *.test.js here with node's built-in test runner, one file
# at a time (each file starts its own cairnd on a free port, in a temp dir).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cairnd="${1:-${CAIRND:-}}"
if [ -z "$cairnd" ]; then
  echo "compat: usage: $0 <path-to-cairnd> (or set CAIRND)" >&2
  exit 1
fi
if [ ! -x "$cairnd" ]; then
  echo "compat: cairnd is not an executable file: $cairnd" >&2
  exit 1
fi
cairnd="$(cd "$(dirname "$cairnd")" && pwd)/$(basename "$cairnd")"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "compat: '$tool' is not installed; the nsqjs suite needs Node.js >= 20 and npm" \
      "(Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "compat: node $(node --version) is too old; the suite needs Node.js >= 20" >&2
  exit 1
fi

cd "$here"
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "compat: installing nsqjs (npm ci)"
  npm ci --no-audit --no-fund
fi

export CAIRND="$cairnd"
exec node --test --test-reporter=spec --test-concurrency=1 --test-timeout=60000 \
  --test-force-exit ./*.test.js
