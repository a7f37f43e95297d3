"""`edgeseq eval`: how closely an artifact follows its float reference on the built-in texts
(quality/texts.py), by the figures of quality/metrics.py. The reference is the PyTorch model the
artifact was exported from ("source") or another artifact of the same tokenizer (e.g. the fp32
export of the same model); both read exactly the same token ids."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from . import teacher
from .metrics import Tally, first_divergence
from .texts import SETS, cases, prompts

SOURCE = "source"
AT_EXPORT_TOKENS, AT_EXPORT_PROMPTS, AT_EXPORT_STEPS = 256, 2, 32  # export's budget: seconds on a 135M model


@dataclass
class EvalConfig:
    reference: str = SOURCE  # "source" (the PyTorch model it was exported from) or an artifact directory
    tokens: int | None = 2048  # target tokens scored, over the sets in turn (None: every case whole)
    sets: tuple[str, ...] = SETS
    prompts: int = 5  # free greedy runs compared ...
    steps: int = 64  # ... over this many new tokens each
    engine: str | None = None
    device: str = "cpu"
    threads: int | None = None

    def validate(self) -> "EvalConfig":
        for name, v, least in (("--tokens", self.tokens, 1), ("--prompts", self.prompts, 0), ("--steps", self.steps, 1)):
            if v is not None and v < least:
                raise UsageError(f"{name} must be at least {least}, got {v}", f"e.g. {name} 64")
        unknown = set(self.sets) - set(SETS)
        if unknown or not self.sets:
            raise UsageError(f"unknown text set(s) {', '.join(sorted(unknown)) or '(none)'}", f"sets: {', '.join(SETS)}")
        return self


def open_pair(artifact: str | Path, cfg: EvalConfig) -> tuple[Any, Any]:
    """The artifact and its reference, opened (f32 compute), after checking that they read the same ids."""
    from .. import api
    from ..artifact import manifest as mf

    model = api.load(artifact, device=cfg.device, engine=cfg.engine, threads=cfg.threads)
    if model.manifest.audio:
        raise UsageError(f"eval scores text models; {artifact} is a speech model",
                         "measure a speech model by its transcripts (word error rate: docs/speech.md)")
    if getattr(model.backend, "native", False):
        raise UsageError(f"eval needs every position's logits, which engine {model.backend.engine} does not return",
                         "evaluate the artifact on edgeseq's own engine (drop --engine); its native check compares "
                         "its greedy tokens already")
    if cfg.reference == SOURCE:
        ref = api.load(artifact, engine="torch", threads=cfg.threads)
    else:
        ref = api.load(cfg.reference, threads=cfg.threads)
        mine, theirs = (mf.read(p).files.get(mf.TOKENIZER, {}).get("sha256") for p in (artifact, cfg.reference))
        if mine != theirs:
            raise UsageError(f"{cfg.reference} has another tokenizer than {artifact}: their ids are not comparable",
                             "use --reference source, or an export of the same model")
    if model.kind != ref.kind:
        raise UsageError(f"{cfg.reference} is {ref.kind}, {artifact} is {model.kind}", "use --reference source")
    return model, ref


def evaluate(artifact: str | Path, cfg: EvalConfig | None = None,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The figures of `artifact` against its reference; `progress` is told the tokens scored so far."""
    cfg = (cfg or EvalConfig()).validate()
    model, ref = open_pair(artifact, cfg)
    return {"artifact": str(artifact), **score(model, ref, cfg, progress)}


def score(model: Any, ref: Any, cfg: EvalConfig, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The figures of `model` against `ref` (edgeseq.api.Model, both open)."""
    todo = [teacher.fit(teacher.fit(c, model.backend), ref.backend) for c in cases(model, cfg.tokens, cfg.sets)]
    tallies = {s: Tally() for s in cfg.sets}
    done = 0
    for case in todo:  # one case's logits at a time: [targets, vocab] each, a few tens of MB
        got = np.concatenate(list(teacher.logits(model.backend, case)))
        want = np.concatenate(list(teacher.logits(ref.backend, case)))
        tallies[case.set].add(got, want, np.array(case.target))
        done += len(case.target)
        if progress:
            progress(done)
    overall = Tally()
    for t in tallies.values():
        for f in ("nll", "nll_ref", "kl", "agree"):
            getattr(overall, f).extend(getattr(t, f))
    return {"reference": cfg.reference, "engine": model.backend.engine,
            "precision": model.backend.precision, "weights": model.manifest.quantization or "fp32",
            **overall.summary(), "sets": {s: t.summary() for s, t in tallies.items() if t.nll},
            "greedy": greedy(model, ref, prompts(model, cfg.prompts), cfg.steps)}


def greedy(model: Any, ref: Any, rows: list[list[int]], steps: int) -> dict[str, Any]:
    """Free greedy runs of `steps` tokens from each prompt on both: where they first differ, the share of
    steps with the same token, and at each first difference the reference's own margin (log-probability)
    between its token and the artifact's: a margin near 0 is a near-tie, flipped by any small drift.
    `forced_agreement`: along the reference's greedy run, the share of steps where the artifact, fed the
    same tokens so far, chooses the reference's next token (one flip does not make every later step
    differ, as in the free runs)."""
    from ..generate.config import GenerationConfig
    from ..generate.loop import run

    firsts, margins, same, forced, total = [], [], 0, 0, 0
    for ids in rows:
        for b in (model.backend, ref.backend):
            most = teacher.prompt_room(b)
            ids = ids if most is None else ids[-most:]
        room = min(teacher.room(b) for b in (model.backend, ref.backend)) - \
            (len(ids) if model.kind == "decoder-only" else 1)
        cfg = GenerationConfig(max_new_tokens=max(min(steps, room), 1), ignore_eos=True).validate()
        got, _ = run(model.backend, [ids], cfg, model.gen_defaults)
        want, _ = run(ref.backend, [ids], cfg, ref.gen_defaults)
        firsts.append(first_divergence(got[0], want[0]))
        margins.append(None if firsts[-1] is None else _margin(ref.backend, ids, want[0], got[0], firsts[-1]))
        same += sum(a == b for a, b in zip(got[0], want[0]))
        forced += _forced(model, ids, want[0], cfg)
        total += len(want[0])
    return {"prompts": len(rows), "steps": steps, "first_divergence": firsts, "divergence_margin": margins,
            "token_agreement": round(same / total, 4) if total else None,
            "forced_agreement": round(forced / total, 4) if total else None}


def _forced(model: Any, ids: list[int], want: list[int], cfg: Any) -> int:
    """Steps of the reference's greedy run `want` where the artifact, fed its tokens so far, chooses the same
    next token among the ids the run may choose (a forced run bans the stop ids)."""
    from ..generate.loop import banned_ids, first_banned
    from .texts import Case

    logits = np.concatenate([np.asarray(x, np.float32)
                             for x in teacher.logits(model.backend, Case("greedy", ids, want))])
    gen = model.gen_defaults
    for rows, ban in ((logits[1:], banned_ids(cfg, gen)), (logits[:1], first_banned(cfg, gen))):
        if ban:
            rows[:, ban] = -np.inf
    return int((logits.argmax(axis=-1) == np.asarray(want)).sum())


def _margin(backend: Any, ids: list[int], want: list[int], got: list[int], at: int) -> float:
    """The reference's log-probability of its own token minus the artifact's, at step `at` of its run."""
    from ..generate.search import log_softmax
    from .texts import Case

    *_, last = teacher.logits(backend, Case("greedy", ids, want[: at + 1]))
    logp = log_softmax(np.asarray(last[-1:]), np.float64)[0]
    return round(float(logp[want[at]] - logp[got[at]]), 4)


def at_export(directory: Path, manifest: Any, tokenizer_json: str, tokens: int) -> dict[str, Any]:
    """The budgeted figures export writes into a quantized artifact's manifest: the artifact (still being
    written, so opened from its in-memory manifest) against the PyTorch model it comes from."""
    from tokenizers import Tokenizer

    from ..api import Model
    from ..reference import open_runner
    from ..runtimes import BackendOptions, open_backend

    tok = Tokenizer.from_str(tokenizer_json)
    options = BackendOptions(precision="f32")
    model = Model(directory, manifest, open_backend(directory, manifest, "cpu", None, options), tok)
    ref = Model(directory, manifest, open_runner(directory, manifest, "cpu", "torch", options), tok)
    cfg = EvalConfig(tokens=tokens, prompts=AT_EXPORT_PROMPTS, steps=AT_EXPORT_STEPS).validate()
    return {**score(model, ref, cfg), "budget": f"{tokens} tokens, {cfg.prompts} greedy runs of {cfg.steps}"}
