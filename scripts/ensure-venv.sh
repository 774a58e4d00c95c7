#!/usr/bin/env bash
# Creates .venv and installs the requirements when they changed. Sourced by demo.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
want="$(cat "$root/requirements.txt" "$root/requirements-dev.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating the virtual environment in $venv ..."
  python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements (once) ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements-dev.txt"
  echo "$want" > "$venv/.requirements-hash"
fi
# The project's folder on the environment's path, so that `.venv/bin/python -m pipeline.prefect2 FILE.py`
# (a Prefect 2 file run as a script) works from any folder.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$(cat "$site/fhv-project.pth" 2>/dev/null)" != "$root" ]; then
  echo "$root" > "$site/fhv-project.pth"
fi
