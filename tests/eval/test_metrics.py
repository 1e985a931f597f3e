"""Tests for ram.eval.metrics: hand-computed values and properties."""

from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ram.eval.metrics import (
    bootstrap_ci,
    exact_match,
    f1_first,
    normalize_answer,
    rouge_l,
    score_all,
    substring_accuracy,
    token_f1,
)


def test_normalize_answer_articles_punctuation_whitespace() -> None:
    assert normalize_answer("The  Cat,  sat on A mat!") == "cat sat on mat"
    assert normalize_answer("An apple... the END") == "apple end"
    # Articles only as whole words; punctuation removed before article stripping (SQuAD order).
    assert normalize_answer("Theatre and anarchy") == "theatre and anarchy"
    assert normalize_answer("the-end") == "theend"
    assert normalize_answer("  \t\n ") == ""


def test_exact_match() -> None:
    assert exact_match("The Beatles!", ["beatles"]) == 1.0
    assert exact_match("the beatles band", ["beatles"]) == 0.0
    assert exact_match("Paris", ["London", "paris."]) == 1.0


def test_substring_accuracy() -> None:
    assert substring_accuracy("I think it was the Beatles, in 1962.", ["The Beatles"]) == 1.0
    assert substring_accuracy("Rolling Stones", ["The Beatles"]) == 0.0
    assert substring_accuracy("Answer: Wilhelm Conrad Röntgen", ["Röntgen", "Einstein"]) == 1.0
    # A bare string is one gold answer, not a list of characters.
    assert substring_accuracy("xyz", "q") == 0.0


def test_token_f1_partial_overlap() -> None:
    # pred tokens [cat, sat]; gold [cat, sat, on, mat]: P=1, R=1/2, F1=2/3.
    assert token_f1("The cat sat", ["cat sat on the mat"]) == pytest.approx(2 / 3)
    # pred [x b c] vs gold [b c d e]: common 2, P=2/3, R=1/2, F1=4/7.
    assert token_f1("x b c", ["b c d e"]) == pytest.approx(4 / 7)
    assert token_f1("dog", ["cat"]) == 0.0
    # Repeated tokens are counted with multiplicity: [cat cat] vs [cat]: P=1/2, R=1, F1=2/3.
    assert token_f1("cat cat", ["cat"]) == pytest.approx(2 / 3)


def test_f1_max_over_answers_vs_first() -> None:
    answers = ["dog", "the cat sat"]
    assert token_f1("cat sat", answers) == 1.0
    assert f1_first("cat sat", answers) == 0.0
    assert f1_first("a dog", answers) == 1.0


def test_f1_empty_normalised_sides() -> None:
    assert token_f1("the", ["a"]) == 1.0  # both normalise to nothing
    assert token_f1("", ["cat"]) == 0.0
    assert token_f1("cat", ["!!!"]) == 0.0


def test_rouge_l() -> None:
    assert rouge_l("Charles Darwin wrote it", ["Charles Darwin wrote it"]) == pytest.approx(1.0)
    assert rouge_l("totally unrelated", ["Charles Darwin"]) == 0.0
    # LCS = 1 of 2 pred tokens and 1 of 1 gold token: P=1/2, R=1, F=2/3; max over answers.
    assert rouge_l("Darwin wrote", ["Wallace", "Darwin"]) == pytest.approx(2 / 3)
    # Stemming: "cats" and "cat" match.
    assert rouge_l("cats", ["cat"]) == pytest.approx(1.0)


def test_score_all_keys_and_values() -> None:
    scores = score_all("It was Charles Darwin.", ["Charles Darwin", "Darwin"])
    assert set(scores) == {"accuracy", "em", "f1", "f1_first", "rouge_l"}
    assert scores["accuracy"] == 1.0
    assert scores["em"] == 0.0
    # pred [it was charles darwin] vs [charles darwin]: P=1/2, R=1 -> 2/3.
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["f1_first"] == pytest.approx(2 / 3)
    assert scores["rouge_l"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("fn", [substring_accuracy, exact_match, token_f1, f1_first, rouge_l, score_all])
def test_empty_answers_raise(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least one gold answer"):
        fn("anything", [])


def test_bootstrap_ci_deterministic_and_contains_mean() -> None:
    rng = np.random.default_rng(123)
    values = (rng.random(300) < 0.3).astype(float).tolist()
    a = bootstrap_ci(values, seed=7)
    b = bootstrap_ci(values, seed=7)
    assert a == b
    lo, hi = a
    mean = float(np.mean(values))
    assert 0.0 <= lo < mean < hi <= 1.0
    # Roughly +-1.96 * sqrt(p(1-p)/n) ~ +-0.05 for p=0.3, n=300.
    assert 0.07 < hi - lo < 0.14
    assert bootstrap_ci(values, seed=8) != a


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    narrow = bootstrap_ci([0.0, 1.0] * 50, alpha=0.5)
    wide = bootstrap_ci([0.0, 1.0] * 50, alpha=0.01)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], n_resamples=0)


_ascii_text = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=40)
_any_text = st.text(max_size=40)
_answers = st.lists(_any_text, min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(prediction=_any_text, answers=_answers)
def test_metric_properties(prediction: str, answers: list[str]) -> None:
    s = score_all(prediction, answers)
    for key, value in s.items():
        assert 0.0 <= value <= 1.0, key
    assert s["accuracy"] in (0.0, 1.0)
    assert s["em"] in (0.0, 1.0)
    assert s["f1"] >= s["f1_first"]
    assert s["em"] <= s["accuracy"]
    if s["em"] == 1.0:
        assert s["accuracy"] == 1.0
        assert s["f1"] == 1.0


@settings(max_examples=100, deadline=None)
@given(prediction=_ascii_text, gold=_ascii_text)
def test_appending_gold_makes_prediction_correct(prediction: str, gold: str) -> None:
    assert substring_accuracy(prediction + " " + gold, [gold]) == 1.0
    assert substring_accuracy(gold, [gold]) == 1.0
    assert exact_match(gold, [gold]) == 1.0
    assert token_f1(gold, [gold]) == 1.0


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=50), seed=st.integers(0, 2**32 - 1))
def test_bootstrap_bounds_within_data_range(values: list[float], seed: int) -> None:
    lo, hi = bootstrap_ci(values, n_resamples=200, seed=seed)
    assert min(values) - 1e-12 <= lo <= hi <= max(values) + 1e-12
    assert bootstrap_ci(values, n_resamples=200, seed=seed) == (lo, hi)
