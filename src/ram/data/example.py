"""The one in-memory record every reader produces: a question over a list of documents.

Readers of the different benchmark formats all convert to :class:`Example`, so segmentation,
training and evaluation only ever see this shape. ``to_dict``/``from_dict`` give the native
JSONL format (one ``to_dict()`` per line) used to store built datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Example"]


def _is_int(x: Any) -> bool:
    """True for real integers (``bool`` is excluded: ``True`` is not a character offset)."""
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class Example:
    """A question, its gold answers and the context documents it must be answered from.

    ``gold_spans`` are ``(document index, start char, end char)`` half-open character spans of
    gold evidence (e.g. HotpotQA supporting-fact sentences); ``meta`` holds JSON-serialisable
    extras such as ``{"gold_document": 3, "source": "nq"}``.
    """

    id: str
    question: str
    answers: list[str]
    documents: list[str]
    gold_spans: list[tuple[int, int, int]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate every field so a malformed example fails where it is made, not downstream."""
        if not isinstance(self.id, str):
            raise ValueError(f"id must be a string, got {type(self.id).__name__}")
        if not isinstance(self.question, str):
            raise ValueError(f"question must be a string, got {type(self.question).__name__}")
        if not self.question.strip():
            raise ValueError("question must be a non-empty string")
        if not isinstance(self.answers, (list, tuple)) or not all(
            isinstance(a, str) for a in self.answers
        ):
            raise ValueError("answers must be a list of strings")
        self.answers = list(self.answers)
        if not isinstance(self.documents, (list, tuple)):
            raise ValueError(f"documents must be a list of strings, got {type(self.documents).__name__}")
        if not self.documents:
            raise ValueError("an example needs at least one document")
        for i, doc in enumerate(self.documents):
            if not isinstance(doc, str):
                raise ValueError(f"document {i} must be a string, got {type(doc).__name__}")
            if not doc.strip():
                raise ValueError(f"document {i} is empty")
        self.documents = list(self.documents)
        if not isinstance(self.gold_spans, (list, tuple)):
            raise ValueError("gold_spans must be a list of (document, start, end) triples")
        spans: list[tuple[int, int, int]] = []
        for span in self.gold_spans:
            if not isinstance(span, (list, tuple)) or len(span) != 3 or not all(map(_is_int, span)):
                raise ValueError(f"gold span {span!r} must be three integers (document, start, end)")
            d, s, e = span
            if not 0 <= d < len(self.documents):
                raise ValueError(
                    f"gold span {tuple(span)!r}: document index {d} out of range "
                    f"(example has {len(self.documents)} documents)"
                )
            if not 0 <= s < e <= len(self.documents[d]):
                raise ValueError(
                    f"gold span {tuple(span)!r}: need 0 <= start < end <= {len(self.documents[d])} "
                    f"(length of document {d})"
                )
            spans.append((d, s, e))
        self.gold_spans = spans
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (gold spans as lists); inverse of :meth:`from_dict`."""
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "documents": list(self.documents),
            "gold_spans": [list(span) for span in self.gold_spans],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        """Build from a :meth:`to_dict` dict; ``answers``/``gold_spans``/``meta`` may be absent.

        Raises ``ValueError`` naming the missing field (``missing field 'question'``) or the
        invalid value.
        """
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        for name in ("id", "question", "documents"):
            if name not in d:
                raise ValueError(f"missing field '{name}'")
        return cls(
            id=d["id"],
            question=d["question"],
            answers=d.get("answers", []),
            documents=d["documents"],
            gold_spans=d.get("gold_spans", []),
            meta=d.get("meta", {}),
        )
