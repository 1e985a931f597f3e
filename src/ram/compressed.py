"""Result types: what a segment is, what compression produces, what answering returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Segment:
    """One segment of the context. ``documents[document][start:end]`` is exactly its text."""

    index: int
    document: int
    start: int
    end: int
    tokens: int
    score: float
    kept: bool
    dropped: bool = False  # neither read nor skimmed (skims capped by max_skim_share)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "document": self.document,
            "start": self.start,
            "end": self.end,
            "tokens": self.tokens,
            "score": round(self.score, 6),
            "kept": self.kept,
            "dropped": self.dropped,
        }


@dataclass
class CompressedContext:
    """A hybrid decoder input for one (context, question) pair.

    ``inputs_embeds`` [1, T, H] holds the whole prompt: template prefix, kept token embeddings
    and skim vectors in original order, then the question part. ``context_span`` gives the
    [start, end) positions of the context part inside T.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor  # [1, T] bool
    segments: list[Segment]
    documents: list[str]
    question: str
    context_span: tuple[int, int]
    stats: dict[str, Any] = field(default_factory=dict)
    skim_marker: str = " [...] "

    @property
    def compressed_length(self) -> int:
        return self.context_span[1] - self.context_span[0]

    def segment_map(self, read: str = "#", skim: str = ".", drop: str = "_") -> str:
        """One character per segment (``#`` close-read, ``.`` skimmed, ``_`` dropped), ``|``
        between documents."""
        out: list[str] = []
        for i, seg in enumerate(self.segments):
            if i and seg.document != self.segments[i - 1].document:
                out.append("|")
            out.append(read if seg.kept else drop if seg.dropped else skim)
        return "".join(out)

    def to_text(self) -> str:
        """Close-read view: kept text verbatim, each run of skimmed segments as one marker.

        Usable as a compressed prompt for any text-only LLM.
        """
        parts: list[str] = []
        for i, seg in enumerate(self.segments):
            if i and seg.document != self.segments[i - 1].document:
                parts.append("\n\n")
            if seg.kept:
                parts.append(self.documents[seg.document][seg.start : seg.end])
            elif not parts or parts[-1] != self.skim_marker:
                parts.append(self.skim_marker)
        return "".join(parts).strip()

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``ram compress``."""
        return {
            "original_tokens": self.stats["original_tokens"],
            "compressed_length": self.compressed_length,
            "target_ratio": self.stats.get("target_ratio"),
            "keep_ratio": self.stats.get("keep_ratio"),
            "achieved_ratio": self.stats["achieved_ratio"],
            "kept_segments": sum(s.kept for s in self.segments),
            "dropped_segments": sum(s.dropped for s in self.segments),
            "num_segments": len(self.segments),
            "segments": [s.to_dict() for s in self.segments],
            "text": self.to_text(),
            "timings": {k: round(v, 6) for k, v in self.stats.get("timings", {}).items()},
        }


@dataclass
class Answer:
    """A generated answer with the compressed context it was generated from."""

    text: str
    compressed: CompressedContext | None
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = self.compressed.to_json() if self.compressed is not None else {}
        data["answer"] = self.text
        data["timings"] = {k: round(v, 6) for k, v in self.timings.items()}
        return data
