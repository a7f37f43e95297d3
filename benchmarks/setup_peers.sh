#!/usr/bin/env bash
# Builds the peer tools' venvs for benchmarks/vs_peers.py, vs_openvino.py and vs_litert.py (they pin versions
# that conflict with edgeseq's, so each gets its own). Usage: benchmarks/setup_peers.sh [DIR]
set -euo pipefail
DIR=${1:-/tmp/edgeseq-peers}
mkdir -p "$DIR"
echo "torch==2.13.0" > "$DIR/torch-pin.txt"
# optimum-intel: exports the peers' OpenVINO IR and runs OVModelForSeq2SeqLM
[ -x "$DIR/venv-optintel/bin/python" ] || python3 -m venv "$DIR/venv-optintel"
"$DIR/venv-optintel/bin/pip" install -q torch==2.13.0
"$DIR/venv-optintel/bin/pip" install -q -c "$DIR/torch-pin.txt" "optimum-intel[openvino]==2.2.0" optimum==2.3.0 \
    transformers==5.5.4 nncf==3.4.0 openvino==2026.4.1 openvino-tokenizers==2026.4.1.0 onnx==1.23.2 numpy==2.4.6 tokenizers
# optimum-intel pulls PyPI's torchvision, a CUDA build that breaks the CPU torch ("operator
# torchvision::nms does not exist" -> transformers cannot import PreTrainedModel); nothing here needs it
"$DIR/venv-optintel/bin/pip" uninstall -q -y torchvision
# openvino-genai: LLMPipeline (no torch needed)
[ -x "$DIR/venv-ovgenai/bin/python" ] || python3 -m venv "$DIR/venv-ovgenai"
"$DIR/venv-ovgenai/bin/pip" install -q openvino==2026.4.1 openvino-genai==2026.4.1.0 openvino-tokenizers==2026.4.1.0 \
    numpy==2.4.6 tokenizers==0.23.3
# litert-torch's export_hf (the decoder-only peer of the TFLite path) imports tensorflow, which
# edgeseq's own export does not need: it gets a venv of its own (same versions as ../shared/peers)
[ -x "$DIR/venv-litert/bin/python" ] || python3 -m venv "$DIR/venv-litert"
"$DIR/venv-litert/bin/pip" install -q torch==2.13.0
"$DIR/venv-litert/bin/pip" install -q -c "$DIR/torch-pin.txt" litert-torch==0.10.0 ai-edge-litert==2.3.0 \
    tensorflow-cpu==2.21.0 transformers==5.24.0 tokenizers==0.23.3 numpy==2.4.6
# optimum-onnx: ORTModelForCausalLM / ORTModelForSeq2SeqLM; it pins transformers < 4.58
[ -x "$DIR/venv-optonnx/bin/python" ] || python3 -m venv "$DIR/venv-optonnx"
"$DIR/venv-optonnx/bin/pip" install -q torch==2.13.0
"$DIR/venv-optonnx/bin/pip" install -q -c "$DIR/torch-pin.txt" "optimum-onnx[onnxruntime]==0.1.0" optimum==2.1.0 \
    transformers==4.57.6 onnxruntime==1.31.1 onnx==1.23.2 numpy==2.4.6 tokenizers==0.22.2
# onnxruntime-genai: its model builder (needs torch + transformers) and its Generator loop
[ -x "$DIR/venv-ortgenai/bin/python" ] || python3 -m venv "$DIR/venv-ortgenai"
"$DIR/venv-ortgenai/bin/pip" install -q torch==2.13.0
"$DIR/venv-ortgenai/bin/pip" install -q -c "$DIR/torch-pin.txt" onnxruntime-genai==0.18.0 onnxruntime==1.31.1 \
    transformers==5.24.0 onnx==1.23.2 onnxscript==0.7.2 numpy==2.4.6 tokenizers==0.23.3
# faster-whisper (CTranslate2's Whisper) for benchmarks/whisper_peers.py; it reads the CT2 directory as shipped
[ -x "$DIR/venv-fwhisper/bin/python" ] || python3 -m venv "$DIR/venv-fwhisper"
"$DIR/venv-fwhisper/bin/pip" install -q faster-whisper==1.2.1 ctranslate2==4.8.5 numpy==2.4.6 tokenizers==0.22.2
echo "peer venvs ready in $DIR"
