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

scheduler="" dashboard=""
stop() {
  trap - INT TERM EXIT
  kill -TERM $dashboard $scheduler 2>/dev/null || true
  wait $dashboard $scheduler 2>/dev/null || true
  echo "Scheduler and dashboard stopped."
}
trap stop INT TERM EXIT

# The scheduler first: on a history that another demo (or scheduler) already runs, it says so and exits.
lock=$($py -c 'from pipeline.config import load_settings; print(load_settings().lock_path)')
$py -m pipeline scheduler &
scheduler=$!
until [ "$(cut -d' ' -f1 "$lock" 2>/dev/null)" = "$scheduler" ]; do  # until it holds the history's lock
  if ! kill -0 "$scheduler" 2>/dev/null; then
    code=0; wait "$scheduler" || code=$?
    scheduler=""
    echo "The scheduler did not start (above: why); the demo stops." >&2
    exit $(( code ? code : 1 ))
  fi
  sleep 0.2
done

if ! $py -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
  echo "Port $port is busy: another program (a dashboard?) listens on it. Choose a free port with" \
       "FHV_DASHBOARD_PORT, e.g. FHV_DASHBOARD_PORT=8502 ./demo.sh" >&2
  exit 1
fi
$py dashboard/serve.py --server.port "$port" &  # 127.0.0.1 only, from any folder
dashboard=$!
echo "Dashboard: http://127.0.0.1:$port  (history: $FHV_HOME/history.db, data: $FHV_DATA_URL). Ctrl-C stops both."
code=0
wait -n "$scheduler" "$dashboard" || code=$?  # one of them ended: stop the other too, and say how it ended
exit "$code"
