"""The peer tools' side of the Whisper benchmark: one tool per process, run from that tool's own venv.

    VENV/bin/python benchmarks/whisper_peers.py TOOL --model DIR --clips CLIPDIR --threads 2 [--rounds N]

prints ONE JSON line {tool, precision, versions, model_mb, rows, peak_rss_mb, notes}; per clip: the text the
tool produced, the reference, audio seconds, wall ms per round (16 kHz samples in -> text out, features
included), and medians over the rounds of ttft_ms, decode_tok_s and encoder_ms. Only the standard library,
numpy and the tool are imported (the peer venvs have no edgeseq).

Protocol: English, greedy (beam 1), no timestamps, no VAD, `--threads` intra-op threads, load, 1 warm-up
transcription, then every clip once per round. Audio longer than 30 s is cut into consecutive 30 s windows
decoded one after the other (our loop for the transformers-generate tools, whose long-form mode needs
timestamps; faster-whisper and openvino-genai window it themselves the same way when timestamps are off).
Every tool gets the same samples: the WAV read with `wave`, resampled to 16 kHz by `resample()` below (a
Hann-windowed sinc), not by a tool's own loader, so the rows differ by the model runtime alone.

  ttft_ms       handing the samples to the tool -> the first text token exists (streamer), null without one
  decode_tok_s  (n - 1) / (t_last - t_first) over the streamed text tokens (EOT and prompt not counted)
  encoder_ms    the encoder alone on the clip's windows, where the tool lets it run alone

Tools: transformers (main venv; --model an HF dir made by --save-hf), faster-whisper-int8 / -fp32
(venv-fwhisper; --model the CTranslate2 dir), openvino-genai / openvino-genai-f32 (venv-ovgenai; --model
`optimum-cli export openvino --model HFDIR --task automatic-speech-recognition-with-past --weight-format fp32
OUT` from venv-optintel), optimum-onnx (venv-optonnx; --model `optimum-cli export onnx --model HFDIR --task
automatic-speech-recognition-with-past OUT`). Helpers, in edgeseq's venv:
  --make-clips DIR   synthesize the spoken test set into DIR and write DIR/clips.json [{wav, text}]
  --save-hf DIR      whisper-tiny-en (edgeseq.models.resolve) as an HF directory with tokenizer and processor
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
import wave
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

RATE = 16000
WINDOW = 30 * RATE
TOOLS = ("transformers", "faster-whisper-int8", "faster-whisper-fp32", "openvino-genai", "openvino-genai-f32",
         "optimum-onnx")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV (8/16/32-bit) as mono float32 in [-1, 1] and its rate."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate, raw = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        kind = {2: np.int16, 4: np.int32}[width]
        x = np.frombuffer(raw, kind).astype(np.float32) / float(np.iinfo(kind).max + 1)
    return x.reshape(-1, channels).mean(axis=1), rate


def resample(x: np.ndarray, orig: int, target: int = RATE, zeros: int = 16, rolloff: float = 0.945) -> np.ndarray:
    """Band-limited resampling: each output sample is a Hann-windowed sinc (cutoff `rolloff` x the lower
    Nyquist, `zeros` crossings each side) over the input, weights normalized to unit DC gain."""
    if orig == target:
        return x.astype(np.float32)
    cutoff = rolloff * min(1.0, target / orig)  # relative to the input's Nyquist
    half = int(math.ceil(zeros / cutoff))
    n = np.arange(int(math.ceil(len(x) * target / orig)), dtype=np.int64)
    base, frac = (n * orig) // target, (n * orig % target) / target  # input position of each output
    xp = np.pad(x.astype(np.float64), (half, half + 1))
    out, norm = np.zeros(len(n)), np.zeros(len(n))
    for j in range(-half + 1, half + 1):
        d = frac - j
        w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / half, -1, 1)))
        out += w * xp[base + j + half]
        norm += w
    return (out / norm).astype(np.float32)


def windows(x: np.ndarray) -> list[np.ndarray]:
    """Consecutive 30 s windows; the last one keeps its true length (the feature extractors pad it)."""
    return [x[i:i + WINDOW] for i in range(0, max(len(x), 1), WINDOW)]


class Clock:
    """Token times of one transcription: `start()` when the samples are handed over, `token()` per text token."""

    def __init__(self) -> None:
        self.t0, self.times = 0.0, []

    def start(self) -> None:
        self.t0, self.times = time.perf_counter(), []

    def token(self) -> None:
        self.times.append(time.perf_counter())


# ---- tools: each returns (transcribe(samples, clock) -> (text, tokens, extra), encoder_ms(samples) | None, info)

def _hf_generate(model: Any, fe: Any, tok: Any, encode: Callable[[Any], Any], torch: Any, threads_note: str) -> tuple:
    """transformers' generate (torch model or optimum-onnx's ORT model) per 30 s window, a streamer timing tokens."""
    eos = int(model.generation_config.eos_token_id)

    class Streamer:  # generate() puts the decoder prompt first, then each new token
        def __init__(self, clock: Clock) -> None:
            self.clock, self.prompt_seen = clock, False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
            elif int(value.reshape(-1)[0]) < eos:
                self.clock.token()

        def end(self) -> None:
            self.prompt_seen = False  # the next window's generate starts with its prompt again

    def features(w: np.ndarray) -> Any:
        return fe(w, sampling_rate=RATE, return_tensors="pt").input_features

    def transcribe(x: np.ndarray, clock: Clock) -> tuple[str, int, dict]:
        clock.start()
        s, ids = Streamer(clock), []
        for w in windows(x):
            with torch.inference_mode():
                out = model.generate(features(w), streamer=s, num_beams=1, do_sample=False, return_timestamps=False)
            ids += [int(i) for i in out[0] if int(i) < eos]
        return tok.decode(ids, skip_special_tokens=True).strip(), len(ids), {}

    def encoder_ms(x: np.ndarray) -> float:
        total = 0.0
        for w in windows(x):
            f = features(w)
            t = time.perf_counter()
            with torch.inference_mode():
                encode(f)
            total += time.perf_counter() - t
        return total * 1e3

    return transcribe, encoder_ms, threads_note


def load_transformers(a: argparse.Namespace) -> tuple:
    import torch
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = WhisperForConditionalGeneration.from_pretrained(a.model, dtype=torch.float32).eval()
    fe, tok = WhisperFeatureExtractor.from_pretrained(a.model), AutoTokenizer.from_pretrained(a.model)
    fns = _hf_generate(model, fe, tok, lambda f: model.model.encoder(f), torch,
                       f"torch threads {a.threads}, interop 1; attn={model.config._attn_implementation}")
    return (*fns, "fp32", ["torch", "transformers"], ["model.safetensors"])


def load_optimum_onnx(a: argparse.Namespace) -> tuple:
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    model = ORTModelForSpeechSeq2Seq.from_pretrained(a.model, session_options=so, provider="CPUExecutionProvider")
    fe, tok = WhisperFeatureExtractor.from_pretrained(a.model), AutoTokenizer.from_pretrained(a.model)
    fns = _hf_generate(model, fe, tok, lambda f: model.encoder(input_features=f, attention_mask=None), torch,
                       f"ORT CPU EP, intra_op {a.threads}, inter_op 1, sequential")
    return (*fns, "fp32", ["optimum-onnx", "optimum", "onnxruntime", "transformers"], ["encoder_model.onnx*", "decoder_model_merged.onnx*"])


class _Timed:
    """Forwards to a ctranslate2.models.Whisper, timing its encode and generate calls (faster-whisper calls
    encode on each window, then generate on the encoder output: the split is the tool's own)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.encode_s, self.generate_s = inner, 0.0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._inner.encode(*args, **kw)
        finally:
            self.encode_s += time.perf_counter() - t

    def generate(self, *args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._inner.generate(*args, **kw)
        finally:
            self.generate_s += time.perf_counter() - t


def load_faster_whisper(a: argparse.Namespace) -> tuple:
    from faster_whisper import WhisperModel

    compute = "int8" if a.tool.endswith("int8") else "float32"
    wm = WhisperModel(a.model, device="cpu", compute_type=compute, cpu_threads=a.threads, num_workers=1)
    timed = _Timed(wm.model)
    wm.model = timed
    eot = wm.hf_tokenizer.token_to_id("<|endoftext|>")

    def transcribe(x: np.ndarray, clock: Clock) -> tuple[str, int, dict]:
        timed.encode_s = timed.generate_s = 0.0
        clock.start()
        segments, _ = wm.transcribe(x, language="en", task="transcribe", beam_size=1, best_of=1, temperature=0.0,
                                    without_timestamps=True, vad_filter=False, condition_on_previous_text=False,
                                    word_timestamps=False)
        segs = list(segments)  # a lazy generator: decoding happens while it is consumed
        n = sum(len([t for t in s.tokens if t < eot]) for s in segs)
        return "".join(s.text for s in segs).strip(), n, {
            "encoder_ms": timed.encode_s * 1e3,
            "decode_tok_s": n / timed.generate_s if timed.generate_s else None}

    return (transcribe, None, f"cpu_threads {a.threads}, num_workers 1", compute,
            ["faster-whisper", "ctranslate2"], ["model.bin"])


def load_openvino_genai(a: argparse.Namespace) -> tuple:
    import openvino as ov
    import openvino_genai as og

    props: dict[str, Any] = {"INFERENCE_NUM_THREADS": a.threads, "NUM_STREAMS": 1}
    if a.tool.endswith("f32"):
        props.update(INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    pipe = og.WhisperPipeline(a.model, "CPU", **props)
    cfg = pipe.get_generation_config()
    cfg.return_timestamps, cfg.num_beams, cfg.do_sample = False, 1, False
    eot = int(cfg.eos_token_id)

    class Streamer(og.StreamerBase):
        def __init__(self, clock: Clock) -> None:
            super().__init__()
            self.clock = clock

        def write(self, token: Any) -> og.StreamingStatus:
            for t in (token if isinstance(token, list) else [token]):
                if int(t) < eot:
                    self.clock.token()
            return og.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    def transcribe(x: np.ndarray, clock: Clock) -> tuple[str, int, dict]:
        s = Streamer(clock)
        clock.start()
        r = pipe.generate(x, cfg, streamer=s)
        pm = r.perf_metrics
        return r.texts[0].strip(), len(clock.times), {
            "tool_ttft_ms": pm.get_ttft().mean, "tool_tpot_ms": pm.get_tpot().mean,
            "tool_features_ms": pm.get_features_extraction_duration().mean,
            "tool_tokens": pm.get_num_generated_tokens()}

    # the encoder alone: the same IR compiled with the same properties; features are zeros (its cost has no
    # data-dependent path, and genai's feature extractor is not exposed to Python)
    enc = ov.Core().compile_model(str(Path(a.model) / "openvino_encoder_model.xml"), "CPU", props)
    req = enc.create_infer_request()
    zeros = np.zeros((1, 80, 3000), np.float32)

    def encoder_ms(x: np.ndarray) -> float:
        t = time.perf_counter()
        for _ in windows(x):
            req.infer([zeros])
        return (time.perf_counter() - t) * 1e3

    precision = "f32" if a.tool.endswith("f32") else enc.get_property("INFERENCE_PRECISION_HINT").to_string()
    return (transcribe, encoder_ms, f"INFERENCE_NUM_THREADS {a.threads}, NUM_STREAMS 1", precision,
            ["openvino-genai", "openvino", "openvino-tokenizers"],
            ["openvino_encoder_model.bin", "openvino_decoder*.bin"])


LOADERS = {"transformers": load_transformers, "faster-whisper-int8": load_faster_whisper,
           "faster-whisper-fp32": load_faster_whisper, "openvino-genai": load_openvino_genai,
           "openvino-genai-f32": load_openvino_genai, "optimum-onnx": load_optimum_onnx}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def bench(a: argparse.Namespace) -> dict:
    clips = json.loads((Path(a.clips) / "clips.json").read_text())[: a.limit or None]
    audio = []
    for c in clips:
        x, rate = read_wav(Path(a.clips) / c["wav"])
        audio.append(resample(x, rate))
    transcribe, encoder_ms, threads_note, precision, pkgs, weights = LOADERS[a.tool](a)
    clock = Clock()
    transcribe(audio[0], clock)  # warm-up
    runs: list[list[dict]] = [[] for _ in clips]
    for _ in range(a.rounds):
        for i, x in enumerate(audio):
            text, n, extra = transcribe(x, clock)
            t_end = time.perf_counter()
            ts = clock.times
            run = {"text": text, "tokens": n, "wall_ms": (t_end - clock.t0) * 1e3,
                   "ttft_ms": (ts[0] - clock.t0) * 1e3 if ts else None,
                   "decode_tok_s": (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else None,
                   **extra}
            if encoder_ms is not None:
                run["encoder_ms"] = encoder_ms(x)
            runs[i].append(run)
    rows = []
    for c, x, rs in zip(clips, audio, runs):
        row = {"wav": c["wav"], "text": rs[-1]["text"], "ref": c["text"], "audio_s": round(len(x) / RATE, 3),
               "windows": len(windows(x)), "wall_ms": [round(r["wall_ms"], 2) for r in rs], "tokens": rs[-1]["tokens"]}
        for k in ("ttft_ms", "decode_tok_s", "encoder_ms", "tool_ttft_ms", "tool_tpot_ms", "tool_features_ms",
                  "tool_tokens"):
            if any(k in r for r in rs):
                row[k] = _median([r.get(k) for r in rs])
        if len({r["text"] for r in rs}) > 1:
            row["texts_differ_across_rounds"] = True
        rows.append(row)
    d = Path(a.model)
    mb = sum(f.stat().st_size for pat in weights for f in d.glob(pat)) / 2**20
    notes = [threads_note, "16 kHz via whisper_peers.resample (Hann-windowed sinc), not the tool's loader",
             "wall_ms: samples handed over -> text, features included; 1 warm-up, then each clip once per round"]
    if a.tool.startswith("faster-whisper"):
        notes += ["ttft_ms null: ctranslate2's Whisper.generate has no per-token callback",
                  "decode_tok_s = text tokens / time in ctranslate2 Whisper.generate on the encoder output "
                  "(includes the decoder's prompt step), not per-token times; encoder_ms = its own encode calls",
                  "model_mb is the checkpoint on disk; int8 / float32 weights are converted from it on load"]
    if a.tool.startswith("openvino-genai"):
        notes.append("encoder_ms: openvino_encoder_model.xml compiled alone with the same properties, zero features;"
                     " tool_* fields are genai's perf metrics (on audio over 30 s its TTFT is well below ttft_ms,"
                     " which counts from handing over the samples to the first streamed token)")
    return {"tool": a.tool, "precision": precision, "versions": {p: _version(p) for p in ["numpy", *pkgs]},
            "model_mb": round(mb, 2), "rows": rows,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "notes": notes}


def make_clips(out: Path) -> None:
    """The spoken test set (edgeseq's venv) and the clips.json both benchmark sides read."""
    from edgeseq.audio.testset import synthesize

    pairs = synthesize(out)
    (out / "clips.json").write_text(json.dumps([{"wav": p.name, "text": t} for p, t in pairs], indent=1))


def save_hf(out: Path) -> None:
    """whisper-tiny-en as an HF directory (weights, generation config, tokenizer, feature extractor) that
    transformers, optimum-cli export onnx / openvino and openvino-tokenizers read."""
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    from edgeseq.models import resolve

    spec = resolve("whisper-tiny-en")
    # flagged as derived from the model config, older transformers (the exporters' venvs) rebuild it from
    # config.json and drop the Whisper fields (is_multilingual, no_timestamps_token_id) openvino-genai needs
    spec.model.generation_config._from_model_config = False
    spec.model.save_pretrained(out)
    tok = WhisperTokenizerFast(tokenizer_object=Tokenizer.from_str(spec.tokenizer_json), unk_token="<|endoftext|>",
                               bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fe = WhisperFeatureExtractor(feature_size=spec.model.config.num_mel_bins)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)
    fe.save_pretrained(out)  # preprocessor_config.json too: older transformers and openvino-genai read that name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tool", nargs="?", choices=TOOLS)
    p.add_argument("--model", help="the tool's model directory")
    p.add_argument("--clips", help="directory with the WAVs and clips.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=int, default=0, help="only the first N clips (smoke runs)")
    p.add_argument("--make-clips", type=Path, help="synthesize the test set into DIR with clips.json (edgeseq venv)")
    p.add_argument("--save-hf", type=Path, help="write whisper-tiny-en as an HF directory to DIR (edgeseq venv)")
    a = p.parse_args()
    if a.make_clips:
        make_clips(a.make_clips)
    if a.save_hf:
        save_hf(a.save_hf)
    if a.tool:
        if not (a.model and a.clips):
            p.error("a TOOL run needs --model and --clips")
        print(json.dumps(bench(a)), flush=True)
    elif not (a.make_clips or a.save_hf):
        p.error("name a TOOL, or --make-clips / --save-hf")


if __name__ == "__main__":
    main()
