#!/usr/bin/env bash
# CLINC150 (configs/clinc150.yaml) on one GPU in bf16: every stage of `dvc repro` in a scratch
# clone of this commit, each one timed, then the three models' test accuracy.
#
#     bench/gpu_clinc150.sh [SCRATCH_DIR]     # from the project, its venv active (CUDA torch)
#
# Committed code only (it clones HEAD); MLflow runs go to the clone's own mlflow.db unless
# MLFLOW_TRACKING_URI points elsewhere. Stops after BUDGET_S seconds (default 480: 8 minutes).
set -euo pipefail

budget=${BUDGET_S:-480}
project=$(git rev-parse --show-toplevel)
scratch=${1:-$(mktemp -d)}
python - <<'EOF'
import sys, torch
if not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
    sys.exit("This script times the GPU path: it needs a CUDA GPU with bf16 and torch's CUDA build.")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF

git clone -q "$project" "$scratch/clinc150"
cd "$scratch/clinc150"
cp configs/clinc150.yaml params.yaml
mkdir -p logs
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}

# dvc.yaml's order; each stage alone (--single-item) so that its own time is measured, and
# forced, because the committed dvc.lock records the default params' run, not this one.
stages=(check prepare teacher soft_targets baseline distill export@teacher export@student
        evaluate card)
start=$(date +%s.%N)
for stage in "${stages[@]}"; do
  left=$(python -c "import time; print(max(1, int($budget - (time.time() - $start))))")
  t0=$(date +%s.%N)
  if ! timeout "$left" dvc repro --force --single-item "$stage" > "logs/$stage.log" 2>&1; then
    tail -n 40 "logs/$stage.log"
    echo "stage $stage failed or ran past the ${budget} s budget (log: $PWD/logs/$stage.log)" >&2
    exit 1
  fi
  python -c "import time; print(f'{\"$stage\":<16} {time.time() - $t0:7.1f} s')"
done
python - "$start" <<'EOF'
import json, sys, time
print(f"{'total':<16} {time.time() - float(sys.argv[1]):7.1f} s")
summary = json.load(open("reports/summary.json"))
numerics = json.load(open("reports/metrics.json")).get("numerics")
for role, name in (("teacher", "teacher"), ("baseline", "baseline student"),
                   ("student", "distilled student")):
    print(f"test accuracy, {name:<18} {summary[role]['accuracy']:.4f}")
print(f"numerics: {numerics}")
EOF
