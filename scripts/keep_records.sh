#!/usr/bin/env bash
# Keeps the records behind a committed table: copies each finished run of the given sweep or
# run directories into results/records/<name>/<run id>/ (config.yaml, overrides.yaml,
# env.json, summary.json; no checkpoints), so that
#   blocklab table results/records/<name> --rows ... --metric ...
# rebuilds the table from the repository alone, and a table that takes more than one session
# (results/ runs and sweeps are not committed) grows run by run.
#   scripts/keep_records.sh <name> <sweep or run directory>...
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: scripts/keep_records.sh <table name> <sweep or run directory>..." >&2
  exit 2
fi
name="$1"
shift
dest="results/records/$name"

keep_run() {  # $1: a run directory; copies it when it has finished (has summary.json)
  local run="$1" id
  [[ -f "$run/summary.json" ]] || return 0
  id="$(basename "$run")"
  mkdir -p "$dest/$id"
  for f in config.yaml overrides.yaml env.json summary.json; do
    if [[ -f "$run/$f" ]]; then cp "$run/$f" "$dest/$id/$f"; fi  # (a bare && would end set -e at a missing file)
  done
  echo "kept $run -> $dest/$id"
}

for path in "$@"; do
  if [[ -f "$path/manifest.jsonl" ]]; then  # a sweep directory: its runs/<experiment>/<id>/
    for run in "$path"/runs/*/*/; do
      [[ -d "$run" ]] && keep_run "${run%/}"
    done
  elif [[ -f "$path/config.yaml" ]]; then
    keep_run "$path"
  else
    echo "keep_records: $path is neither a sweep directory (manifest.jsonl) nor a run" \
      "directory (config.yaml); give results/sweeps/<id> or results/runs/<experiment>/<id>" >&2
    exit 2
  fi
done
