#!/usr/bin/env bash
# The GPU check: edgeseq's torch-compile engine on a CUDA machine, against transformers' own compiled
# static-cache generate in the same run, and the paper suite on the GPU. From the repo root:
#   bash benchmarks/gpu_check.sh            # log, JSON and summary under $OUT (default ./gpu-check-out)
# then copy $OUT/summary.json, $OUT/gpu_check.log and $OUT/paper-gpu/ into benchmarks/results/gpu/.
#
# It installs nothing: the machine's torch (a CUDA build), Triton and transformers, edgeseq run from this
# checkout (PYTHONPATH). Wheels in benchmarks/gpu_wheels/ (if any) are put first on PYTHONPATH.
# Artifacts are source-only (edgeseq/export/source_only.py): both PyTorch engines rebuild the model from
# the recorded source, so no converter runs here. Steps, each under its own time limit (about 9 minutes
# in all on one H100 host; a step that runs out is reported and the next one runs):
#   1. machine facts and `edgeseq devices`;
#   2. the CUDA tests of the torch engines (tests/test_compiled_engine.py, tests/test_torch_engine.py
#      -k cuda: greedy tokens, logits and beams against the eager reference, CUDA graphs replayed);
#   3. MODELS (SmolLM2-135M and t5-small, random weights) at batch 1, INPUT_LEN prompt / OUTPUT_LEN new
#      tokens: `edgeseq profile --engine torch-compile --device gpu` in bf16 (PRECISIONS), and
#      transformers' generate with its static cache (which it compiles itself on CUDA) in the same
#      precision, each model in its own process (benchmarks/vs_transformers.py --worker hf);
#   4. `edgeseq compare --suite paper --device gpu` (the suite's per_device gpu entry: torch-compile,
#      bf16, inputs 512..8192, Figure 1a of the paper);
#   5. benchmarks/gpu_summary.py: one table, the issue's goals (SmolLM2 >= 1500 and t5-small >= 2000
#      decode tok/s, both ahead of transformers), into $OUT/summary.json.
# Knobs (environment): MODELS ("smollm2-135m t5-small"), INPUT_LEN (128), OUTPUT_LEN (64), REPS (5),
#   WARMUP (2), PRECISIONS ("bf16"), PAPER (1; 0 skips step 4), PAPER_LENS (the suite's), TESTS (1),
#   PYTHON (python3), GPU_DEVICE (gpu; cpu dry-runs the script on a host without CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeseq-gpu-check.XXXXXX")  # artifacts and wheels: not sent back with $OUT
PY=${PYTHON:-python3}
MODELS=${MODELS:-"smollm2-135m t5-small"}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
REPS=${REPS:-5}
WARMUP=${WARMUP:-2}
PRECISIONS=${PRECISIONS:-"bf16"}
GPU_DEVICE=${GPU_DEVICE:-gpu}
HF_DEVICE=$([ "$GPU_DEVICE" = cpu ] && echo cpu || echo cuda)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
FAILED=()
step() { echo; echo "=== $* ($(date +%T))"; }
fail() { echo "FAILED: $*"; FAILED+=("$*"); }

step "wheels"
if compgen -G "benchmarks/gpu_wheels/*.whl" >/dev/null; then
    "$PY" -m pip install --no-index --no-deps --quiet --target "$WORK/site" benchmarks/gpu_wheels/*.whl \
        && export PYTHONPATH="$WORK/site:$PYTHONPATH" && ls benchmarks/gpu_wheels \
        || fail "pip install of benchmarks/gpu_wheels"
else
    echo "no benchmarks/gpu_wheels/*.whl: using the machine's packages"
fi

step "machine"
nvidia-smi || echo "nvidia-smi not found"
"$PY" - <<'EOF' || fail "versions (is torch importable?)"
import importlib.metadata as md
import platform
import sys

print("python", sys.version.split()[0], platform.platform())
for p in ("torch", "triton", "transformers", "tokenizers", "numpy", "onnx", "onnxscript", "onnxruntime", "pytest"):
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        print(f"  {p} -")
import torch

print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"  cuda:0 {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}")
EOF
"$PY" -m edgeseq devices || fail "edgeseq devices"

if [ "${TESTS:-1}" = 1 ] && "$PY" -c "import pytest, onnx, onnxscript, onnxruntime" 2>/dev/null; then
    step "pytest: the torch engines on CUDA (tiny models; the ONNX exports the fixtures make run on the CPU)"
    timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_compiled_engine.py tests/test_torch_engine.py \
        -k "cuda" || fail "pytest -k cuda"
else
    step "pytest step skipped (TESTS=0, or pytest / onnx / onnxscript / onnxruntime missing)"
fi

step "artifacts (source-only: the manifest and tokenizer; the PyTorch engines rebuild the model)"
ARTS=()
for m in $MODELS; do
    art="$WORK/art/$m"
    "$PY" -c "import sys; from pathlib import Path; from edgeseq.export import source_only; \
source_only.write(sys.argv[1], Path(sys.argv[2]), 'torch-compile')" "preset:$m" "$art" \
        && ARTS+=("$art") || fail "artifact preset:$m"
done

step "edgeseq torch-compile vs transformers' static cache: in $INPUT_LEN / out $OUTPUT_LEN, batch 1"
for p in $PRECISIONS; do
    timeout 150 "$PY" -m edgeseq profile "${ARTS[@]}" --engine torch-compile --device "$GPU_DEVICE" \
        --precision "$p" --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --reps "$REPS" --warmup "$WARMUP" \
        --no-bandwidth --json "$OUT/torch-compile-$p.json" || fail "profile torch-compile $p"
    for art in "${ARTS[@]}"; do
        m=$(basename "$art")
        timeout 75 "$PY" benchmarks/vs_transformers.py --worker hf --source "preset:$m" --artifact "$art" \
            --device "$HF_DEVICE" --precision "$p" --static --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" \
            --reps "$REPS" --warmup "$WARMUP" --threads "$(nproc)" > "$OUT/transformers-$m-$p.json" \
            || fail "transformers static cache $m $p"
        tail -c 400 "$OUT/transformers-$m-$p.json"; echo
    done
done

if [ "${PAPER:-1}" = 1 ]; then
    step "edgeseq compare --suite paper --device $GPU_DEVICE"
    lens=()
    [ -n "${PAPER_LENS:-}" ] && lens=(--input-lens "$PAPER_LENS")
    timeout 210 "$PY" -m edgeseq compare --suite paper --device "$GPU_DEVICE" --out "$OUT/paper-gpu" \
        --no-bandwidth --no-plots --reps 3 "${lens[@]}" || fail "compare --suite paper --device $GPU_DEVICE"
fi

step "summary"
"$PY" benchmarks/gpu_summary.py "$OUT" || fail "summary"

rm -rf "$WORK"
step "done"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all steps passed; results in $OUT"
