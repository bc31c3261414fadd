#!/usr/bin/env bash
# `make bench`: run every benchmark script present, each with short defaults,
# one after another (they would disturb each other's figures if run together).
# Every run is bounded in time and sends traffic to 127.0.0.1 only.
# Longer runs: python -m bench.sidecar_bench --duration 5 --rounds 5; python -m bench.soak --minutes 10
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# name and arguments of each script, run as `python -m bench.<name>` from the repository root
scripts=(
  "sidecar_bench --duration 3 --rounds 3"
  "soak --minutes 1 --interval 5"
  "rss_bench --duration 5"
  "dashboard_bench --pods 500,2000 --duration 8 --warmup 3"
  "page_bench --duration 30"
  "sampler_bench --samples 200"
  "buffer_bench"
  "h2_bench --seconds 3 --rounds 2"
  "alerts_bench --pods 500 --measure 10"
)

failed=()
for entry in "${scripts[@]}"; do
  name=${entry%% *}
  [ -f "bench/$name.py" ] || continue
  read -r -a args <<<"${entry#"$name"}"
  echo "=== bench/$name.py ${args[*]}"
  if ! "$PY" -m "bench.$name" "${args[@]}"; then
    failed+=("$name")
  fi
  echo
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
