"""Model families: a record in models/families/ is all edgeseq needs to resolve, export, check and
run a family; nothing outside that folder dispatches on a family's name."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

import edgeseq
from edgeseq.errors import UnsupportedArchitectureError
from edgeseq.models import families, resolve
from edgeseq.models.families import Family
from edgeseq.models.tokenizer import train_tokenizer
from edgeseq.steps import components

PACKAGE = Path(edgeseq.__file__).parent
TWIN = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1024, max_position_embeddings=256, eos_token_id=1, bos_token_id=3, pad_token_id=0)


def _load_twin(path: Path) -> tuple[Any, list[Path]]:
    """A family with its own directory format: config.json holds Llama's fields, weights come from seed 0."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = json.loads((path / "config.json").read_text())
    fields.pop("model_type")
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**fields)).eval(), [path / "config.json"]


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Path]:
    """A throwaway family registered for one test, reusing Llama's blocks under a model_type no
    other module knows, and a directory of it."""
    from edgeseq.models.families.llama import LlamaStep, dims

    families.registered()  # the shipped families first, so a clash with them would show
    families.register(Family("twin", {"edgeseq-twin": "decoder-only"}, dims, decoder=LlamaStep, load_dir=_load_twin,
                             prepend_bos=False))
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "edgeseq-twin", **TWIN}))
    (src / "tokenizer.json").write_text(train_tokenizer())
    try:
        yield src
    finally:
        families.unregister("twin")


def test_a_registered_record_is_enough_to_resolve_export_and_run(twin: Path, tmp_path: Path) -> None:
    from edgeseq.export.pipeline import export

    spec = resolve(str(twin))
    assert (spec.family, spec.kind) == ("twin", "decoder-only")
    assert (spec.dims.num_layers, spec.dims.num_kv_heads, spec.dims.head_dim) == (2, 2, 16)  # from its dims()
    assert spec.generation.bos_token_id == 3 and not spec.generation.add_bos  # its prepend_bos=False
    step = components(spec)[0].module  # the family's step behind steps.Picked (the logits_index input)
    assert type(step).__name__ == "Picked" and type(step.step).__name__ == "LlamaStep"  # dispatched through the record
    m = export(str(twin), tmp_path / "art", quiet=True, parity_steps=8)
    assert m.model["family"] == "twin" and m.parity["status"] == "passed"
    out = edgeseq.load(tmp_path / "art").generate_ids([[5, 9, 44]], edgeseq.GenerationConfig(max_new_tokens=4,
                                                                                            ignore_eos=True))
    assert len(out.ids[0]) == 4


def test_every_family_answers_for_its_model_types() -> None:
    fams = families.registered()
    assert {"llama", "gpt2", "t5", "paper"} <= set(fams)  # the names old manifests record
    for name, fam in fams.items():
        assert families.get(name) is fam
        for mt, kind in fam.model_types.items():
            assert families.for_model_type(mt, "x") == (fam, kind)
            steps = [fam.decoder] if kind == "decoder-only" else [fam.encoder, fam.decoder_init, fam.decoder_step]
            assert all(callable(s) for s in steps)
        for arch in fam.gguf_architectures:
            assert families.for_gguf(arch, "x") is fam
    assert families.for_gguf("llama", "x").name == "llama"  # SmolLM2's GGUF files


def test_unsupported_architecture_lists_the_model_types_and_the_fix() -> None:
    with pytest.raises(UnsupportedArchitectureError) as e:
        families.for_model_type("bert", "./bert")
    assert "unsupported architecture 'bert'" in e.value.message
    assert all(mt in e.value.message for mt in families.model_types())
    assert e.value.hint and "models/families/" in e.value.hint
    with pytest.raises(UnsupportedArchitectureError, match="GGUF architecture 'mamba'.*supported:.*llama"):
        families.for_gguf("mamba", "x.gguf")


def test_records_are_checked_when_registered() -> None:
    from edgeseq.models.families.llama import LlamaStep, dims

    families.registered()
    with pytest.raises(ValueError, match="already read by family llama"):
        families.register(Family("copy", {"llama": "decoder-only"}, dims, decoder=LlamaStep))
    with pytest.raises(ValueError, match="declares no decoder step"):
        families.register(Family("stepless", {"edgeseq-stepless": "decoder-only"}, dims))
    with pytest.raises(ValueError, match="lacks encoder"):
        families.register(Family("half", {"edgeseq-half": "encoder-decoder"}, dims, encoder=LlamaStep))
    assert not {"copy", "stepless", "half"} & set(families.registered())


def _presets_table(tree: ast.Module) -> set[int]:
    """Line numbers of the PRESETS table (a preset line names its model_type: that is its job)."""
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and "PRESETS" in ast.unparse(node).split("=")[0]:
            return set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return set()


def test_no_module_outside_the_families_folder_names_a_family() -> None:
    """A string constant equal to a family's name, model_type or GGUF architecture outside
    models/families/ would be a dispatch on the family somewhere else (docstrings aside). A family's
    own torch model (where its record's `build` comes from, like models/paper.py) defines its types."""
    fams = families.registered().values()
    names = {s for f in fams for s in (f.name, *f.model_types, *f.gguf_architectures)}
    own = {PACKAGE.parent / (f.build.__module__.replace(".", "/") + ".py") for f in fams}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "models" / "families") in path.parents or path in own:
            continue
        tree = ast.parse(path.read_text())
        allowed = _presets_table(tree) if path == PACKAGE / "models" / "presets.py" else set()
        found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names and node.lineno not in allowed]
    assert not found, "family names outside models/families/: " + ", ".join(found)
