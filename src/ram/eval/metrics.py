"""Answer-quality metrics for open-domain QA, plus bootstrap confidence intervals.

The headline metric of RAM (arXiv 2602.01840) is reported as "EM" but is the
"Lost in the Middle" ``best_subspan_em``: a prediction counts as correct when any
normalised gold answer occurs inside the normalised prediction. Here that metric is
``substring_accuracy``; ``exact_match`` is the strict SQuAD EM. ``f1_first`` scores
against only the first gold answer, as the official RAM code does, so numbers can be
compared with the paper; ``token_f1`` takes the max over all gold answers (SQuAD style).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

from ..data.positives import normalize_answer  # one definition for data filtering and scoring

logger = logging.getLogger(__name__)

__all__ = [
    "normalize_answer",
    "substring_accuracy",
    "exact_match",
    "token_f1",
    "f1_first",
    "rouge_l",
    "score_all",
    "bootstrap_ci",
]

# Upper bound on resample-matrix elements held at once, so large n stays cheap in memory.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def _check_answers(answers: Sequence[str] | str) -> list[str]:
    """Return gold answers as a list; a bare string is one answer, an empty list is an error."""
    if isinstance(answers, str):
        return [answers]
    golds = list(answers)
    if not golds:
        raise ValueError("answers must contain at least one gold answer (got an empty list)")
    return golds


def substring_accuracy(prediction: str, answers: Sequence[str] | str) -> float:
    """1.0 if any normalised gold answer is a substring of the normalised prediction.

    This is ``best_subspan_em`` from "Lost in the Middle" and the paper's "EM".
    """
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(gold) in pred for gold in _check_answers(answers)))


def exact_match(prediction: str, answers: Sequence[str] | str) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer (strict SQuAD EM)."""
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(gold) == pred for gold in _check_answers(answers)))


def _f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of one prediction against one gold answer.

    If either side normalises to no tokens, the score is 1.0 only when both do
    (the SQuAD v2 convention), so an exact match always has F1 1.0.
    """
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str] | str) -> float:
    """Token-level F1, max over all gold answers."""
    return max(_f1(prediction, gold) for gold in _check_answers(answers))


def f1_first(prediction: str, answers: Sequence[str] | str) -> float:
    """Token-level F1 against only the first gold answer (as in the official RAM code)."""
    return _f1(prediction, _check_answers(answers)[0])


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> rouge_scorer.RougeScorer:
    """One shared ROUGE-L scorer; building it loads the Porter stemmer."""
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, answers: Sequence[str] | str) -> float:
    """ROUGE-L F-measure (stemmed), max over gold answers.

    rouge-score's tokenizer keeps only ASCII letters and digits, so text with no such
    characters scores 0.0.
    """
    scorer = _rouge_scorer()
    return max(scorer.score(gold, prediction)["rougeL"].fmeasure for gold in _check_answers(answers))


def score_all(prediction: str, answers: Sequence[str] | str) -> dict[str, float]:
    """All metrics for one prediction: accuracy, em, f1, f1_first, rouge_l."""
    golds = _check_answers(answers)
    return {
        "accuracy": substring_accuracy(prediction, golds),
        "em": exact_match(prediction, golds),
        "f1": token_f1(prediction, golds),
        "f1_first": f1_first(prediction, golds),
        "rouge_l": rouge_l(prediction, golds),
    }


def bootstrap_ci(
    values: Sequence[float],
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval of the mean; deterministic in ``seed``."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("bootstrap_ci needs at least one value (got an empty sequence)")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap_ci values must be finite")
    n = arr.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    means = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    logger.debug("bootstrap_ci n=%d resamples=%d alpha=%g -> [%g, %g]", n, n_resamples, alpha, lo, hi)
    return float(lo), float(hi)
