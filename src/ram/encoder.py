"""The encoder: a trainable copy of the decoder's embeddings, first layers and final norm.

It is the backbone's base model truncated to ``encoder_layers`` blocks, with no lm_head, so
encoding never computes vocabulary logits. Question and segments are independent rows.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

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
