"""The encoder: a trainable copy of the decoder's embeddings, first layers and final norm.

It is the backbone's base model truncated to ``encoder_layers`` blocks, with no lm_head, so
encoding never computes vocabulary logits. Question and segments are independent rows.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from .skim import masked_mean

if TYPE_CHECKING:
    from .cache import SegmentStateCache

logger = logging.getLogger(__name__)


def build_encoder(decoder: PreTrainedModel, num_layers: int) -> PreTrainedModel:
    """Copy the base model of ``decoder`` with only its first ``num_layers`` blocks."""
    total = decoder.config.num_hidden_layers
    if num_layers > total:
        raise ValueError(f"encoder_layers={num_layers} but the backbone has only {total} layers")
    config = copy.deepcopy(decoder.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]
    config.use_cache = False
    encoder = AutoModel.from_config(config, dtype=decoder.dtype)
    source = decoder.model.state_dict()
    wanted = encoder.state_dict().keys()
    missing = [k for k in wanted if k not in source]
    if missing:
        raise ValueError(f"cannot copy encoder weights, missing in backbone: {missing[:3]}")
    encoder.load_state_dict({k: source[k] for k in wanted})
    return encoder.to(decoder.device)


def encode_rows(encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, max_batch_tokens: int) -> torch.Tensor:
    """[R, S] right-padded rows -> [R, S, H] last hidden states, in chunks of bounded size."""
    rows_per_chunk = max(1, max_batch_tokens // max(1, ids.shape[1]))
    outs = []
    for start in range(0, ids.shape[0], rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        out = encoder(input_ids=ids[chunk], attention_mask=mask[chunk].long(), use_cache=False)
        outs.append(out.last_hidden_state)
    return torch.cat(outs, 0)


def pad_to(t: torch.Tensor, width: int, value: int | bool) -> torch.Tensor:
    """Right-pad [R, S] to [R, width] with ``value``."""
    if t.shape[1] == width:
        return t
    return torch.cat([t, t.new_full((t.shape[0], width - t.shape[1]), value)], 1)


def encode_question_and_segments(
    encoder: nn.Module,
    q_ids: torch.Tensor,  # [B, Q]
    q_mask: torch.Tensor,  # [B, Q] bool
    ids: torch.Tensor,  # [N, S]
    mask: torch.Tensor,  # [N, S] bool
    lengths: torch.Tensor,  # [N]
    max_batch_tokens: int,
    cache: SegmentStateCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean question states [B, H] and segment states [N, S, H] from one batch of independent rows.

    With a ``cache``, segments it holds are not encoded again and new ones are added to it."""
    todo = torch.ones(ids.shape[0], dtype=torch.bool)
    keys: list[bytes] = []
    if cache is not None:
        keys = cache.keys(ids, lengths)
        todo = ~cache.lookup(keys)
    todo_dev = todo.to(ids.device)
    num = q_ids.shape[0]
    width = max(ids.shape[1], q_ids.shape[1])
    rows = torch.cat([pad_to(q_ids, width, 0), pad_to(ids[todo_dev], width, 0)])
    rows_mask = torch.cat([pad_to(q_mask, width, False), pad_to(mask[todo_dev], width, False)])
    states = encode_rows(encoder, rows, rows_mask, max_batch_tokens)
    q_mean = masked_mean(states[:num], rows_mask[:num])
    fresh = states[num:, : ids.shape[1]]  # [N_todo, S, H]
    if cache is None:
        return q_mean, fresh
    hidden = fresh.new_zeros(ids.shape[0], ids.shape[1], fresh.shape[-1])
    hidden[todo_dev] = fresh
    if not bool(todo.all()):
        hidden[~todo_dev] = cache.gather([k for k, t in zip(keys, todo.tolist()) if not t], ids.shape[1]).to(hidden)
    cache.put([k for k, t in zip(keys, todo.tolist()) if t], fresh, lengths[todo])
    return q_mean, hidden
