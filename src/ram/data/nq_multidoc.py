"""NaturalQuestions multi-document contexts, the RAM paper's "NaturalQA" setting.

Each example puts one question's gold passage among ``num_docs - 1`` distractors: gold passages
of *other* questions that do not contain any of this question's answers. Questions are split
into train/dev by a stable hash of the normalised question, and distractors come only from the
same split, so no dev text can leak into training contexts. Everything is seeded per question,
so an example does not depend on ``limit`` or on the other questions built with it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ram.data.example import Example
from ram.data.positives import answer_pattern, normalize_answer
from ram.data.readers import (
    DataError,
    PathLike,
    _field,
    _iter_jsonl,
    _nonempty_str,
    _str_list,
    format_document,
    write_examples,
)

logger = logging.getLogger(__name__)

__all__ = [
    "split_of",
    "build_nq_multidoc",
    "parse_docs_arg",
    "parse_gold_position",
    "write_examples",
]

SPLITS = ("all", "train", "dev")


def split_of(question: str, dev_fraction: float = 0.2) -> str:
    """``"train"`` or ``"dev"`` by a stable SHA-1 hash of the normalised question.

    Stable across processes and Python versions (unlike ``hash()``), and the same for questions
    that differ only in case, punctuation or articles.
    """
    if not 0.0 <= dev_fraction <= 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1], got {dev_fraction}")
    digest = hashlib.sha1(normalize_answer(question).encode("utf-8")).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2.0**64 < dev_fraction else "train"


def parse_docs_arg(value: str) -> int | tuple[int, int]:
    """Parse ``--docs``: ``"20"`` -> 20, ``"5-20"`` -> (5, 20) (inclusive range drawn per example)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
    if not m:
        raise ValueError(f"--docs must be N or LO-HI (e.g. 20 or 5-20), got {value!r}")
    lo = int(m.group(1))
    if m.group(2) is None:
        if lo < 1:
            raise ValueError(f"--docs must be >= 1, got {value!r}")
        return lo
    hi = int(m.group(2))
    if not 1 <= lo <= hi:
        raise ValueError(f"--docs range needs 1 <= LO <= HI, got {value!r}")
    return lo, hi


def parse_gold_position(value: str) -> int | str:
    """Parse ``--gold-position``: ``"random"`` or a 0-based index."""
    if value.strip().lower() == "random":
        return "random"
    try:
        position = int(value)
    except ValueError:
        raise ValueError(f"--gold-position must be 'random' or an index, got {value!r}") from None
    if position < 0:
        raise ValueError(f"--gold-position must be >= 0, got {value!r}")
    return position


@dataclass(frozen=True)
class _Passage:
    """A gold passage, with what is needed to test it for answer occurrences."""

    title: str
    text: str
    key: str  # normalised text: identity for de-duplication
    searchable: str  # normalised "title text": answer containment test


@dataclass(frozen=True)
class _Question:
    """One NQ record: question, answers, gold passage and split."""

    lineno: int
    question: str
    answers: tuple[str, ...]
    passage: _Passage
    split: str


def _load(path: Path, dev_fraction: float) -> list[_Question]:
    """Parse the NQ-open oracle file: the gold passage is the first ctx marked ``isgold``
    (else the first ctx)."""
    questions: list[_Question] = []
    for where, rec in _iter_jsonl(path):
        question = _nonempty_str(rec, "question", where)
        answers = _str_list(rec, "answers", where)
        if not any(a.strip() for a in answers):
            raise DataError(f"{where}: field 'answers' has no non-empty answer")
        ctxs = _field(rec, "ctxs", list, where)
        if not ctxs:
            raise DataError(f"{where}: empty context (field 'ctxs' has no passages)")
        if not all(isinstance(c, dict) for c in ctxs):
            raise DataError(f"{where}: field 'ctxs' must be a list of objects")
        gold = next((c for c in ctxs if c.get("isgold") is True), ctxs[0])
        cwhere = f"{where}: gold ctx"
        text = _nonempty_str(gold, "text", cwhere, "passage text")
        title = _field(gold, "title", str, cwhere) if "title" in gold else ""
        passage = _Passage(title, text, normalize_answer(text), normalize_answer(f"{title} {text}"))
        lineno = int(where.rsplit(":", 1)[1])
        questions.append(
            _Question(lineno, question, tuple(answers), passage, split_of(question, dev_fraction))
        )
    logger.info("loaded %d NQ questions from %s", len(questions), path)
    return questions


def _rng_for(seed: int, q: _Question) -> random.Random:
    """A generator seeded by the global seed and a stable hash of the question and its line."""
    material = f"{seed}\x00{q.lineno}\x00{normalize_answer(q.question)}".encode()
    return random.Random(int.from_bytes(hashlib.sha1(material).digest()[:8], "big"))


def _contains_answer(passage: _Passage, norm_answers: list[str], patterns: list[re.Pattern[str]]) -> bool:
    """True if the passage's title or text contains an answer (normalised or as a regex match)."""
    if any(a in passage.searchable for a in norm_answers):
        return True
    return any(p.search(passage.title) or p.search(passage.text) for p in patterns)


def _draw_distractors(
    q: _Question, pool: list[_Passage], k: int, rng: random.Random
) -> list[_Passage]:
    """``k`` distinct passages from ``pool``, none the gold one nor containing an answer.

    Rejection sampling (cheap: few passages contain a given answer), then a shuffled full scan
    if that stalls; raises ValueError if the pool cannot supply ``k`` valid passages.
    """
    norm_answers = [n for n in (normalize_answer(a) for a in q.answers) if n]
    patterns = [p for a in q.answers if normalize_answer(a) and (p := answer_pattern(a)) is not None]
    seen = {q.passage.key}
    chosen: list[_Passage] = []

    def consider(p: _Passage) -> None:
        if p.key in seen:
            return
        seen.add(p.key)
        if not _contains_answer(p, norm_answers, patterns):
            chosen.append(p)

    tries = 0
    while len(chosen) < k and tries < 20 * k + 100:
        tries += 1
        consider(pool[rng.randrange(len(pool))])
    if len(chosen) < k:
        order = list(range(len(pool)))
        rng.shuffle(order)
        for j in order:
            if len(chosen) == k:
                break
            consider(pool[j])
    if len(chosen) < k:
        raise ValueError(
            f"line {q.lineno}: only {len(chosen)} valid distractors for {q.question!r}, need {k} "
            "(use fewer documents or a larger split)"
        )
    return chosen


def build_nq_multidoc(
    path: PathLike,
    num_docs: int | tuple[int, int] = 20,
    gold_position: int | str = "random",
    seed: int = 0,
    split: str = "all",
    dev_fraction: float = 0.2,
    limit: int | None = None,
) -> list[Example]:
    """Multi-document NQ examples from an NQ-open oracle file (``nq-open-oracle.dev.jsonl.gz``).

    ``num_docs``: documents per example, or an inclusive ``(lo, hi)`` range drawn per example.
    ``gold_position``: ``"random"`` (uniform) or a 0-based index, clipped to ``num_docs - 1``.
    ``split``: ``"all"``, or ``"train"``/``"dev"`` by :func:`split_of`; questions *and*
    distractors come from that split only, and questions whose gold passage is also gold for a
    question of the other split are dropped, so no text is shared across splits. Documents are ``Document [i](Title: t) text``;
    ``meta`` has ``gold_document``, ``source="nq"``, ``split`` and ``num_docs``.
    """
    if isinstance(num_docs, bool) or not isinstance(num_docs, (int, tuple)):
        raise ValueError(f"num_docs must be an int or a (lo, hi) tuple, got {num_docs!r}")
    if isinstance(num_docs, int):
        if num_docs < 1:
            raise ValueError(f"num_docs must be >= 1, got {num_docs}")
    elif len(num_docs) != 2 or not 1 <= num_docs[0] <= num_docs[1]:
        raise ValueError(f"num_docs range must be (lo, hi) with 1 <= lo <= hi, got {num_docs!r}")
    if gold_position != "random" and (
        isinstance(gold_position, bool) or not isinstance(gold_position, int) or gold_position < 0
    ):
        raise ValueError(f"gold_position must be 'random' or an int >= 0, got {gold_position!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    questions = _load(Path(path), dev_fraction)
    if split != "all":
        # A passage that is gold for questions of both splits would leak dev text into training
        # (or training text into dev): drop those questions, and so the passage, from both.
        splits_of_passage: dict[str, set[str]] = {}
        for q in questions:
            splits_of_passage.setdefault(q.passage.key, set()).add(q.split)
        shared = {k for k, v in splits_of_passage.items() if len(v) > 1}
        in_split = [q for q in questions if q.split == split]
        questions = [q for q in in_split if q.passage.key not in shared]
        if len(questions) < len(in_split):
            logger.info("dropped %d %s questions whose gold passage is also gold for a question "
                        "of the other split", len(in_split) - len(questions), split)
    pool_by_key: dict[str, _Passage] = {}
    for q in questions:
        pool_by_key.setdefault(q.passage.key, q.passage)
    pool = list(pool_by_key.values())

    examples: list[Example] = []
    for q in questions:
        if limit is not None and len(examples) >= limit:
            break
        rng = _rng_for(seed, q)
        n = num_docs if isinstance(num_docs, int) else rng.randint(num_docs[0], num_docs[1])
        position = rng.randrange(n) if gold_position == "random" else min(int(gold_position), n - 1)
        passages = _draw_distractors(q, pool, n - 1, rng)
        passages.insert(position, q.passage)
        meta: dict[str, Any] = {"gold_document": position, "source": "nq", "split": q.split,
                                "num_docs": n}
        examples.append(
            Example(
                id=f"nq-{q.lineno}",
                question=q.question,
                answers=list(q.answers),
                documents=[format_document(i + 1, p.title, p.text) for i, p in enumerate(passages)],
                meta=meta,
            )
        )
    logger.info("built %d NQ multi-document examples (split=%s, num_docs=%s, gold_position=%s, "
                "seed=%d) from %d passages", len(examples), split, num_docs, gold_position, seed,
                len(pool))
    return examples
