"""Scores -> keep mask under an exact context budget.

A target ratio r gives each context B = ceil(L / r) decoder positions. Keeping segment i
costs its n_i tokens, skimming it costs one position, so a keep set K costs
sum_{i in K} n_i + (N - |K|). Segments are taken in score order while they fit; one that
does not fit is skipped and smaller, lower-scored ones may still fit.

Beyond the paper, skim vectors may be capped at a share s of the budget (``max_skim_share``):
where the rule above would leave more than floor(s * B) skims, segments are close-read under
B - floor(s * B) positions instead, the best-scored floor(s * B) of the rest are skimmed and
the others dropped. At high ratios over many short segments this keeps room for close reading
(otherwise nearly every position goes to skims) and makes any ratio attainable.
"""

from __future__ import annotations

import math

import torch


class BudgetError(ValueError):
    """The requested compression cannot be reached for some context."""


def context_budget(original_tokens: torch.Tensor, ratio: float) -> torch.Tensor:
    """[B] decoder context positions allowed at ``ratio`` (ceil(L / r))."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1.0):
        raise BudgetError(f"ratio must be a finite number >= 1, got {ratio!r}")
    return torch.ceil(original_tokens.double() / ratio).long()


def max_ratio(original_tokens: torch.Tensor, num_segments: torch.Tensor) -> torch.Tensor:
    """[B] largest attainable ratio: every segment skimmed (L / N)."""
    return original_tokens.double() / num_segments.double()


def _rank_within_example(scores: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
    """Permutation ordering segments by example, then by descending score (stable)."""
    by_score = torch.argsort(scores, descending=True, stable=True)
    return by_score[torch.argsort(example[by_score], stable=True)]


def select_by_budget(
    scores: torch.Tensor, lengths: torch.Tensor, example: torch.Tensor, budget: torch.Tensor
) -> torch.Tensor:
    """[N] bool keep mask: greedy by score under per-example budgets (vectorised rounds).

    Each round takes, per example, the longest score-ordered prefix of the remaining segments
    that still fit; the first segment that does not fit is excluded for good. This equals the
    sequential greedy and needs few rounds (one per skip).
    """
    num_examples = budget.shape[0]
    counts = torch.bincount(example, minlength=num_examples)
    slack = budget - counts  # positions left after skimming everything
    if bool((slack < 0).any()):
        raise BudgetError("budget below the all-skim cost")  # callers check first with a better message
    order = _rank_within_example(scores, example)
    extra = (lengths - 1)[order]  # cost of keeping over skimming, in score order
    ex_sorted = example[order]
    keep_sorted = torch.zeros_like(extra, dtype=torch.bool)
    while True:
        cand = ~keep_sorted & (extra <= slack[ex_sorted])
        if not bool(cand.any()):
            break
        cost = torch.where(cand, extra, torch.zeros_like(extra))
        running = torch.cumsum(cost, 0)
        # cumsum restarted at each example: subtract the total of earlier examples
        ex_total = torch.zeros(num_examples, dtype=cost.dtype).index_add_(0, ex_sorted, cost)
        before = torch.cumsum(ex_total, 0) - ex_total
        within = running - before[ex_sorted]
        take = cand & (within <= slack[ex_sorted])
        if not bool(take.any()):
            break
        keep_sorted |= take
        slack = slack - torch.zeros_like(slack).index_add_(0, ex_sorted, torch.where(take, extra, 0))
    keep = torch.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def select_by_keep_ratio(scores: torch.Tensor, example: torch.Tensor, num_examples: int, keep_ratio: float) -> torch.Tensor:
    """[N] bool keep mask of the paper's mode: the top floor(p * N_b) segments per example."""
    if not 0.0 <= keep_ratio <= 1.0:
        raise BudgetError(f"keep_ratio must be in [0, 1], got {keep_ratio!r}")
    counts = torch.bincount(example, minlength=num_examples)
    k = torch.floor(counts.double() * keep_ratio + 1e-9).long()
    order = _rank_within_example(scores, example)
    ex_sorted = example[order]
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - first[ex_sorted]
    keep = torch.empty(len(order), dtype=torch.bool)
    keep[order] = rank < k[ex_sorted]
    return keep


def compressed_lengths(keep: torch.Tensor, lengths: torch.Tensor, example: torch.Tensor, num_examples: int) -> torch.Tensor:
    """[B] decoder context positions of a keep mask."""
    cost = torch.where(keep, lengths, torch.ones_like(lengths))
    return torch.zeros(num_examples, dtype=torch.long).index_add_(0, example, cost)


def cap_skims(
    scores: torch.Tensor,
    lengths: torch.Tensor,
    example: torch.Tensor,
    budget: torch.Tensor,
    max_skim_share: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N] bool (keep, skim) masks under per-example budgets with skims capped at
    floor(max_skim_share * budget) positions; segments in neither mask are dropped."""
    if not 0.0 <= max_skim_share <= 1.0:
        raise BudgetError(f"max_skim_share must be in [0, 1], got {max_skim_share!r}")
    num_examples = budget.shape[0]
    counts = torch.bincount(example, minlength=num_examples)
    cap = torch.floor(budget.double() * max_skim_share + 1e-9).long()  # [B] skim positions allowed
    # the paper's rule (where it has a solution; elsewhere the cap decides anyway)
    keep = select_by_budget(scores, lengths, example, torch.maximum(budget, counts))
    skims = counts - torch.zeros_like(counts).index_add_(0, example, keep.long())
    binding = (skims > cap) | (counts > budget)
    if bool(binding.any()):
        # close-read under B - cap (a dropped segment costs 0 here: lengths + 1, budget + count)
        capped = select_by_budget(scores, lengths + 1, example, budget - cap + counts)
        keep = torch.where(binding[example], capped, keep)
    # skim the best-scored non-kept segments (kept ones rank last), up to the cap where it binds
    order = _rank_within_example(torch.where(keep, torch.full_like(scores, -math.inf), scores), example)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(example)
    rank[order] = torch.arange(len(order), device=example.device) - first[example[order]]
    allowed = torch.where(binding, cap, counts)
    skim = ~keep & (rank < allowed[example])
    return keep, skim


def plan_segments(
    scores: torch.Tensor,
    lengths: torch.Tensor,
    example: torch.Tensor,
    num_examples: int,
    ratio: float | None = None,
    keep_ratio: float | None = None,
    max_skim_share: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, skim) masks: :func:`select_segments`, with skims capped at ``max_skim_share`` of
    the budget when a ratio is given (1.0 = the paper: every segment not kept is skimmed)."""
    if not 0.0 <= max_skim_share <= 1.0:
        raise BudgetError(f"max_skim_share must be in [0, 1], got {max_skim_share!r}")
    if ratio is None or max_skim_share == 1.0:
        keep = select_segments(scores, lengths, example, num_examples, ratio=ratio, keep_ratio=keep_ratio)
        return keep, ~keep
    if keep_ratio is not None:
        raise BudgetError("give exactly one of ratio or keep_ratio")
    original = torch.zeros(num_examples, dtype=torch.long).index_add_(0, example, lengths)
    return cap_skims(scores, lengths, example, context_budget(original, ratio), max_skim_share)


def select_segments(
    scores: torch.Tensor,
    lengths: torch.Tensor,
    example: torch.Tensor,
    num_examples: int,
    ratio: float | None = None,
    keep_ratio: float | None = None,
) -> torch.Tensor:
    """Keep mask for a target ``ratio`` (exact budget) or the paper's ``keep_ratio``."""
    if (ratio is None) == (keep_ratio is None):
        raise BudgetError("give exactly one of ratio or keep_ratio")
    if keep_ratio is not None:
        return select_by_keep_ratio(scores, example, num_examples, keep_ratio)
    original = torch.zeros(num_examples, dtype=torch.long).index_add_(0, example, lengths)
    budget = context_budget(original, ratio)
    _check_attainable(original, torch.bincount(example, minlength=num_examples), budget, ratio)
    return select_by_budget(scores, lengths, example, budget)


def _check_attainable(original: torch.Tensor, counts: torch.Tensor, budget: torch.Tensor, ratio: float) -> None:
    """BudgetError naming the largest attainable ratio when skimming every segment is over budget."""
    over = counts > budget
    if bool(over.any()):
        b = int(torch.nonzero(over)[0])
        best = float(max_ratio(original, counts)[b])
        raise BudgetError(
            f"ratio {ratio:g} is not attainable for context {b}: {int(original[b])} tokens in "
            f"{int(counts[b])} segments; the largest attainable ratio is {best:.2f} (all skimmed). "
            "Use a lower ratio, longer segments, or max_skim_share < 1 (drop the least relevant skims)."
        )


def min_context_positions(lengths: torch.Tensor, example: torch.Tensor, num_examples: int, ratio: float) -> torch.Tensor:
    """[B] fewest decoder context positions the paper's rule (``max_skim_share=1``) can leave at
    ``ratio``, known before any score: the greedy stops only when no unkept segment fits the
    slack, so it fills the budget to within one segment (or keeps everything)."""
    original = torch.zeros(num_examples, dtype=torch.long).index_add_(0, example, lengths)
    longest = torch.zeros(num_examples, dtype=torch.long).scatter_reduce_(0, example, lengths, "amax")
    return torch.minimum(original, context_budget(original, ratio) - longest + 1)


def check_plan(
    lengths: torch.Tensor,
    example: torch.Tensor,
    num_examples: int,
    ratio: float,
    max_skim_share: float = 1.0,
    max_positions: torch.Tensor | None = None,
) -> None:
    """Fail before the encoder runs when a plan at ``ratio`` certainly cannot work: the ratio is
    out of reach (paper rule), or the context will take more than ``max_positions`` [B] decoder
    positions (what the window leaves after the prompt and the answer). With skims capped
    (``max_skim_share < 1``) any ratio is attainable and segments may be dropped: nothing to check."""
    if max_skim_share < 1.0:
        return
    original = torch.zeros(num_examples, dtype=torch.long).index_add_(0, example, lengths)
    _check_attainable(original, torch.bincount(example, minlength=num_examples), context_budget(original, ratio), ratio)
    if max_positions is None:
        return
    need = min_context_positions(lengths, example, num_examples, ratio)
    over = need > max_positions
    if bool(over.any()):
        b = int(torch.nonzero(over)[0])
        room = int(max_positions[b])
        hint = (f"a ratio of {math.ceil(10 * int(original[b]) / room) / 10:g} or more fits" if room > 0
                else "the question and answer alone fill the window")
        raise BudgetError(
            f"at ratio {ratio:g}, context {b} ({int(original[b])} tokens) needs at least {int(need[b])} decoder "
            f"positions, but the window leaves {max(room, 0)} after the prompt and the answer; {hint}"
        )
