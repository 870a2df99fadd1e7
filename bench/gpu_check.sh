#!/usr/bin/env bash
# The CUDA path, on a machine with an NVIDIA GPU (nothing here runs it on CPU-only machines):
#
#   bash bench/gpu_check.sh            # after `make setup`; PY=... to use another interpreter,
#                                      # GPU_CHECK_DIR=... for another log folder
#
# Steps, each logged to runs/gpu_check/<step>.log, then one table (status, wall time, result):
#   demo   the main job on the GPU: train configs/faster_rcnn/shapes.yaml with device=cuda,
#          then tools/eval.py on its best checkpoint (AP / AP50)
#   amp    the same config with train.amp=true (fp16 autocast + GradScaler on CUDA), 300 iterations
#   ddp    torchrun with NCCL: 2 processes where the machine has 2 GPUs or more, else 1
#          (--nproc_per_node=1), 200 iterations
#   speed  bench/train_speed.py --device cuda: R50-FPN Faster R-CNN against torchvision, both on
#          the GPU, ratios of training / inference time and peak GPU memory
#   speed_mask  the same for R50-FPN Mask R-CNN at 800 px
# Exit status: 0 when every step passed, 1 otherwise; 2 when torch sees no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${GPU_CHECK_DIR:-runs/gpu_check}
CONFIG=configs/faster_rcnn/shapes.yaml

gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "${gpus:-0}" -lt 1 ]; then
    echo "error: torch sees no CUDA device (torch.cuda.device_count() = ${gpus:-0}); run this on a GPU machine" >&2
    exit 2
fi
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| count', torch.cuda.device_count(),
'| torch', torch.__version__, '| CUDA', torch.version.cuda)" | tee "$OUT/gpu.txt"

rows=()
failed=0

# last_metrics RUN_DIR: "AP 0.xxxx AP50 0.xxxx" from the run's last evaluation in metrics.jsonl
last_metrics() {
    "$PY" - "$1" <<'EOF'
import json, sys
from pathlib import Path
lines = [json.loads(l) for l in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines() if l.strip()]
evals = [r for r in lines if any(k.endswith("AP50") or k.endswith("AP") for k in r)]
last = evals[-1] if evals else {}
print(" ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float) and k.split("/")[-1] in ("AP", "AP50")))
EOF
}

# step NAME RESULT_COMMAND -- COMMAND...: run COMMAND, log it, record status, wall time and result
step() {
    local name=$1 result=$2
    shift 3
    local begin=$SECONDS status result_text=""
    echo "== $name: $*"
    if "$@" > "$OUT/$name.log" 2>&1; then
        status=ok
        result_text=$(eval "$result" 2>/dev/null | tail -1)
    else
        status="FAILED (exit $?, see $OUT/$name.log)"
        failed=1
        tail -5 "$OUT/$name.log"
    fi
    rows+=("$(printf '%-10s | %-44s | %6d s | %s' "$name" "$status" $((SECONDS - begin)) "$result_text")")
}

step demo "$PY -c \"import json; m = json.load(open('$OUT/demo_eval.json')); print(' '.join(f'{k} {m[k]:.4f}' for k in ('AP', 'AP50')))\"" -- bash -c \
    "$PY tools/train.py $CONFIG device=cuda output_dir=$OUT/demo && \
     $PY tools/eval.py $CONFIG --checkpoint $OUT/demo/best.pt device=cuda --out $OUT/demo_eval.json"
step amp "last_metrics $OUT/amp" -- \
    "$PY" tools/train.py $CONFIG device=cuda train.amp=true train.max_iters=300 train.eval_every=300 output_dir=$OUT/amp
nproc=$(( gpus >= 2 ? 2 : 1 ))
step ddp "last_metrics $OUT/ddp" -- \
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=$nproc tools/train.py $CONFIG device=cuda \
    train.max_iters=200 train.eval_every=200 output_dir=$OUT/ddp
step speed "grep 'ratio detseg / torchvision' $OUT/speed.log | head -1 | sed 's/^ *//'" -- \
    env OMP_WAIT_POLICY=PASSIVE "$PY" bench/train_speed.py --device cuda --rows 800,128 --runs 10
step speed_mask "grep 'ratio detseg / torchvision' $OUT/speed_mask.log | head -1 | sed 's/^ *//'" -- \
    env OMP_WAIT_POLICY=PASSIVE "$PY" bench/train_speed.py --device cuda --family mask --rows 800 --runs 10

echo
echo "detseg CUDA check on $(head -1 "$OUT/gpu.txt")"
printf '%-10s | %-44s | %8s | %s\n' step status wall result
for row in "${rows[@]}"; do echo "$row"; done
exit $failed
