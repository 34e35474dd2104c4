#!/usr/bin/env bash
# deps.sh: install the Debian packages ofs needs to build, test and demo.
# Installs only what is missing; as a non-root user it names the packages and
# stops, since apt-get needs root.
set -euo pipefail

PACKAGES=(
  build-essential
  postgresql-15
  postgresql-client-15
  postgresql-server-dev-15
  postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl
  libwebsockets-dev
  libjansson-dev
  libsqlite3-dev
  libuv1-dev
  sqlite3
  jq
  clang-14
  libclang-rt-14-dev
  curl
  # the monitoring tests: a real Prometheus scrapes /metrics, a real browser opens /status
  prometheus
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# The end-to-end tests, the soak and the bench drive the sync worker with
# node and the npm package ws (test/toolkit/package-lock.json).  Without npm
# only they fail; nothing else.
toolkit="$(dirname "$0")/../test/toolkit"
if [ ! -d "$toolkit/node_modules" ]; then
  if command -v npm >/dev/null; then
    echo "ofs: installing the test toolkit (npm ci in test/toolkit)"
    npm ci --prefix "$toolkit" --no-audit --no-fund >/dev/null
  else
    echo "ofs: npm is missing: the end-to-end tests need node 20 and npm" >&2
  fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ofs: missing Debian packages: ${missing[*]}" >&2
  echo "ofs: install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "ofs: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
