"""Which parts of a context are evidence: answer occurrences and gold spans.

Contrastive training needs to know which segments are *positive*: a segment that overlaps an
occurrence of a gold answer in its document (NQ, L-Eval) or a gold evidence span such as a
HotpotQA supporting-fact sentence. Answers are matched case-insensitively with flexible
whitespace and on word boundaries, and spans are reported in the original document's characters.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

from ram.data.example import Example

__all__ = [
    "normalize_answer",
    "answer_pattern",
    "answer_char_spans",
    "positive_spans",
    "positive_mask",
    "overlaps",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)
# The "Document [i](Title: " prefix of DPR-style documents (readers.format_document): an answer
# such as "3" must not make the header of document 3 positive.
_DOC_HEADER = re.compile(r"Document \[\d+\]\(Title: ")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace.

    Identical to the "Lost in the Middle" / SQuAD definition (and ``ram.eval.metrics``), so the
    "contains the answer" test used to pick distractors agrees with the evaluation metric.
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def answer_pattern(answer: str) -> re.Pattern[str] | None:
    """Regex matching ``answer`` case-insensitively with any whitespace between its tokens.

    A ``(?<!\\w)``/``(?!\\w)`` guard is added where the answer starts/ends with a word character,
    so "10" does not match inside "1910". Returns None for an empty or all-whitespace answer.
    """
    tokens = answer.split()
    if not tokens:
        return None
    body = r"\s+".join(re.escape(t) for t in tokens)
    first, last = tokens[0][0], tokens[-1][-1]
    prefix = r"(?<!\w)" if re.match(r"\w", first) else ""
    suffix = r"(?!\w)" if re.match(r"\w", last) else ""
    return re.compile(prefix + body + suffix, re.IGNORECASE)


def answer_char_spans(document: str, answers: Iterable[str]) -> list[tuple[int, int]]:
    """Every occurrence of any answer in ``document`` as sorted, distinct ``(start, end)`` spans.

    Overlapping occurrences are all reported ("a a" occurs twice in "a a a"), because the
    pattern is matched as a lookahead at every position.
    """
    spans: set[tuple[int, int]] = set()
    for answer in answers:
        pattern = answer_pattern(answer)
        if pattern is None:
            continue
        anywhere = re.compile(f"(?=({pattern.pattern}))", pattern.flags)
        spans.update(m.span(1) for m in anywhere.finditer(document))
    return sorted(spans)


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """True if half-open intervals ``[a_start, a_end)`` and ``[b_start, b_end)`` share a character."""
    return max(a_start, b_start) < min(a_end, b_end)


def positive_spans(example: Example, match_answers: bool = True) -> dict[int, list[tuple[int, int]]]:
    """Evidence spans per document index: answer occurrences (if ``match_answers``) and gold spans.

    Answer occurrences inside a ``Document [i](Title: `` header are ignored (the title itself
    still counts). Documents without evidence are absent from the result.
    """
    result: dict[int, list[tuple[int, int]]] = {}
    if match_answers:
        for d, doc in enumerate(example.documents):
            header = _DOC_HEADER.match(doc)
            body_start = header.end() if header else 0
            found = [sp for sp in answer_char_spans(doc, example.answers) if sp[0] >= body_start]
            if found:
                result[d] = found
    for d, s, e in example.gold_spans:
        result.setdefault(d, []).append((s, e))
    return {d: sorted(set(spans)) for d, spans in result.items()}


def positive_mask(
    example: Example,
    segments: Sequence[tuple[int, int, int]],
    match_answers: bool = True,
) -> list[bool]:
    """For each ``(document index, start, end)`` segment, whether it overlaps evidence.

    A segment is positive if it intersects (with positive length) an answer occurrence in its
    document or one of the example's gold spans. Pass ``match_answers=False`` to use gold spans
    only (e.g. HotpotQA, whose "yes"/"no" answers would otherwise match anywhere).
    Raises ``ValueError`` for a segment whose document index or offsets are out of range.
    """
    evidence = positive_spans(example, match_answers=match_answers)
    mask: list[bool] = []
    for segment in segments:
        d, s, e = segment
        if not 0 <= d < len(example.documents):
            raise ValueError(
                f"segment {tuple(segment)!r}: document index {d} out of range "
                f"(example {example.id!r} has {len(example.documents)} documents)"
            )
        if not 0 <= s <= e <= len(example.documents[d]):
            raise ValueError(
                f"segment {tuple(segment)!r}: need 0 <= start <= end <= {len(example.documents[d])}"
            )
        mask.append(any(overlaps(s, e, ps, pe) for ps, pe in evidence.get(d, ())))
    return mask
