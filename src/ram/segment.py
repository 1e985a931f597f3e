"""Tokens -> segments: fixed-size cuts snapped back to word starts, never across documents.

Each document is tokenized once; segments are slices of that tokenization, so close-read
segments feed the decoder exactly the tokens a full prompt would, and every segment knows
the character span it covers (spans tile each document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

DOCUMENT_SEPARATOR = "\n"


class InputError(ValueError):
    """Bad user input (empty context, empty question, ...)."""


@dataclass
class SegmentedBatch:
    """All segments of a batch of contexts, flattened (N = segments over the whole batch).

    ``ids`` are right-padded with ``pad_id``; ``mask`` marks real tokens. The last segment of
    every document but the last also carries the document separator tokens.
    """

    ids: torch.Tensor  # [N, S] long
    mask: torch.Tensor  # [N, S] bool
    lengths: torch.Tensor  # [N] long
    example: torch.Tensor  # [N] long, which context of the batch
    document: torch.Tensor  # [N] long, document index inside its context
    start: torch.Tensor  # [N] long, char start inside its document
    end: torch.Tensor  # [N] long, char end inside its document
    num_examples: int

    @property
    def num_segments(self) -> int:
        return int(self.ids.shape[0])

    def original_tokens(self) -> torch.Tensor:
        """[B] context tokens per example."""
        return torch.zeros(self.num_examples, dtype=torch.long).index_add_(0, self.example, self.lengths)

    def segments_per_example(self) -> torch.Tensor:
        """[B] number of segments per example."""
        return torch.bincount(self.example, minlength=self.num_examples)


def normalize_context(context: str | Sequence[str]) -> list[str]:
    """Accept one string or a list of documents; reject empty input with a clear message."""
    documents = [context] if isinstance(context, str) else list(context)
    if not documents:
        raise InputError("context is empty: give a non-empty string or a list of documents")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise InputError(f"document {i} is a {type(doc).__name__}, expected str")
        if not doc.strip():
            raise InputError(f"document {i} of the context is empty")
    return documents


def cut_points(starts: np.ndarray, text: str, segment_tokens: int, window: int) -> np.ndarray:
    """Token indices where segments begin (first is 0) for one tokenized document.

    Nominal cuts every ``segment_tokens`` tokens move back, by at most ``window`` tokens, to
    the nearest token that starts a word. With ``window < segment_tokens / 2`` cuts stay ordered.
    """
    n = len(starts)
    nominal = np.arange(segment_tokens, n, segment_tokens)
    if len(nominal) == 0:
        return np.zeros(1, dtype=np.int64)
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) if text else np.zeros(0, np.uint32)
    space = np.zeros(len(chars) + 1, dtype=bool)
    space[1:] = np.isin(chars, _SPACE_CODES) | (chars < 33)
    starts_c = np.clip(starts, 0, len(chars))
    prev_is_space = space[starts_c]  # char before the token start
    at_space = space[np.clip(starts_c + 1, 0, len(chars))] & (starts_c < len(chars))
    increasing = np.ones(n, dtype=bool)
    increasing[1:] = starts[1:] > starts[:-1]
    word_start = (prev_is_space | at_space) & increasing
    candidates = np.flatnonzero(word_start)
    # Largest word start <= nominal cut; keep it only if within the window.
    if len(candidates) == 0:  # no word start at all (one long token run): nominal cuts
        return np.concatenate([[0], nominal]).astype(np.int64)
    pos = np.searchsorted(candidates, nominal, side="right") - 1
    snapped = np.where(pos >= 0, candidates[np.clip(pos, 0, None)], -1)
    cuts = np.where((snapped >= nominal - window) & (snapped > 0) & (window > 0), snapped, nominal)
    return np.concatenate([[0], cuts]).astype(np.int64)


_SPACE_CODES = np.array([ord(c) for c in " \t\n\r\x0b\x0c\u00a0\u2009\u200a\u202f\u3000"], dtype=np.uint32)


def segment_batch(
    contexts: Sequence[Sequence[str]],
    tokenizer: PreTrainedTokenizerBase,
    segment_tokens: int,
    word_snap_window: int = 8,
    pad_id: int | None = None,
) -> SegmentedBatch:
    """Tokenize every document once and cut all contexts of a batch into segments."""
    flat_docs = [doc for docs in contexts for doc in docs]
    enc = tokenizer(flat_docs, add_special_tokens=False, return_offsets_mapping=True)
    sep = tokenizer(DOCUMENT_SEPARATOR, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if pad_id is None else pad_id
    if pad is None:
        pad = 0

    token_chunks: list[np.ndarray] = []
    seg_starts: list[np.ndarray] = []
    seg_example: list[np.ndarray] = []
    seg_document: list[np.ndarray] = []
    char_start: list[np.ndarray] = []
    char_end: list[np.ndarray] = []
    offset = 0
    flat_index = 0
    for ex, docs in enumerate(contexts):
        for d, text in enumerate(docs):
            ids = np.asarray(enc["input_ids"][flat_index], dtype=np.int64)
            offsets = np.asarray(enc["offset_mapping"][flat_index], dtype=np.int64).reshape(-1, 2)
            flat_index += 1
            if len(ids) == 0:
                raise InputError(f"document {d} of context {ex} has no tokens")
            cuts = cut_points(offsets[:, 0], text, segment_tokens, word_snap_window)
            starts_char = offsets[cuts, 0].copy()
            starts_char[0] = 0
            ends_char = np.append(starts_char[1:], len(text))
            if d < len(docs) - 1:
                ids = np.concatenate([ids, np.asarray(sep, dtype=np.int64)])
            token_chunks.append(ids)
            seg_starts.append(cuts + offset)
            offset += len(ids)
            seg_example.append(np.full(len(cuts), ex))
            seg_document.append(np.full(len(cuts), d))
            char_start.append(starts_char)
            char_end.append(ends_char)

    all_ids = torch.from_numpy(np.concatenate(token_chunks))
    first = torch.from_numpy(np.concatenate(seg_starts))
    # Chunks are contiguous, so a segment ends where the next one begins.
    last = torch.from_numpy(np.append(np.concatenate(seg_starts)[1:], offset))
    lengths = last - first
    width = int(lengths.max())
    gather = first[:, None] + torch.arange(width)[None, :]  # [N, S]
    mask = torch.arange(width)[None, :] < lengths[:, None]
    ids = torch.where(mask, all_ids[gather.clamp(max=len(all_ids) - 1)], torch.full_like(gather, pad))
    return SegmentedBatch(
        ids=ids,
        mask=mask,
        lengths=lengths,
        example=torch.from_numpy(np.concatenate(seg_example)),
        document=torch.from_numpy(np.concatenate(seg_document)),
        start=torch.from_numpy(np.concatenate(char_start)),
        end=torch.from_numpy(np.concatenate(char_end)),
        num_examples=len(contexts),
    )
