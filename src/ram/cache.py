"""Reuse of segment encodings across questions.

RAM encodes every segment without the question, so a segment's encoder states are the same
whatever is asked. A RAG system that asks many questions over the same passages can encode
each passage once: the cache maps a segment's token ids to its states and the encoder then
runs only on the question and on segments it has not seen.

Entries are trimmed to the segment's real tokens and evicted least-recently-used once the
total cached tokens exceed ``max_tokens``. The cache belongs to one model's weights: clear it
after changing them (``RAMModel`` never reads it while gradients are on).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

logger = logging.getLogger(__name__)


class SegmentStateCache:
    """LRU map from segment token ids to encoder states ``[length, H]``."""

    def __init__(self, max_tokens: int = 262_144) -> None:
        if int(max_tokens) != max_tokens or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        self.max_tokens = int(max_tokens)
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._tokens = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        """Tokens whose states are held now."""
        return self._tokens

    def clear(self) -> None:
        self._entries.clear()
        self._tokens = 0

    @staticmethod
    def keys(ids: torch.Tensor, lengths: torch.Tensor) -> list[bytes]:
        """One key per row of right-padded ``ids`` [N, S]: the bytes of its real tokens."""
        rows = ids.detach().cpu().numpy()
        return [rows[i, :n].tobytes() for i, n in enumerate(lengths.tolist())]

    def lookup(self, keys: list[bytes]) -> torch.Tensor:
        """[N] bool: which keys are cached (and marks them recently used)."""
        found = []
        for key in keys:
            hit = key in self._entries
            if hit:
                self._entries.move_to_end(key)
            found.append(hit)
        hit_count = sum(found)
        self.hits += hit_count
        self.misses += len(keys) - hit_count
        return torch.tensor(found, dtype=torch.bool)

    def gather(self, keys: list[bytes], width: int) -> torch.Tensor:
        """[M, width, H] states of cached ``keys``, zero beyond each segment's length."""
        padded = pad_sequence([self._entries[k] for k in keys], batch_first=True)  # [M, max len, H]
        return F.pad(padded, (0, 0, 0, width - padded.shape[1]))

    def put(self, keys: list[bytes], states: torch.Tensor, lengths: torch.Tensor) -> None:
        """Store [M, S, H] ``states`` (trimmed to ``lengths``) under ``keys``; evict to the bound."""
        for key, row, n in zip(keys, states.detach(), lengths.tolist()):
            if key in self._entries or n > self.max_tokens:
                continue
            self._entries[key] = row[:n].clone()
            self._tokens += n
        while self._tokens > self.max_tokens and self._entries:
            _, old = self._entries.popitem(last=False)
            self._tokens -= old.shape[0]
