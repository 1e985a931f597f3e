"""Segment-state cache: same answers as a fresh encode, fewer rows encoded, bounded memory."""

from __future__ import annotations

import pytest
import torch

from ram import RAMModel
from ram.cache import SegmentStateCache

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = [
    "Charles Darwin wrote the origin of species in 1859 after his voyage on the Beagle.",
    "Paris is the capital and most populous city of France, on the river Seine.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]


@pytest.fixture(scope="module")
def ram(tiny_llama_dir) -> RAMModel:
    torch.manual_seed(0)
    return RAMModel.from_backbone(tiny_llama_dir, **SMALL).eval()


class _CountingEncoder(torch.nn.Module):
    """Wraps the encoder to record how many rows each forward receives."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, input_ids: torch.Tensor, **kwargs):
        self.rows.append(int(input_ids.shape[0]))
        return self.inner(input_ids=input_ids, **kwargs)


def test_cached_compression_matches_fresh_and_encodes_only_new_rows(ram: RAMModel) -> None:
    questions = ["Who wrote the origin of species?", "What is the capital of France?"]
    fresh = [ram.compress(DOCS, q, ratio=2.0) for q in questions]
    counter = _CountingEncoder(ram.encoder)
    inner, ram.encoder = ram.encoder, counter
    try:
        cache = ram.enable_segment_cache()
        cached = [ram.compress(DOCS, q, ratio=2.0) for q in questions]
    finally:
        ram.encoder = inner
        ram.disable_segment_cache()
    segments = len(fresh[0].segments)
    # First question: question row + every segment; second: the question row only.
    assert counter.rows[-1] == 1
    assert sum(counter.rows) == 1 + segments + 1
    assert cache.hits == segments and cache.misses == segments
    for a, b in zip(fresh, cached):
        assert [s.kept for s in a.segments] == [s.kept for s in b.segments]
        torch.testing.assert_close(a.inputs_embeds, b.inputs_embeds, atol=1e-5, rtol=1e-4)


def test_partial_hits_mix_cached_and_new_segments(ram: RAMModel) -> None:
    fresh = ram.compress(DOCS[1:] + ["A new passage about the Beagle and its captain Robert FitzRoy."], "Who was the captain?", ratio=2.0)
    cache = ram.enable_segment_cache()
    try:
        ram.compress(DOCS, "Who wrote the origin of species?", ratio=2.0)
        before = cache.hits
        mixed = ram.compress(DOCS[1:] + ["A new passage about the Beagle and its captain Robert FitzRoy."], "Who was the captain?", ratio=2.0)
    finally:
        ram.disable_segment_cache()
    assert cache.hits > before  # the shared passages were reused
    assert cache.misses > len(fresh.segments) - 1  # the new passage was encoded
    torch.testing.assert_close(fresh.inputs_embeds, mixed.inputs_embeds, atol=1e-5, rtol=1e-4)


def test_cache_is_not_used_with_gradients(ram: RAMModel) -> None:
    cache = ram.enable_segment_cache()
    try:
        with torch.enable_grad():
            ram.hybrid([DOCS], ["Who wrote it?"], ratio=2.0)
        assert len(cache) == 0 and cache.hits == cache.misses == 0
    finally:
        ram.disable_segment_cache()


def test_lru_bound_evicts_oldest() -> None:
    cache = SegmentStateCache(max_tokens=10)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0], [8, 9, 0, 0]])
    lengths = torch.tensor([4, 3, 2])
    keys = cache.keys(ids, lengths)
    states = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    cache.put(keys[:2], states[:2], lengths[:2])
    assert cache.tokens == 7 and len(cache) == 2
    cache.lookup(keys[:1])  # row 0 is now the most recent
    cache.put(keys[2:], states[2:], lengths[2:])
    cache.put([cache.keys(torch.tensor([[10, 11]]), torch.tensor([2]))[0]], states[:1, :2], torch.tensor([2]))
    assert cache.tokens <= 10
    assert cache.lookup(keys).tolist() == [True, False, True]  # row 1 (least recent) went first
    gathered = cache.gather([keys[0], keys[2]], width=4)
    torch.testing.assert_close(gathered[0], states[0])
    torch.testing.assert_close(gathered[1, :2], states[2, :2])
    assert gathered[1, 2:].abs().sum() == 0


def test_keys_ignore_padding_but_not_content() -> None:
    a = SegmentStateCache.keys(torch.tensor([[1, 2, 0, 0]]), torch.tensor([2]))
    b = SegmentStateCache.keys(torch.tensor([[1, 2, 9]]), torch.tensor([2]))
    c = SegmentStateCache.keys(torch.tensor([[1, 3]]), torch.tensor([2]))
    assert a == b and a != c


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_bad_bound_is_rejected(bad) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        SegmentStateCache(bad)
