"""The encoder: a trainable copy of the decoder's embeddings, first layers and final norm.

It is the backbone's base model truncated to ``encoder_layers`` blocks, with no lm_head, so
encoding never computes vocabulary logits. Question and segments are independent rows.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from .skim import masked_mean

if TYPE_CHECKING:
    from .cache import SegmentStateCache

logger = logging.getLogger(__name__)


def encoder_config(config: PretrainedConfig, num_layers: int) -> PretrainedConfig:
    """The backbone's config cut to its first ``num_layers`` blocks, without a KV cache."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]
    config.use_cache = False
    return config


def build_encoder(decoder: PreTrainedModel, num_layers: int) -> PreTrainedModel:
    """Copy the base model of ``decoder`` with only its first ``num_layers`` blocks."""
    total = decoder.config.num_hidden_layers
    if num_layers > total:
        raise ValueError(f"encoder_layers={num_layers} but the backbone has only {total} layers")
    encoder = AutoModel.from_config(encoder_config(decoder.config, num_layers), dtype=decoder.dtype)
    source = decoder.model.state_dict()
    wanted = encoder.state_dict().keys()
    missing = [k for k in wanted if k not in source]
    if missing:
        raise ValueError(f"cannot copy encoder weights, missing in backbone: {missing[:3]}")
    encoder.load_state_dict({k: source[k] for k in wanted})
    return encoder.to(decoder.device)


# A forward pass costs this many padded tokens' worth of work on top of its tokens, as a share of
# all padded tokens (floor: BUCKET_OVERHEAD_MIN). Another width bucket is opened only when it
# saves more padding than that, so uniform rows stay one batch.
BUCKET_OVERHEAD_SHARE = 0.03
BUCKET_OVERHEAD_MIN = 64
MAX_BUCKETS = 4
MAX_DP_WIDTHS = 256  # distinct widths the dynamic program works over (its tables are this squared)
PROGRESS_MIN_CHUNKS = 4  # encoder forwards from which a progress bar shows (disabled off a terminal)


def width_buckets(widths: torch.Tensor, max_buckets: int = MAX_BUCKETS, overhead: float | None = None) -> list[int]:
    """Upper widths of at most ``max_buckets`` row groups that minimise padded tokens + overhead per group.

    ``widths``: [R] real width of each row (index of its last real token + 1). A row goes to the
    smallest bucket at least as wide as it. Exact optimum by dynamic programming over the distinct
    widths (vectorised over them; the loop is over bucket counts only). Beyond ``MAX_DP_WIDTHS``
    distinct widths (very long segments), widths are first rounded up to a common step, so the
    program stays small; the groups are then near-optimal.
    """
    raw = widths.cpu().numpy()
    step = -(-int(raw.max()) // MAX_DP_WIDTHS) if len(np.unique(raw)) > MAX_DP_WIDTHS else 1
    if step > 1:
        raw = np.minimum(-(-raw // step) * step, raw.max())
    values, counts = np.unique(raw, return_counts=True)  # sorted distinct widths
    if overhead is None:
        overhead = max(BUCKET_OVERHEAD_MIN, BUCKET_OVERHEAD_SHARE * int(counts.sum()) * int(values[-1]))
    m = len(values)
    below = np.concatenate([[0], np.cumsum(counts)])  # rows with width <= values[j - 1]
    # span[i, j]: cost of one bucket holding distinct widths i..j (i <= j), padded to values[j]
    span = values[None, :].astype(np.float64) * (below[None, 1:] - below[:-1, None])
    span = np.where(np.arange(m)[:, None] <= np.arange(m)[None, :], span, np.inf)
    best = span[0].copy()  # best[j]: widths 0..j in k buckets
    choice = [np.zeros(m, dtype=np.int64)]  # start index of the last bucket
    costs = [best[-1]]
    for _ in range(1, min(max_buckets, m)):
        # extend: buckets for 0..i-1 then one for i..j
        cand = np.full((m, m), np.inf)
        cand[1:] = best[:-1, None] + span[1:]
        start = cand.argmin(0)
        best = cand[start, np.arange(m)]
        choice.append(start)
        costs.append(best[-1])
    k = int(np.argmin([c + overhead * (n + 1) for n, c in enumerate(costs)]))
    uppers, j = [], m - 1
    for level in range(k, -1, -1):
        uppers.append(int(values[j]))
        j = int(choice[level][j]) - 1
    return sorted(uppers)


def encode_rows(encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, max_batch_tokens: int) -> torch.Tensor:
    """[R, S] padded rows -> [R, S, H] last hidden states; states at pads are not meaningful.

    Rows are grouped by real width (:func:`width_buckets`) and each group is trimmed to its widest
    row, so short rows (a document's last segment, the question) do not pay for the longest one.
    Each group runs in chunks of at most ``max_batch_tokens`` padded tokens; from
    ``PROGRESS_MIN_CHUNKS`` chunks on (a very long context), a progress bar shows on a terminal."""
    positions = torch.arange(1, ids.shape[1] + 1, device=mask.device)
    widths = (mask * positions).amax(1).clamp(min=1)  # [R]
    uppers = width_buckets(widths)
    bucket = torch.bucketize(widths, torch.tensor(uppers, device=widths.device))  # [R] group of each row
    chunks: list[tuple[torch.Tensor, int]] = []  # (row indices, width) per forward
    for b, width in enumerate(uppers):
        rows = torch.nonzero(bucket == b).squeeze(1)
        rows_per_chunk = max(1, max_batch_tokens // width)
        chunks += [(rows[start : start + rows_per_chunk], width) for start in range(0, len(rows), rows_per_chunk)]
    out: torch.Tensor | None = None
    quiet = len(chunks) < PROGRESS_MIN_CHUNKS or None  # None: tqdm shows the bar on a terminal only
    for idx, width in tqdm(chunks, desc="encoding", unit="chunk", leave=False, disable=quiet):
        states = encoder(input_ids=ids[idx, :width], attention_mask=mask[idx, :width].long(), use_cache=False)
        states = states.last_hidden_state  # [r, width, H]
        if out is None:
            out = states.new_zeros(ids.shape[0], ids.shape[1], states.shape[-1])
        out[idx, :width] = states
    assert out is not None  # at least one row
    return out


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
    """Mean question states [B, H] and segment states [N, S, H] from one pass over independent rows
    (grouped by width, see :func:`encode_rows`).

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
