"""Smoke test on the real offline default backbone (SmolLM2-135M from the GGUF wheel).

The conversion runs once per session into a private RAM_HOME that starts with the debris of a
crashed run (a stale temp dir and an incomplete target), so the user's cache is never touched.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from ram import RAMModel
from ram.backbone import ensure_builtin, resolve_backbone

pytestmark = pytest.mark.slow

NAME = "smollm2-135m"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("ram-home")
    parent = home / "backbones"
    stale_tmp = parent / f".{NAME}-crashed"
    stale_tmp.mkdir(parents=True)
    (stale_tmp / "model.safetensors").write_bytes(b"half written")
    incomplete = parent / NAME
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    (incomplete / "junk.bin").write_bytes(b"\x00" * 16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAM_HOME", str(home))
        path = ensure_builtin(NAME)
    return home, path


def test_ensure_builtin_recovers_and_is_idempotent(converted: tuple[Path, Path], monkeypatch) -> None:
    home, path = converted
    parent = home / "backbones"
    assert path == parent / NAME
    assert (path / ".ram-complete").is_file()
    assert (path / "config.json").stat().st_size > 10 and (path / "model.safetensors").is_file()
    assert not (path / "junk.bin").exists(), "the incomplete directory must be replaced"
    # the conversion itself leaves no temp dirs; the old stale one does not matter
    assert sorted(p.name for p in parent.iterdir()) == [f".{NAME}-crashed", NAME]
    monkeypatch.setenv("RAM_HOME", str(home))
    before = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    again = ensure_builtin(NAME)
    assert time.perf_counter() - start < 1.0
    assert again == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before
    assert resolve_backbone("SmolLM2") == path  # alias, case-insensitive


def test_default_backbone_compresses_and_answers(converted: tuple[Path, Path], monkeypatch) -> None:
    home, _ = converted
    monkeypatch.setenv("RAM_HOME", str(home))
    model = RAMModel.from_pretrained(NAME)
    assert model.config.backbone == NAME and model.trained is False
    assert type(model.decoder).__name__ == "LlamaForCausalLM"
    docs = [
        "The Eiffel Tower is in Paris. It was built in 1889 for the World Fair and is 330 metres tall.",
        "Mount Everest is the highest mountain on Earth, at 8849 metres, in the Himalayas between Nepal and China.",
    ]
    ans = model.answer(docs, "How tall is Mount Everest?", ratio=2.0, max_new_tokens=8)
    assert ans.text.strip(), "the default backbone should produce some answer text"
    cc = ans.compressed
    length = cc.stats["original_tokens"]
    assert length == sum(s.tokens for s in cc.segments) > 0
    assert cc.compressed_length <= math.ceil(length / 2.0)
    assert cc.stats["achieved_ratio"] == pytest.approx(length / cc.compressed_length)
    assert {s.document for s in cc.segments} == {0, 1}
