#!/usr/bin/env bash
# The whole test suite, from nothing: virtual environment, requirements, Debian's Chromium and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure-venv.sh
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's chromium for the browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "The browser tests need /usr/bin/chromium: run 'sudo apt-get install chromium' first." >&2
  fi
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's postgresql for the PostgreSQL tests (they start their own server) ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  else
    echo "The PostgreSQL tests need initdb: run 'sudo apt-get install postgresql' first (they are skipped)." >&2
  fi
fi
if ! command -v ip >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's iproute2 for the multi-host test (network namespaces) ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2) >/dev/null
  else
    echo "The multi-host test needs root and the ip command (iproute2); it is skipped." >&2
  fi
fi
# The browser tests save a screenshot of every page here.
export FHV_SCREENSHOTS="${FHV_SCREENSHOTS:-$PWD/test-artifacts/screenshots}"
# Two workers, one test file each at a time (a browser test file shares its server): about 4 minutes.
exec .venv/bin/python -m pytest -n 2 --dist loadfile tests "$@"
