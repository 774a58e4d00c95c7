#!/usr/bin/env bash
# The product on synthetic demo data: a few months already in the history, the scheduler and
# the dashboard running. Ctrl-C stops both cleanly.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure-venv.sh
export FHV_HOME="${FHV_HOME:-$PWD/.fhv}"
export FHV_DATA_URL="${FHV_DATA_URL:-demo}"
py=.venv/bin/python
port="${FHV_DASHBOARD_PORT:-8501}"

if [ "$($py -m pipeline runs ls --json --limit 1)" = "[]" ]; then
  echo "First start: training on three months of synthetic demo data ..."
  for day in 2021-06-15 2021-07-15 2021-08-15; do
    $py -m pipeline run --date "$day" >/dev/null || true
  done
  echo "Backfilling January to May 2021 through the scheduler ..."
  $py -m pipeline backfill --start 2021-01-15 --end 2021-05-15
fi
$py -m pipeline runs ls --limit 10

$py -m pipeline scheduler &
scheduler=$!
$py dashboard/serve.py --server.port "$port" &  # 127.0.0.1 only, from any folder
dashboard=$!
stop() {
  trap - INT TERM EXIT
  kill -TERM "$dashboard" "$scheduler" 2>/dev/null || true
  wait "$dashboard" "$scheduler" 2>/dev/null || true
  echo "Scheduler and dashboard stopped."
}
trap stop INT TERM EXIT
echo "Dashboard: http://127.0.0.1:$port  (history: $FHV_HOME/history.db, data: $FHV_DATA_URL). Ctrl-C stops both."
wait -n "$scheduler" "$dashboard" || true  # one of them ended: stop the other too
