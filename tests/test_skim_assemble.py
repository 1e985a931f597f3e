"""Skim pooling (query-guided, temperature) and hybrid assembly of decoder inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ram.assemble import hybrid_context, left_pad, with_prompt
from ram.skim import SkimPooler, masked_mean


def _states(seed: int = 0, n: int = 3, s: int = 6, h: int = 8):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, s, h, generator=gen)
    query = torch.randn(n, h, generator=gen)
    lengths = torch.tensor([6, 4, 1][:n])
    mask = torch.arange(s)[None, :] < lengths[:, None]
    return hidden, mask, query


def test_masked_mean_ignores_padding() -> None:
    hidden, mask, _ = _states()
    hidden[~mask] = 1e6  # garbage in padding must not leak
    mean = masked_mean(hidden, mask)
    for i in range(hidden.shape[0]):
        assert torch.allclose(mean[i], hidden[i][mask[i]].mean(0))
    assert torch.equal(masked_mean(hidden[:1], torch.zeros(1, hidden.shape[1], dtype=torch.bool)), torch.zeros(1, 8))


def test_small_tau_picks_most_similar_token() -> None:
    hidden, mask, query = _states(1)
    pooler = SkimPooler(8, 8, temperature=1e-4)
    pooled = pooler.pool(hidden, mask, query)
    sim = F.cosine_similarity(hidden, query[:, None], dim=-1).masked_fill(~mask, -2)
    best = sim.argmax(1)
    expected = hidden[torch.arange(hidden.shape[0]), best]
    assert torch.allclose(pooled, expected, atol=1e-5)
    # padding never wins even when it is the most similar
    hidden2 = hidden.clone()
    hidden2[1, 5] = query[1] * 3  # cos = 1 but masked
    pooled2 = pooler.pool(hidden2, mask, query)
    assert torch.allclose(pooled2[1], expected[1], atol=1e-5)


def test_huge_tau_approaches_masked_mean() -> None:
    hidden, mask, query = _states(2)
    pooler = SkimPooler(8, 8, temperature=1e6)
    pooled = pooler.pool(hidden, mask, query)
    assert torch.allclose(pooled, masked_mean(hidden, mask), atol=1e-4)
    # and a moderate tau is in between: not the mean
    moderate = SkimPooler(8, 8, temperature=0.05).pool(hidden, mask, query)
    assert not torch.allclose(moderate[0], masked_mean(hidden, mask)[0], atol=1e-3)


def test_padding_gets_zero_weight() -> None:
    hidden, mask, query = _states(3)
    pooler = SkimPooler(8, 8, temperature=0.7)
    base = pooler.pool(hidden, mask, query)
    noisy = hidden.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), 8) * 100
    assert torch.allclose(pooler.pool(noisy, mask, query), base, atol=1e-6)
    # weights of real tokens = softmax(cos / tau) over real tokens
    i = 1
    w = torch.softmax(F.cosine_similarity(hidden[i][mask[i]], query[i][None], dim=-1) / 0.7, 0)
    assert torch.allclose(base[i], (w[:, None] * hidden[i][mask[i]]).sum(0), atol=1e-5)
    # a row with no real token pools to zero (not NaN)
    empty = pooler.pool(hidden[:1], torch.zeros(1, 6, dtype=torch.bool), query[:1])
    assert torch.equal(empty, torch.zeros(1, 8))


def test_forward_projects_and_gradients_flow() -> None:
    hidden, mask, query = _states(4)
    pooler = SkimPooler(8, 5, temperature=0.5, learn_temperature=True)
    out = pooler(hidden, mask, query)
    assert out.shape == (3, 5)
    assert torch.allclose(out, pooler.projector(pooler.pool(hidden, mask, query)))
    out.pow(2).sum().backward()
    assert pooler.log_tau.grad is not None and float(pooler.log_tau.grad.abs()) > 0
    assert pooler.projector.weight.grad is not None and float(pooler.projector.weight.grad.abs().sum()) > 0
    assert pooler.temperature == pytest.approx(0.5)
    frozen = SkimPooler(8, 5, temperature=0.5, learn_temperature=False)
    assert not frozen.log_tau.requires_grad


def test_init_projector_scaled_identity() -> None:
    pooler = SkimPooler(4, 4)
    pooler.init_projector(0.25)
    x = torch.randn(2, 4)
    assert torch.allclose(pooler.projector(x), 0.25 * x)
    other = SkimPooler(4, 6)
    other.init_projector(0.25)
    assert torch.equal(other.projector.bias, torch.zeros(6))


# ----------------------------------------------------------------------------- assembly
def _assembly_inputs():
    torch.manual_seed(0)
    embed = nn.Embedding(40, 4)
    lengths = torch.tensor([3, 2, 4, 1, 2, 3])  # examples: [0,0,0], [1,1,1]
    example = torch.tensor([0, 0, 0, 1, 1, 1])
    keep = torch.tensor([True, False, True, False, True, False])
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    ids = torch.where(mask, torch.randint(3, 40, (6, width)), torch.zeros(6, width, dtype=torch.long))
    skim = torch.randn(int((~keep).sum()), 4) + 100.0  # distinguishable from embeddings
    return embed, ids, mask, lengths, example, keep, skim


def test_hybrid_context_layout() -> None:
    embed, ids, mask, lengths, example, keep, skim = _assembly_inputs()
    with torch.no_grad():
        out = hybrid_context(ids, mask, keep, example, skim, embed, 2)
        expected: list[list[torch.Tensor]] = [[], []]
        k = 0
        for i in range(6):
            if keep[i]:
                expected[int(example[i])].append(embed(ids[i, : lengths[i]]))
            else:
                expected[int(example[i])].append(skim[k : k + 1])
                k += 1
    assert len(out) == 2
    for b in range(2):
        assert torch.equal(out[b], torch.cat(expected[b]))
    # lengths: sum of kept lengths + number of skimmed
    assert out[0].shape[0] == 3 + 1 + 4
    assert out[1].shape[0] == 1 + 2 + 1


def test_hybrid_context_close_only_drops_skimmed() -> None:
    embed, ids, mask, lengths, example, keep, _ = _assembly_inputs()
    with torch.no_grad():
        out = hybrid_context(ids, mask, keep, example, None, embed, 2)
        assert torch.equal(out[0], torch.cat([embed(ids[0, :3]), embed(ids[2, :4])]))
        assert torch.equal(out[1], embed(ids[4, :2]))


def test_hybrid_context_explicit_skim_mask_drops_the_rest() -> None:
    embed, ids, mask, lengths, example, keep, skim = _assembly_inputs()
    only = torch.tensor([False, True, False, False, False, False])  # skim segment 1; drop 3 and 5
    with torch.no_grad():
        out = hybrid_context(ids, mask, keep, example, skim[:1], embed, 2, skim=only)
        assert torch.equal(out[0], torch.cat([embed(ids[0, :3]), skim[:1], embed(ids[2, :4])]))
        assert torch.equal(out[1], embed(ids[4, :2]))


def test_hybrid_context_all_kept_is_plain_embedding() -> None:
    embed, ids, mask, lengths, example, _, _ = _assembly_inputs()
    keep = torch.ones(6, dtype=torch.bool)
    with torch.no_grad():
        out = hybrid_context(ids, mask, keep, example, torch.zeros(0, 4), embed, 2)
        for b in range(2):
            rows = torch.nonzero(example == b).flatten()
            flat = torch.cat([ids[i, : lengths[i]] for i in rows])
            assert torch.equal(out[b], embed(flat))


def test_hybrid_context_gradient_reaches_skim_vectors() -> None:
    embed, ids, mask, lengths, example, keep, skim = _assembly_inputs()
    skim = skim.clone().requires_grad_(True)
    out = hybrid_context(ids, mask, keep, example, skim, embed, 2)
    torch.cat(out).sum().backward()
    assert skim.grad is not None and torch.equal(skim.grad, torch.ones_like(skim))


def test_with_prompt_span() -> None:
    embed = nn.Embedding(20, 4)
    ctx = torch.randn(5, 4)
    with torch.no_grad():
        full, span = with_prompt(ctx, [1, 2], [3, 4, 5], embed)
        assert span == (2, 7)
        assert full.shape == (10, 4)
        assert torch.equal(full[2:7], ctx)
        assert torch.equal(full[:2], embed(torch.tensor([1, 2])))
        assert torch.equal(full[7:], embed(torch.tensor([3, 4, 5])))
        empty_prefix, span2 = with_prompt(ctx, [], [3], embed)
        assert span2 == (0, 5) and empty_prefix.shape == (6, 4)


def test_left_pad() -> None:
    seqs = [torch.randn(2, 3), torch.randn(5, 3), torch.randn(3, 3)]
    embeds, attn, positions = left_pad(seqs)
    assert embeds.shape == (3, 5, 3) and attn.dtype == torch.bool
    for b, seq in enumerate(seqs):
        t = seq.shape[0]
        pad = 5 - t
        assert torch.equal(embeds[b, pad:], seq)
        assert torch.equal(embeds[b, :pad], torch.zeros(pad, 3))
        assert attn[b].tolist() == [False] * pad + [True] * t
        assert positions[b, pad:].tolist() == list(range(t))
        assert positions[b, :pad].tolist() == [0] * pad  # clamped, never negative
