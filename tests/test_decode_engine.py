"""RAMModel.generate_ids: the ``fast`` engine (static cache) gives the ``hf`` engine's greedy ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ram import RAMModel
from ram.segment import InputError

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = ["Charles Darwin wrote the origin of species in 1859.", "Paris is the capital of France, on the Seine."]


@pytest.fixture(scope="module")
def spread_ram(tiny_qwen3_dir: Path) -> RAMModel:
    """Tiny RAM whose decoder has large random weights, so greedy ids vary step to step."""
    torch.manual_seed(0)
    model = RAMModel.from_backbone(tiny_qwen3_dir, **SMALL).eval()
    with torch.no_grad():
        for param in model.decoder.parameters():
            param.normal_(0, 0.3)
    return model


def _prompts(model: RAMModel) -> list[torch.Tensor]:
    out = model.compress_batch([DOCS, DOCS[:1]], ["Who wrote it?", "Which city is the capital of France?"], ratio=2.0)
    return [c.inputs_embeds[0] for c in out]  # two lengths: the batch is left-padded


def test_fast_matches_hf_without_and_with_eos(spread_ram: RAMModel) -> None:
    prompts = _prompts(spread_ram)
    hf = spread_ram.generate_ids(prompts, 12, stop_at_eos=False, engine="hf")
    fast = spread_ram.generate_ids(prompts, 12, stop_at_eos=False, engine="fast")
    assert fast == hf and all(len(r) == 12 for r in hf)
    assert len(set(hf[0])) >= 2  # varied ids, not one token repeated

    tok = spread_ram.tokenizer
    saved = tok.eos_token
    try:
        tok.eos_token = tok.convert_ids_to_tokens(hf[0][3])  # row 0 stops at its 4th token
        eos = tok.eos_token_id
        hf_eos = spread_ram.generate_ids(prompts, 12, engine="hf")
        spread_ram.decode_engine = "fast"  # the model-wide default
        fast_eos = spread_ram.generate_ids(prompts, 12)
    finally:
        tok.eos_token = saved
        spread_ram.decode_engine = "hf"
    assert fast_eos == hf_eos
    assert hf_eos[0] == hf[0][: hf[0].index(eos) + 1] and len(hf_eos[0]) <= 4


def test_unknown_engine(spread_ram: RAMModel) -> None:
    with pytest.raises(InputError, match="engine must be one of"):
        spread_ram.generate_ids(_prompts(spread_ram), 4, engine="vllm")
