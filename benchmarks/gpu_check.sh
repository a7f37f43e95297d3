#!/usr/bin/env bash
# GPU check of the torch engine (edgeseq/reference/torch_runner.py) on a CUDA machine, from the repo root:
#   bash benchmarks/gpu_check.sh            # results, JSON and the log under $OUT (default ./gpu-check-out)
#
# What it does (about 2-4 minutes on one H100 host):
#   1. installs the wheels in benchmarks/gpu_wheels/ (if any) with --no-index --no-deps into a private
#      directory put first on PYTHONPATH (no network, no change to the system's site-packages);
#   2. prints nvidia-smi, Python / torch / CUDA / package versions and `edgeseq devices`;
#   3. makes artifacts of preset:t5-small and preset:smollm2-135m (random weights). The torch engine reads
#      only an artifact's manifest and tokenizer, so by default they are manifest-only (no graphs: no
#      onnx / onnxscript needed here); GPU_CHECK_EXPORT=1 runs the real ONNX export when onnx and
#      onnxscript import (slower; --parity-steps 0, as onnxruntime may be absent);
#   4. checks the CUDA run against the CPU run of the same step modules: 16 teacher-forced steps,
#      max |logits diff| and greedy-token agreement;
#   5. profiles both with --engine torch on gpu (f32, then bf16 autocast) and on cpu (f32, all cores) in
#      this same run, and prints the GPU / CPU ratios; with pytest and onnxscript present it also runs the
#      CUDA tests of tests/test_torch_engine.py (ONNX Runtime CPU tokens vs torch on CUDA).
#
# Python modules it needs on the device:
#   always: torch (a CUDA build), transformers>=5 (edgeseq's export extra: it builds the presets) with what
#     transformers itself requires (huggingface_hub, safetensors, tokenizers, numpy, pyyaml, regex,
#     packaging, tqdm, typer), and edgeseq's own runtime imports: numpy, tokenizers, tqdm (CLI progress
#     bars). edgeseq is run from this checkout (PYTHONPATH), not installed.
#   not needed: onnxruntime (only its rows of `edgeseq devices`), jinja2 (chat templates), pyyaml and
#     matplotlib (`edgeseq compare`), gguf (.gguf sources), accelerate, openvino, ai-edge-litert.
#   only for GPU_CHECK_EXPORT=1: onnx, onnxscript (+ onnx_ir, ml_dtypes, typing_extensions);
#   only for the pytest step: pytest, onnx, onnxscript, onnxruntime (skipped when any is missing).
# Knobs (environment): MODELS ("t5-small smollm2-135m"), INPUT_LEN (128), OUTPUT_LEN (64), REPS (5),
#   WARMUP (1), GPU_PRECISIONS ("f32 bf16"), CPU_THREADS (nproc), GPU_CHECK_EXPORT (0), PYTHON (python3),
#   GPU_DEVICE (gpu; cpu dry-runs the script on a host without CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeseq-gpu-check.XXXXXX")  # artifacts and wheels: not sent back with $OUT
PY=${PYTHON:-python3}
MODELS=${MODELS:-"t5-small smollm2-135m"}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
REPS=${REPS:-5}
WARMUP=${WARMUP:-1}
GPU_PRECISIONS=${GPU_PRECISIONS:-"f32 bf16"}
CPU_THREADS=${CPU_THREADS:-$(nproc)}
GPU_DEVICE=${GPU_DEVICE:-gpu}  # GPU_DEVICE=cpu dry-runs every step on a host without CUDA
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
"$PY" - <<'EOF'
import importlib.metadata as md
import platform
import sys

print("python", sys.version.split()[0], platform.platform())
for p in ("torch", "transformers", "tokenizers", "huggingface_hub", "numpy", "tqdm", "safetensors", "pyyaml",
          "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "pytest"):
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        print(f"  {p} -")
import torch

print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"  cuda:0 {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}, "
          f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}")
EOF
[ $? -eq 0 ] || fail "versions (is torch importable?)"

step "edgeseq devices"
"$PY" -m edgeseq devices || fail "edgeseq devices"

# A manifest-only artifact: the manifest and tokenizer an export writes, without graphs (the torch
# engine rebuilds the model from the recorded source and seed, and reads nothing else).
manifest_only() {
    "$PY" - "$1" "$2" <<'EOF'
import sys
from pathlib import Path

from edgeseq import manifest as mf
from edgeseq.export.pipeline import _model_info
from edgeseq.steps import components
from edgeseq.models import resolve

source, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True)
spec = resolve(source, seed=0)
infos = {}
for c in components(spec):
    names = lambda ns: [{"name": n, "dtype": "", "shape": []} for n in ns]
    infos[c.name] = mf.ComponentInfo(file="", inputs=names(c.inputs), outputs=names(c.outputs),
                                     cache_inputs=list(c.cache_inputs), cache_outputs=list(c.cache_outputs),
                                     weight_bytes=sum(p.numel() * p.element_size() for p in c.module.parameters()))
(out / mf.TOKENIZER).write_text(spec.tokenizer_json)
model = _model_info(spec, 0)
model["notes"] = [*model["notes"], "manifest-only artifact (benchmarks/gpu_check.sh): no graphs, for --engine torch"]
step = infos["decoder" if spec.kind == "decoder-only" else "decoder_step"]
emb, head = spec.model.get_input_embeddings(), spec.model.get_output_embeddings()
tied = head is not None and emb.weight.data_ptr() == head.weight.data_ptr()
model["bytes_read_per_token"] = step.weight_bytes - (0 if tied else emb.weight.numel() * 4)
m = mf.Manifest(format="onnx", engine="torch", kind=spec.kind, model=model, dims=spec.dims.as_dict(),
                components=infos, generation=spec.generation.as_dict(),
                parity={"status": "skipped", "reason": "manifest-only artifact: no graphs to check"},
                files={mf.TOKENIZER: mf.file_record(out / mf.TOKENIZER)})
m.write(out)
print(f"wrote {out} (manifest only; {spec.num_params / 1e6:.1f}M parameters, {spec.kind})")
EOF
}

step "artifacts"
ARTS=()
for m in $MODELS; do
    art="$WORK/art/$m"
    if [ "${GPU_CHECK_EXPORT:-0}" = 1 ] && "$PY" -c "import onnx, onnxscript" 2>/dev/null; then
        timeout 300 "$PY" -m edgeseq export "preset:$m" --format onnx --out "$art" --parity-steps 0 --quiet \
            || { fail "export preset:$m (falling back to a manifest-only artifact)"; rm -rf "$art"; }
    elif [ "${GPU_CHECK_EXPORT:-0}" = 1 ]; then
        echo "GPU_CHECK_EXPORT=1 but onnx / onnxscript do not import here: manifest-only artifact instead"
    fi
    [ -f "$art/edgeseq.json" ] || manifest_only "preset:$m" "$art" || { fail "artifact preset:$m"; continue; }
    ARTS+=("$art")
done
[ ${#ARTS[@]} -gt 0 ] || { echo "no artifacts: stopping"; exit 1; }

step "CUDA vs CPU: the same step modules, 16 teacher-forced steps"
"$PY" - "$GPU_DEVICE" "${ARTS[@]}" <<'EOF' || fail "CUDA vs CPU check"
import sys
from pathlib import Path

import numpy as np

import edgeseq
from edgeseq.export.parity import prompt_ids
from edgeseq.profile.auto import forced_logits

bad = 0
for art in map(Path, sys.argv[2:]):
    cpu = edgeseq.load(art, device="cpu", engine="torch")
    gen, m = cpu.manifest.generation, cpu.manifest
    ids = prompt_ids((art / "tokenizer.json").read_text(), m.kind, gen, m.dims["vocab_size"])
    tokens, want = forced_logits(cpu.backend, ids, gen, None, steps=16)
    del cpu
    for precision in ("f32", "bf16"):
        gpu = edgeseq.load(art, device=sys.argv[1], engine="torch", precision=precision)
        _, got = forced_logits(gpu.backend, ids, gen, tokens, steps=16)
        diff = float(np.abs(got - want).max())
        agree = float((got.argmax(-1) == np.array(tokens)).mean())
        scale = float(np.abs(want).max())
        ok = diff <= 1e-3 + 1e-4 * scale if precision == "f32" else agree >= 0.5
        bad += not ok
        print(f"{art.name} {precision}: max |logits diff| {diff:.3g} (largest |logit| {scale:.3g}), "
              f"greedy tokens agree {agree:.0%} -> {'ok' if ok else 'MISMATCH'}; {gpu.backend.placement()}")
        del gpu
sys.exit(1 if bad else 0)
EOF

step "profile: --engine torch, in $INPUT_LEN / out $OUTPUT_LEN, $REPS reps after $WARMUP warm-up"
profile() {  # device precision threads
    echo "--- torch $1 $2"
    timeout 240 "$PY" -m edgeseq profile "${ARTS[@]}" --engine torch --device "$1" --precision "$2" \
        --threads "$3" --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --reps "$REPS" --warmup "$WARMUP" \
        --no-bandwidth --json "$OUT/torch-$1-$2.json" --markdown "$OUT/torch-$1-$2.md" \
        || fail "profile torch $1 $2"
}
for p in $GPU_PRECISIONS; do profile "$GPU_DEVICE" "$p" "$CPU_THREADS"; done
profile cpu f32 "$CPU_THREADS"

step "GPU / CPU (same machine, same run)"
"$PY" - "$OUT" <<'EOF' || fail "summary"
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {f.stem.removeprefix("torch-"): json.loads(f.read_text())["results"] for f in sorted(out.glob("torch-*.json"))}
cpu = {r["model"]: r for r in runs.get("cpu-f32", [])}
print(f"{'model':<14} {'run':<9} {'TTFT ms':>9} {'TPOT ms':>9} {'tok/s':>8} {'e2e ms':>8} {'peak GPU MiB':>12}  "
      "vs cpu f32 (e2e speed-up)")
for name, results in runs.items():
    for r in results:
        base = cpu.get(r["model"])
        ratio = f"{base['e2e_ms'] / r['e2e_ms']:.1f}x" if base and r["e2e_ms"] else "-"
        mem = r["placement"].get("peak_device_memory_mb", "-")
        print(f"{r['model']:<14} {name:<9} {r['ttft_ms']:>9.1f} {r['tpot_ms']:>9.2f} {r['decode_tok_s']:>8.1f} "
              f"{r['e2e_ms']:>8.0f} {mem:>12}  {ratio}")
json.dump({k: [{x: r[x] for x in ("model", "device", "precision", "ttft_ms", "tpot_ms", "decode_tok_s", "e2e_ms",
                                  "placement", "input_len", "output_len", "threads")} for r in v]
           for k, v in runs.items()}, open(out / "summary.json", "w"), indent=1)
EOF

if "$PY" -c "import pytest, onnx, onnxscript, onnxruntime" 2>/dev/null; then
    step "pytest: CUDA tests of the torch engine (tiny models, ONNX Runtime CPU as the reference)"
    timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_torch_engine.py -k "cuda or devices_table" \
        || fail "pytest tests/test_torch_engine.py -k cuda"
else
    step "pytest step skipped: needs pytest, onnx, onnxscript and onnxruntime"
fi

rm -rf "$WORK"
step "done"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all steps passed; results in $OUT"
