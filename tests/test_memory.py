"""Weights that cannot fit are refused from the config alone, before anything is read or allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ram import RAMModel, memory
from ram.bench.shapes import SHAPES, build_random_model
from ram.encoder import build_encoder
from ram.memory import InsufficientMemoryError, check_fits, weight_bytes


def test_weight_bytes_counts_what_the_build_allocates() -> None:
    model = build_random_model("tiny", dtype=torch.bfloat16)
    encoder = build_encoder(model, 2)
    allocated = sum(p.numel() * 2 for p in model.parameters()) + sum(p.numel() * 2 for p in encoder.parameters())
    assert weight_bytes(SHAPES["tiny"](), torch.bfloat16, encoder_layers=2) == allocated
    assert weight_bytes(SHAPES["tiny"](), torch.float32) == 2 * sum(p.numel() * 2 for p in model.parameters())
    # the published sizes, without allocating them: Qwen3-4B is ~4.0B parameters (tied), Llama-3.1-8B ~8.0B
    assert weight_bytes(SHAPES["qwen3-4b"](), torch.bfloat16) / 2 == pytest.approx(4.02e9, rel=0.01)
    assert weight_bytes(SHAPES["llama-3.1-8b"](), torch.bfloat16) / 2 == pytest.approx(8.03e9, rel=0.01)


def test_check_fits_compares_with_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 4 * 2**30)
    with pytest.raises(InsufficientMemoryError, match=r"needs 3[0-9]\.\d GiB .* float32 .* only 4\.0 GiB is free"):
        check_fits(SHAPES["llama-3.1-8b"](), torch.float32, "cpu", 8, name="llama-3.1-8b")
    check_fits(SHAPES["tiny"](), torch.float32, "cpu", 2)  # fits: no error


def test_free_memory_is_the_available_ram_on_cpu() -> None:
    import psutil

    free = memory.free_memory_bytes("cpu")
    assert 0 < free <= psutil.virtual_memory().total


def test_a_backbone_too_big_is_refused_before_its_weights_are_read(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    need = weight_bytes(transformers.AutoConfig.from_pretrained(tiny_llama_dir), torch.float32, 2)
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: need)  # 90% of it is allowed: too little
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(InsufficientMemoryError, match=r"needs .* encoder of 2 layers.* --dtype bfloat16"):
        RAMModel.from_backbone(tiny_llama_dir, encoder_layers=2, segment_tokens=8, word_snap_window=2)
    monkeypatch.undo()  # the real free memory: it loads
    model = RAMModel.from_backbone(tiny_llama_dir, encoder_layers=2, segment_tokens=8, word_snap_window=2)
    assert model.config.encoder_layers == 2
