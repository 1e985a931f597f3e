"""Training objectives: answer NLL through the hybrid context + multi-positive contrastive loss."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _segment_logsumexp(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[N] values, [N] group ids -> [G] logsumexp per group (-inf for empty groups)."""
    neg_inf = torch.full((num_groups,), float("-inf"), dtype=values.dtype, device=values.device)
    peak = neg_inf.scatter_reduce(0, groups, values, reduce="amax", include_self=True)
    safe_peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros_like(peak).index_add(0, groups, torch.exp(values - safe_peak[groups]))
    return torch.log(total) + safe_peak


def contrastive_loss(
    scores: torch.Tensor, positive: torch.Tensor, example: torch.Tensor, num_examples: int, tau: float = 0.1
) -> torch.Tensor:
    """Multi-positive InfoNCE over segments: mean over examples with a positive of
    ``logsumexp(s/tau over all) - logsumexp(s/tau over positives)``. Zero when no example has one."""
    logits = scores / tau
    all_lse = _segment_logsumexp(logits, example, num_examples)
    pos_logits = torch.where(positive, logits, torch.full_like(logits, float("-inf")))
    pos_lse = _segment_logsumexp(pos_logits, example, num_examples)
    has_pos = torch.zeros(num_examples, dtype=torch.bool, device=scores.device).index_fill(0, example[positive], True)
    if not bool(has_pos.any()):
        return scores.sum() * 0.0
    return (all_lse[has_pos] - pos_lse[has_pos]).mean()


def answer_nll(
    decoder: nn.Module, prompts: Sequence[torch.Tensor], answers: Sequence[Sequence[int]], embed: nn.Module
) -> tuple[torch.Tensor, int]:
    """Mean NLL of the answer tokens given each prompt [T_b, H] (right-padded batch).

    Returns (loss, number of answer tokens)."""
    rows, labels = [], []
    for prompt, ans in zip(prompts, answers):
        ans_ids = torch.tensor(list(ans), dtype=torch.long, device=prompt.device)
        rows.append(torch.cat([prompt, embed(ans_ids).to(prompt.dtype)], 0))
        labels.append(torch.cat([torch.full((prompt.shape[0],), -100, device=prompt.device), ans_ids]))
    longest = max(r.shape[0] for r in rows)
    hidden = rows[0].shape[1]
    batch = rows[0].new_zeros(len(rows), longest, hidden)
    label_t = torch.full((len(rows), longest), -100, dtype=torch.long, device=rows[0].device)
    attn = torch.zeros(len(rows), longest, dtype=torch.long, device=rows[0].device)
    for b, (row, lab) in enumerate(zip(rows, labels)):
        batch[b, : row.shape[0]] = row
        label_t[b, : lab.shape[0]] = lab
        attn[b, : row.shape[0]] = 1
    positions = torch.arange(longest, device=batch.device).expand(len(rows), -1)
    # Run the base model and apply lm_head only where an answer token is predicted: the
    # vocabulary projection of every prompt position would dominate the cost.
    states = decoder.model(inputs_embeds=batch, attention_mask=attn, position_ids=positions, use_cache=False).last_hidden_state
    targets = label_t[:, 1:]
    where = targets != -100
    logits = decoder.lm_head(states[:, :-1][where]).float()
    count = int(where.sum())
    loss = nn.functional.cross_entropy(logits, targets[where], reduction="sum")
    return loss / max(1, count), count
