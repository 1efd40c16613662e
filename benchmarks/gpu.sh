#!/usr/bin/env bash
# Benchmarks 1-3 (penalty, training_step, learned_update) on CUDA, each under its own time
# limit (7.5 minutes in all, at most), writing benchmarks/results/*_cuda.json. A benchmark that
# fails or runs out of time is reported and the others still run; the exit status is then 1.
#   bash benchmarks/gpu.sh            # from anywhere; uses .venv/bin/python when present
#   PYTHON=python3 bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
OUT=benchmarks/results
mkdir -p "$OUT"

"$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu.sh: CUDA is not available to this torch build / machine")
print("cuda:", torch.cuda.get_device_name(0), "torch", torch.__version__)
EOF

failed=()
run() {  # run NAME LIMIT_SECONDS [extra args...]
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local start=$SECONDS
    if timeout "$limit" "$PYTHON" "benchmarks/$name.py" --device cuda --threads 1 \
        --out "$OUT/${name}_cuda.json" "$@"; then
        echo "== $name done in $((SECONDS - start))s"
    else
        echo "== $name FAILED (exit $?) after $((SECONDS - start))s"
        failed+=("$name")
    fi
}

run penalty 150
run training_step 120
run learned_update 180
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "wrote $OUT/penalty_cuda.json $OUT/training_step_cuda.json $OUT/learned_update_cuda.json"
