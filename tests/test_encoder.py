"""Encoder rows: width buckets (optimal, bounded) and bucketed encoding equal to one padded batch."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from ram.encoder import build_encoder, encode_rows, width_buckets


def padded_cost(widths: list[int], uppers: list[int]) -> int:
    """Padded tokens when each row goes to the smallest bucket at least as wide."""
    return sum(min(u for u in uppers if u >= w) for w in widths)


def brute_force(widths: list[int], max_buckets: int, overhead: float) -> float:
    values = sorted(set(widths))
    best = float("inf")
    for k in range(1, min(max_buckets, len(values)) + 1):
        for inner in itertools.combinations(values[:-1], k - 1):
            uppers = [*inner, values[-1]]
            best = min(best, padded_cost(widths, uppers) + overhead * k)
    return best


@settings(max_examples=150, deadline=None)
@given(
    widths=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    max_buckets=st.integers(1, 4),
    overhead=st.floats(0, 200),
)
def test_width_buckets_are_optimal_and_cover_every_row(widths: list[int], max_buckets: int, overhead: float) -> None:
    uppers = width_buckets(torch.tensor(widths), max_buckets=max_buckets, overhead=overhead)
    assert uppers == sorted(set(uppers)) and len(uppers) <= max_buckets
    assert uppers[-1] == max(widths)  # every row fits
    assert set(uppers) <= set(widths)  # no bucket wider than its widest row
    cost = padded_cost(widths, uppers) + overhead * len(uppers)
    assert cost == pytest.approx(brute_force(widths, max_buckets, overhead))


def test_uniform_rows_stay_one_batch_and_short_rows_split_off() -> None:
    assert width_buckets(torch.full((50,), 48)) == [48]
    # 60 segments of ~50 tokens, 20 short last segments and a question: the short ones split off
    widths = torch.tensor([50] * 40 + [52] * 5 + [10] * 20 + [14])
    # 20*10 + 46*52 padded tokens + 2 forwards beats one batch (66*52 + 1) and three buckets
    assert width_buckets(widths) == [10, 52]
    assert width_buckets(widths, overhead=10_000) == [52]  # a costly forward: one batch


def test_many_distinct_widths_are_grouped_on_a_coarser_grid() -> None:
    widths = torch.arange(1, 3001)  # 3000 distinct widths: rounded to steps of 12 first
    uppers = width_buckets(widths)
    assert uppers[-1] == 3000 and 1 < len(uppers) <= 4
    assert all(u % 12 == 0 for u in uppers)  # on the grid (3000 is a multiple too)
    # uniform widths in 4 equal groups fill about k / (k + 1) = 0.8 of the padded tokens at best
    fill = int(widths.sum()) / padded_cost(widths.tolist(), uppers)
    assert 0.78 <= fill <= 0.81


@pytest.mark.parametrize("max_batch_tokens", [1 << 20, 64])
def test_bucketed_encoding_matches_one_padded_batch(tiny_llama_dir, max_batch_tokens: int) -> None:
    decoder = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    encoder = build_encoder(decoder, 2).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([30, 3, 29, 30, 7, 1, 18, 30, 2, 30])
    ids = torch.randint(5, decoder.config.vocab_size, (len(lengths), 30), generator=gen)
    mask = torch.arange(30)[None, :] < lengths[:, None]  # [R, 30] right-padded
    ids[~mask] = 0
    assert len(width_buckets(mask.sum(1))) > 1  # the short rows form their own group
    with torch.no_grad():
        out = encode_rows(encoder, ids, mask, max_batch_tokens)
        ref = encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert out.shape == ref.shape
    torch.testing.assert_close(out[mask], ref[mask], rtol=1e-4, atol=1e-5)
    assert bool(torch.isfinite(out).all())  # pads hold finite values (callers mask them out)


def test_a_progress_bar_shows_only_for_many_encoder_chunks(tiny_llama_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    import ram.encoder as encoder_module

    decoder = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    encoder = build_encoder(decoder, 1).eval()
    ids = torch.randint(5, decoder.config.vocab_size, (12, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(12, 10, dtype=torch.bool)
    bars: list[tuple[int, object]] = []

    def fake_tqdm(items, **kwargs):
        bars.append((len(items), kwargs["disable"]))
        return items

    monkeypatch.setattr(encoder_module, "tqdm", fake_tqdm)
    with torch.no_grad():
        encode_rows(encoder, ids, mask, 1 << 20)  # one forward: never a bar
        encode_rows(encoder, ids, mask, 20)  # two rows per forward: six forwards
    assert bars == [(1, True), (6, None)]  # None: tqdm shows it on a terminal only


def test_bucketed_encoding_carries_gradients(tiny_qwen3_dir) -> None:
    decoder = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    encoder = build_encoder(decoder, 2)
    lengths = torch.tensor([40, 3, 40, 5, 40, 2, 40, 4, 40, 3, 40, 2])
    ids = torch.randint(5, decoder.config.vocab_size, (12, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.arange(40)[None, :] < lengths[:, None]
    assert len(width_buckets(mask.sum(1))) > 1  # gradients flow back through every group
    weight = encoder.layers[0].mlp.down_proj.weight
    encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state[mask].sum().backward()
    ref = weight.grad.clone()  # one padded batch
    weight.grad = None
    out = encode_rows(encoder, ids, mask, 1 << 20)
    out[mask].sum().backward()
    assert weight.grad is not None and bool(ref.abs().sum() > 0)
    torch.testing.assert_close(weight.grad, ref, rtol=1e-4, atol=1e-5)
