#!/usr/bin/env bash
# Runs the committed full tables (two chains in parallel on a 2-core machine) and copies each
# run's small outputs to experiments/results/<name>/. Usage: bash experiments/run_tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MR=${MR:-.venv/bin/metarobot}
publish() {  # config name → results folder (no checkpoints except the meta-policies)
  local name=$1 out=runs/$1 dst=experiments/results/$1
  mkdir -p "$dst"
  cp "$out"/{results.csv,summary.md,adaptation_curve.png,learning_curve.png,config.toml,timings.csv} "$dst"/
}
chain() {
  for name in "$@"; do
    /usr/bin/time -v "$MR" run "experiments/configs/$name.toml" --quiet > "runs/$name.log" 2> "runs/$name.time" || { echo "$name failed"; continue; }
    publish "$name"
  done
}
mkdir -p runs
chain half_cheetah_rand_params &
chain quickstart inverted_pendulum_rand_params hopper_rand_params &
wait
