"""Segmentation: spans tile documents, tokens are exact slices, cuts snap to word starts."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ram.segment import DOCUMENT_SEPARATOR, InputError, cut_points, normalize_context, segment_batch

SPACES = " \t\n\r\x0b\x0c"
PIECES = ["a", "b", "cd", "é", "日本", "ab", "éa", "x"]
SEPARATORS = [" ", "  ", "\n", " \n", "\n\n"]

word = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join)
any_text_st = st.lists(st.one_of(word, word, st.sampled_from(SEPARATORS)), min_size=1, max_size=40).map(
    "".join
).filter(lambda s: s.strip() != "")
# The property tests use texts with at least one interior space; texts without any word start
# after the first token are covered by test_document_without_spaces (a known crash).
text_st = any_text_st.filter(lambda s: re.search(r"\S\s+\S", s) is not None)
context_st = st.lists(text_st, min_size=1, max_size=3)
config_st = st.sampled_from([(2, 0), (3, 0), (4, 1), (5, 2), (8, 2), (8, 3), (8, 0), (12, 5)])

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _sep_ids(tokenizer) -> list[int]:
    return tokenizer(DOCUMENT_SEPARATOR, add_special_tokens=False)["input_ids"]


def _word_starts(text: str, starts: np.ndarray) -> np.ndarray:
    """Reference: a token starts a word when it begins a new character that follows whitespace
    (or is whitespace itself)."""
    out = np.zeros(len(starts), dtype=bool)
    for t, s in enumerate(starts):
        if t > 0 and s <= starts[t - 1]:
            continue
        prev_space = s == 0 or text[s - 1] in SPACES
        at_space = s < len(text) and text[s] in SPACES
        out[t] = prev_space or at_space
    return out


def _per_context(batch, b: int) -> list[tuple]:
    rows = torch.nonzero(batch.example == b).flatten().tolist()
    return [
        (
            int(batch.document[i]), int(batch.start[i]), int(batch.end[i]), int(batch.lengths[i]),
            batch.ids[i][batch.mask[i]].tolist(),
        )
        for i in rows
    ]


@SETTINGS
@given(context=context_st, cfg=config_st)
def test_segments_tile_documents_and_tokens(tokenizer, context: list[str], cfg: tuple[int, int]) -> None:
    seg_tokens, window = cfg
    batch = segment_batch([context], tokenizer, seg_tokens, window)
    sep = _sep_ids(tokenizer)
    assert batch.num_examples == 1
    assert torch.equal(batch.lengths, batch.mask.sum(1))
    assert bool((batch.lengths >= 1).all())
    # padding is right padding with the pad id
    assert bool((batch.ids[~batch.mask] == tokenizer.pad_token_id).all())
    segs = _per_context(batch, 0)
    docs_seen = [d for d, *_ in segs]
    assert docs_seen == sorted(docs_seen), "segments must follow document order"
    assert sorted(set(docs_seen)) == list(range(len(context)))
    for d, doc in enumerate(context):
        mine = [s for s in segs if s[0] == d]
        # spans tile the document exactly, in order, without crossing documents
        assert mine[0][1] == 0 and mine[-1][2] == len(doc)
        for (_, _, end, _, _), (_, start, _, _, _) in zip(mine, mine[1:]):
            assert end == start
        assert "".join(doc[s:e] for _, s, e, _, _ in mine) == doc
        # tokens are exact slices of one tokenization (+ separator between documents)
        expected = tokenizer(doc, add_special_tokens=False)["input_ids"]
        if d < len(context) - 1:
            expected = expected + sep
        assert [t for *_, ids in mine for t in ids] == expected
        # one segment per nominal cut; lengths bounded
        n_doc = len(tokenizer(doc, add_special_tokens=False)["input_ids"])
        assert len(mine) == max(1, -(-n_doc // seg_tokens))
        for k, (_, _, _, length, _) in enumerate(mine):
            bound = seg_tokens + window
            if k == len(mine) - 1 and d < len(context) - 1:
                bound += len(sep)
            assert 1 <= length <= bound


@SETTINGS
@given(text=text_st, cfg=config_st)
def test_cuts_snap_to_word_starts(tokenizer, text: str, cfg: tuple[int, int]) -> None:
    """Each cut is the nominal cut moved back by at most ``window`` tokens to the nearest word
    start; with no word start in that window the nominal cut is kept."""
    seg_tokens, window = cfg
    starts = np.asarray(
        [s for s, _ in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]],
        dtype=np.int64,
    )
    cuts = cut_points(starts, text, seg_tokens, window)
    n = len(starts)
    nominal = list(range(seg_tokens, n, seg_tokens))
    assert cuts[0] == 0 and len(cuts) == len(nominal) + 1
    assert all(a < b for a, b in zip(cuts, cuts[1:])), "cuts must be strictly increasing"
    is_start = _word_starts(text, starts)
    for cut, nom in zip(cuts[1:], nominal):
        in_window = [t for t in range(max(1, nom - window), nom + 1) if is_start[t]] if window > 0 else []
        if in_window:
            assert cut == max(in_window), (text, starts.tolist(), nom, cut)
        else:
            assert cut == nom


def test_cut_window_reaches_back_window_tokens() -> None:
    """A word start exactly ``window`` tokens before the nominal cut is within reach."""
    text = "ab cdefgh"
    # tokens: "a" "b" " " "cd" "e" "f" "g" "h" -> word start at token 3 ("cd", after the space)
    starts = np.array([0, 1, 2, 3, 5, 6, 7, 8])
    assert cut_points(starts, text, 5, 2).tolist() == [0, 3]  # nominal 5, word start 5 - 2
    assert cut_points(starts, text, 4, 1).tolist() == [0, 3]  # nominal 4, word start 4 - 1
    assert cut_points(starts, text, 6, 2).tolist() == [0, 6]  # word start 3 tokens back: out of reach
    assert cut_points(starts, text, 5, 0).tolist() == [0, 5]  # window 0: never move


@pytest.mark.parametrize("text", ["a" * 40, "日本" * 12, "https://example.com/abcdefghijklmnop"])
def test_document_without_spaces(tokenizer, text: str) -> None:
    """No word start to snap to: every cut stays nominal (must not crash)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    batch = segment_batch([[text]], tokenizer, 8, 2)
    assert batch.lengths.tolist() == [8] * (len(ids) // 8) + ([len(ids) % 8] if len(ids) % 8 else [])
    assert batch.ids[batch.mask].tolist() == ids
    assert "".join(text[s:e] for s, e in zip(batch.start.tolist(), batch.end.tolist())) == text


def test_short_document_is_one_segment(tokenizer) -> None:
    batch = segment_batch([["hi"]], tokenizer, 8, 2)
    assert batch.num_segments == 1
    assert batch.start.tolist() == [0] and batch.end.tolist() == [2]
    assert batch.original_tokens().tolist() == [len(tokenizer("hi", add_special_tokens=False)["input_ids"])]


@SETTINGS
@given(contexts=st.lists(context_st, min_size=2, max_size=4), cfg=config_st)
def test_batch_equals_one_at_a_time(tokenizer, contexts: list[list[str]], cfg: tuple[int, int]) -> None:
    seg_tokens, window = cfg
    batch = segment_batch(contexts, tokenizer, seg_tokens, window)
    assert batch.num_examples == len(contexts)
    for b, context in enumerate(contexts):
        single = segment_batch([context], tokenizer, seg_tokens, window)
        assert _per_context(batch, b) == _per_context(single, 0)
        assert int(batch.original_tokens()[b]) == int(single.original_tokens()[0])
        assert int(batch.segments_per_example()[b]) == single.num_segments


def test_normalize_context() -> None:
    assert normalize_context("one doc") == ["one doc"]
    assert normalize_context(["a", "b"]) == ["a", "b"]
    assert normalize_context(("a", "b")) == ["a", "b"]


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ([], "empty"),
        (["fine", ""], "document 1"),
        (["fine", "  \n"], "document 1"),
        (["fine", 3], "document 1"),
        ([b"bytes"], "document 0"),
        ([None], "document 0"),
    ],
)
def test_bad_contexts_raise_input_error(bad, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        normalize_context(bad)


def test_input_error_is_value_error() -> None:
    assert issubclass(InputError, ValueError)
