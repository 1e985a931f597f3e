"""Tests for ram.data.positives: answer normalisation, answer spans and positive segment masks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ram.data.example import Example
from ram.data.positives import (
    answer_char_spans,
    normalize_answer,
    overlaps,
    positive_mask,
    positive_spans,
)
from ram.data.readers import format_document

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The  Beatles!", "beatles"),
        ("  A Tale of Two Cities ", "tale of two cities"),
        ("U.S.A.", "usa"),
        ("May 18, 2018", "may 18 2018"),
        ("theatre an anchor", "theatre anchor"),
        ("Röntgen", "röntgen"),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalize_answer_matches_eval_metrics() -> None:
    metrics = pytest.importorskip("ram.eval.metrics")
    for s in ["The Who?", "an  Apple, a day", "U.S. 1-2-3 — ok", "Ärger the END"]:
        assert normalize_answer(s) == metrics.normalize_answer(s)


def test_answer_char_spans_basic() -> None:
    doc = "In 1910, the 10 Downing\n  Street office; 10 downing street. Ten."
    spans = answer_char_spans(doc, ["10 Downing Street"])
    assert [doc[s:e] for s, e in spans] == ["10 Downing\n  Street", "10 downing street"]
    first, second = doc.index("10 D"), doc.index("10 d")
    assert answer_char_spans(doc, ["10"]) == [(first, first + 2), (second, second + 2)]  # not in 1910


def test_answer_char_spans_punctuation_edges_and_multiple_answers() -> None:
    doc = "The U.S. army and the u.s. navy; USA"
    spans = answer_char_spans(doc, ["U.S.", "USA", "  ", ""])
    assert [doc[s:e] for s, e in spans] == ["U.S.", "u.s.", "USA"]
    assert answer_char_spans(doc, []) == []
    assert answer_char_spans(doc, ["   "]) == []


def test_answer_char_spans_reports_overlapping_occurrences() -> None:
    assert answer_char_spans("a a a", ["a a"]) == [(0, 3), (2, 5)]


def test_answer_char_spans_original_offsets_with_unicode() -> None:
    doc = "Prize — awarded to Wilhelm Conrad RÖNTGEN, of Germany"
    ((s, e),) = answer_char_spans(doc, ["Wilhelm Conrad Röntgen"])
    assert doc[s:e] == "Wilhelm Conrad RÖNTGEN"


# --- property tests --------------------------------------------------------------------------

WORDS = st.text(alphabet="abcxyzÉé019.,-'", min_size=1, max_size=6).filter(lambda w: w.strip())
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t ", " , ", ". "])


@st.composite
def doc_with_answer(draw: st.DrawFn) -> tuple[str, str, int]:
    """A document of random words with an answer inserted between separators."""
    answer_words = draw(st.lists(WORDS, min_size=1, max_size=3))
    answer = draw(SEPARATORS).join(answer_words) if len(answer_words) > 1 else answer_words[0]
    before = draw(st.lists(WORDS, max_size=8))
    after = draw(st.lists(WORDS, max_size=8))
    sep = draw(SEPARATORS)
    prefix = sep.join(before) + (" " if before else "")
    shown = "".join(c.upper() if draw(st.booleans()) else c for c in answer)
    shown = " \n ".join(shown.split(" "))  # different whitespace inside the occurrence
    doc = prefix + shown + (" " if after else "") + sep.join(after)
    return doc, answer.strip(), len(prefix)


@FAST
@given(doc_with_answer())
def test_inserted_answer_is_found_and_slices_back(case: tuple[str, str, int]) -> None:
    doc, answer, position = case
    spans = answer_char_spans(doc, [answer])
    assert any(s == position for s, _ in spans), (doc, answer, spans)
    for s, e in spans:
        assert normalize_answer(doc[s:e]) == normalize_answer(answer)
        assert not doc[s:e][0].isspace() and not doc[s:e][-1].isspace()


def reference_spans(doc: str, answer: str) -> list[tuple[int, int]]:
    """Brute force: every (start, end) where the answer's tokens occur, whitespace-flexible."""
    tokens = answer.lower().split()
    if not tokens:
        return []
    low = doc.lower()
    is_word = lambda c: c.isalnum() or c == "_"  # noqa: E731
    found = []
    for i in range(len(doc)):
        if is_word(tokens[0][0]) and i > 0 and is_word(doc[i - 1]):
            continue
        pos, ok = i, True
        for k, tok in enumerate(tokens):
            if k:
                ws = pos
                while ws < len(doc) and doc[ws].isspace():
                    ws += 1
                if ws == pos:
                    ok = False
                    break
                pos = ws
            if low[pos:pos + len(tok)] != tok:
                ok = False
                break
            pos += len(tok)
        if ok and not (is_word(tokens[-1][-1]) and pos < len(doc) and is_word(doc[pos])):
            found.append((i, pos))
    return found


SMALL_DOC = st.text(alphabet="aAb .\n", max_size=30)
SMALL_ANSWER = st.text(alphabet="ab. ", min_size=1, max_size=5)


@FAST
@given(SMALL_DOC, st.lists(SMALL_ANSWER, max_size=3))
def test_answer_char_spans_matches_brute_force(doc: str, answers: list[str]) -> None:
    expected = sorted({sp for a in answers for sp in reference_spans(doc, a)})
    assert answer_char_spans(doc, answers) == expected


@st.composite
def example_and_segments(draw: st.DrawFn) -> tuple[Example, list[tuple[int, int, int]]]:
    docs = draw(st.lists(SMALL_DOC.filter(lambda d: d.strip()), min_size=1, max_size=3))
    answers = draw(st.lists(SMALL_ANSWER, max_size=2))
    gold = []
    for _ in range(draw(st.integers(0, 3))):
        d = draw(st.integers(0, len(docs) - 1))
        s = draw(st.integers(0, len(docs[d]) - 1))
        gold.append((d, s, draw(st.integers(s + 1, len(docs[d])))))
    segments = []
    for _ in range(draw(st.integers(0, 8))):
        d = draw(st.integers(0, len(docs) - 1))
        s = draw(st.integers(0, len(docs[d])))
        segments.append((d, s, draw(st.integers(s, len(docs[d])))))
    return Example("x", "q?", answers, docs, gold), segments


def brute_force_mask(ex: Example, segments: Sequence[tuple[int, int, int]], match_answers: bool) -> list[bool]:
    """A segment is positive iff one of its characters is covered by an evidence span."""
    covered: set[tuple[int, int]] = set()
    for d, doc in enumerate(ex.documents):
        if match_answers:
            for a in ex.answers:
                for s, e in reference_spans(doc, a):
                    covered.update((d, c) for c in range(s, e))
    for d, s, e in ex.gold_spans:
        covered.update((d, c) for c in range(s, e))
    return [any((d, c) in covered for c in range(s, e)) for d, s, e in segments]


@FAST
@given(example_and_segments(), st.booleans())
def test_positive_mask_matches_brute_force(case: tuple[Example, list], match_answers: bool) -> None:
    ex, segments = case
    assert positive_mask(ex, segments, match_answers=match_answers) == brute_force_mask(
        ex, segments, match_answers
    )


# --- positive_mask / positive_spans examples ---------------------------------------------------


def test_overlaps_needs_positive_length() -> None:
    assert overlaps(0, 5, 4, 9)
    assert not overlaps(0, 5, 5, 9)  # touching is not overlapping
    assert not overlaps(3, 3, 0, 9)  # empty interval
    assert overlaps(2, 3, 0, 9)


def test_positive_mask_answers_and_gold_spans() -> None:
    docs = ["Paris is the capital of France.", "Berlin is in Germany. Bonn was the capital."]
    ex = Example("x", "capital of France?", ["Paris"], docs, gold_spans=[(1, 22, 43)])
    segments = [(0, 0, 5), (0, 5, 31), (0, 3, 8), (1, 0, 21), (1, 21, 43), (1, 0, 22)]
    assert positive_mask(ex, segments) == [True, False, True, False, True, False]
    assert positive_mask(ex, segments, match_answers=False) == [False, False, False, False, True, False]
    assert positive_spans(ex) == {0: [(0, 5)], 1: [(22, 43)]}
    assert positive_mask(ex, []) == []


def test_positive_mask_ignores_document_header() -> None:
    docs = [format_document(i + 1, f"T{i}", f"text {'abcd'[i]}") for i in range(4)]
    docs[1] = format_document(2, "Two", "the answer is 3 here")
    ex = Example("x", "q?", ["3"], docs)
    header_end = len("Document [3](Title: ")
    assert positive_mask(ex, [(2, 0, header_end)]) == [False]  # "Document [3]" is not evidence
    body = docs[1].index("3 here")
    assert positive_spans(ex) == {1: [(body, body + 1)]}
    titled = Example("x", "q?", ["Two"], docs)
    assert positive_spans(titled) == {1: [(len("Document [2](Title: "), len("Document [2](Title: Two"))]}


def test_positive_mask_leval_free_text_answers_are_all_false() -> None:
    ex = Example("1-0", "q?", ["A long free-form answer that is not in the text."],
                 ["Some document text."], meta={"source": "leval"})
    assert positive_mask(ex, [(0, 0, 4), (0, 4, 19)]) == [False, False]


@pytest.mark.parametrize("segment", [(1, 0, 1), (-1, 0, 1), (0, 3, 2), (0, 0, 99), (0, -1, 2)])
def test_positive_mask_rejects_out_of_range_segments(segment: tuple[int, int, int]) -> None:
    ex = Example("x", "q?", ["a"], ["a doc"])
    with pytest.raises(ValueError, match="segment"):
        positive_mask(ex, [segment])
