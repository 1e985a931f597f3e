"""Kept token embeddings + skim vectors -> decoder inputs (original order, batched)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def hybrid_context(
    ids: torch.Tensor,
    mask: torch.Tensor,
    keep: torch.Tensor,
    example: torch.Tensor,
    skim_vectors: torch.Tensor | None,
    embed: nn.Module,
    num_examples: int,
    skim: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Per example [C_b, H] context embeddings: each kept segment as its tokens, each skimmed
    one as its skim vector, in segment order. All segments of the batch in one scatter.

    ids, mask: [N, S]; keep, example: [N]; skim: [N] bool, the skimmed segments (default: all
    not kept; the others are dropped); skim_vectors: [N_skim, H] in segment order, or None to
    drop every segment not kept (the close-only ablation).
    """
    lengths = mask.sum(1)
    if skim_vectors is None:
        skim = torch.zeros_like(keep)
    elif skim is None:
        skim = ~keep
    cost = torch.where(keep, lengths, skim.long())  # positions each segment takes
    start = torch.cumsum(cost, 0) - cost  # [N] output offset of each segment
    total = int(cost.sum())
    token_mask = mask & keep[:, None]  # [N, S] kept real tokens
    token_pos = (start[:, None] + torch.arange(ids.shape[1], device=ids.device)[None, :])[token_mask]
    token_emb = embed(ids[token_mask])  # [K, H]
    out = token_emb.new_zeros(total, token_emb.shape[1])
    out = out.index_copy(0, token_pos, token_emb)
    if skim_vectors is not None:
        out = out.index_copy(0, start[skim], skim_vectors.to(out.dtype))
    per_example = torch.zeros(num_examples, dtype=torch.long, device=ids.device).index_add_(0, example, cost)
    return list(torch.split(out, per_example.tolist()))


def with_prompt(
    context: torch.Tensor, prefix_ids: Sequence[int], suffix_ids: Sequence[int], embed: nn.Module
) -> tuple[torch.Tensor, tuple[int, int]]:
    """[C, H] -> [P + C + Q, H] and the [start, end) span of the context inside it."""
    device = context.device
    pre = embed(torch.tensor(list(prefix_ids), dtype=torch.long, device=device)).to(context.dtype)
    post = embed(torch.tensor(list(suffix_ids), dtype=torch.long, device=device)).to(context.dtype)
    return torch.cat([pre, context, post], 0), (len(prefix_ids), len(prefix_ids) + context.shape[0])


def left_pad(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """List of [T_b, H] -> inputs_embeds [B, T, H], attention_mask [B, T] bool, position_ids [B, T].

    Left padding keeps every prompt's last position aligned for generation; positions count
    real tokens only, so a padded row sees the same positions as when run alone.
    """
    longest = max(s.shape[0] for s in sequences)
    hidden = sequences[0].shape[1]
    ref = sequences[0]
    embeds = ref.new_zeros(len(sequences), longest, hidden)
    attn = torch.zeros(len(sequences), longest, dtype=torch.bool, device=ref.device)
    for b, seq in enumerate(sequences):
        embeds[b, longest - seq.shape[0] :] = seq
        attn[b, longest - seq.shape[0] :] = True
    positions = (attn.long().cumsum(1) - 1).clamp(min=0)
    return embeds, attn, positions
