"""The example app runs on the runtime API, and its cache reuse across turns changes no output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeseq

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


@pytest.fixture()
def chat_artifact(artifacts: dict[str, Path], tmp_path: Path) -> Path:
    art = shutil.copytree(artifacts["llama"], tmp_path / "chat")
    data = json.loads((art / "edgeseq.json").read_text())
    data["generation"]["chat_template"] = TEMPLATE
    (art / "edgeseq.json").write_text(json.dumps(data))
    return art


def test_chat_example_two_turns(chat_artifact: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "chat.py"), str(chat_artifact),
                        "--max-new-tokens", "8"], input="hello there\nand again\n", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("bot> ") == 2 and "error" not in r.stderr


def test_reused_cache_equals_fresh_generator(chat_artifact: Path) -> None:
    model = edgeseq.load(chat_artifact)
    cfg = edgeseq.GenerationConfig(max_new_tokens=6)
    first = model.encode_chat([{"role": "user", "content": "hello"}])
    gen = model.generator(first, config=cfg)
    reply = []
    while not gen.done:
        reply.append(gen.next_token())
    second = model.encode_chat([{"role": "user", "content": "hello"},
                                {"role": "assistant", "content": model.decode(reply)},
                                {"role": "user", "content": "more"}])
    keep = next((i for i, (x, y) in enumerate(zip(gen.sequence, second)) if x != y), min(len(second), len(gen.sequence)))
    gen.rewind(len(gen.sequence) - keep)
    gen.append_tokens(second[keep:])
    reused = [gen.next_token() for _ in range(6) if not gen.done]
    fresh_gen = model.generator(second, config=cfg)
    fresh = [fresh_gen.next_token() for _ in range(6) if not fresh_gen.done]
    assert reused == fresh
