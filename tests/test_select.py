"""Selection under the exact budget ceil(L / r): greedy in score order, batched == single."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ram.select import (
    BudgetError,
    check_plan,
    compressed_lengths,
    context_budget,
    max_ratio,
    min_context_positions,
    plan_segments,
    select_by_keep_ratio,
    select_segments,
)

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)


@st.composite
def examples_st(draw, max_examples: int = 4):
    """(lengths, scores, example) for a batch; scores come from a small set so ties occur."""
    num = draw(st.integers(1, max_examples))
    lengths, scores, example = [], [], []
    for b in range(num):
        n = draw(st.integers(1, 12))
        lengths += draw(st.lists(st.integers(1, 15), min_size=n, max_size=n))
        scores += draw(st.lists(st.sampled_from([-0.5, -0.1, 0.0, 0.2, 0.3, 0.7, 0.9, 1.0]), min_size=n, max_size=n))
        example += [b] * n
    return (
        torch.tensor(lengths, dtype=torch.long),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(example, dtype=torch.long),
        num,
    )


def greedy_reference(lengths: list[int], scores: list[float], ratio: float) -> list[bool]:
    """Sequential greedy for ONE example: all skimmed, then keep in score order (ties by
    position) whenever the segment still fits in ceil(L / r)."""
    budget = math.ceil(sum(lengths) / ratio)
    cost = len(lengths)
    keep = [False] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -scores[i]):
        if cost + lengths[i] - 1 <= budget:
            keep[i] = True
            cost += lengths[i] - 1
    return keep


def _split(t: torch.Tensor, example: torch.Tensor, b: int) -> list:
    return t[example == b].tolist()


@SETTINGS
@given(data=examples_st(), ratio=st.floats(1.0, 8.0))
def test_matches_sequential_greedy_and_respects_budget(data, ratio: float) -> None:
    lengths, scores, example, num = data
    counts = torch.bincount(example, minlength=num)
    original = torch.zeros(num, dtype=torch.long).index_add_(0, example, lengths)
    budget = [math.ceil(int(original[b]) / ratio) for b in range(num)]
    if any(int(counts[b]) > budget[b] for b in range(num)):
        with pytest.raises(BudgetError, match="largest attainable ratio"):
            select_segments(scores, lengths, example, num, ratio=ratio)
        return
    keep = select_segments(scores, lengths, example, num, ratio=ratio)
    event("feasible")
    assert keep.dtype == torch.bool and keep.shape == lengths.shape
    used = compressed_lengths(keep, lengths, example, num)
    for b in range(num):
        assert int(used[b]) <= budget[b]
        ref = greedy_reference(_split(lengths, example, b), _split(scores, example, b), ratio)
        assert _split(keep, example, b) == ref
        # batched == one example at a time
        alone = select_segments(scores[example == b], lengths[example == b], torch.zeros(int(counts[b]), dtype=torch.long), 1, ratio=ratio)
        assert alone.tolist() == ref


@SETTINGS
@given(data=examples_st(), ratio=st.floats(1.0, 8.0))
def test_min_context_positions_bounds_every_plan_before_scores_exist(data, ratio: float) -> None:
    lengths, scores, example, num = data
    counts = torch.bincount(example, minlength=num)
    original = torch.zeros(num, dtype=torch.long).index_add_(0, example, lengths)
    if bool((counts > context_budget(original, ratio)).any()):
        return
    floor = min_context_positions(lengths, example, num, ratio)
    for perm_seed in range(3):  # whatever the scores turn out to be
        shuffled = scores[torch.randperm(len(scores), generator=torch.Generator().manual_seed(perm_seed))]
        used = compressed_lengths(select_segments(shuffled, lengths, example, num, ratio=ratio), lengths, example, num)
        assert bool((used >= floor).all()), (used, floor)
        # and a tight one: every plan lands within one segment of it
        longest = torch.zeros(num, dtype=torch.long).scatter_reduce_(0, example, lengths, "amax")
        assert bool((used - floor <= longest - 1).all()), (used, floor, longest)


def test_check_plan_fails_before_scores_with_a_ratio_that_fits() -> None:
    lengths = torch.full((40,), 10)  # 400 tokens, one example
    example = torch.zeros(40, dtype=torch.long)
    with pytest.raises(BudgetError, match=r"largest attainable ratio is 10\.00"):
        check_plan(lengths, example, 1, ratio=20.0)
    # ratio 2: budget 200, at least 191 positions; only 100 left in the window
    with pytest.raises(BudgetError, match=r"needs at least 191 .* leaves 100 .* ratio of 4 or more fits") as info:
        check_plan(lengths, example, 1, ratio=2.0, max_positions=torch.tensor([100]))
    suggested = 4.0
    assert int(context_budget(torch.tensor([400]), suggested)[0]) <= 100  # the hint really fits
    assert "context 0" in str(info.value)
    check_plan(lengths, example, 1, ratio=4.0, max_positions=torch.tensor([100]))  # fits: no error
    check_plan(lengths, example, 1, ratio=2.0, max_positions=torch.tensor([100]), max_skim_share=0.5)  # capped: skipped
    with pytest.raises(BudgetError, match="question and answer alone fill the window"):
        check_plan(lengths, example, 1, ratio=4.0, max_positions=torch.tensor([-3]))


@SETTINGS
@given(data=examples_st())
def test_ratio_one_keeps_everything(data) -> None:
    lengths, scores, example, num = data
    keep = select_segments(scores, lengths, example, num, ratio=1.0)
    assert bool(keep.all())
    assert torch.equal(compressed_lengths(keep, lengths, example, num), torch.zeros(num, dtype=torch.long).index_add_(0, example, lengths))


def test_skips_a_segment_that_does_not_fit_and_takes_a_smaller_one() -> None:
    # L = 20, r = 2 -> B = 10; all-skim costs 3. Best (len 9): 3 + 8 = 11 > 10 -> skipped;
    # next (len 5): 3 + 4 = 7 fits; last (len 6): 7 + 5 = 12 does not.
    lengths = torch.tensor([9, 5, 6])
    scores = torch.tensor([0.9, 0.5, 0.1])
    keep = select_segments(scores, lengths, torch.zeros(3, dtype=torch.long), 1, ratio=2.0)
    assert keep.tolist() == [False, True, False]


def test_design_doc_example() -> None:
    lengths = torch.full((52,), 50, dtype=torch.long)
    scores = torch.linspace(1, 0, 52)
    example = torch.zeros(52, dtype=torch.long)
    assert int(context_budget(torch.tensor([2600]), 4.0)[0]) == 650
    keep = select_segments(scores, lengths, example, 1, ratio=4.0)
    assert int(keep.sum()) == 12
    assert keep[:12].all() and not keep[12:].any()  # the 12 best scored
    cost = int(compressed_lengths(keep, lengths, example, 1)[0])
    assert cost == 640
    assert f"{2600 / cost:.2f}" == "4.06"


@pytest.mark.parametrize("ratio", [0.5, 0.999, 0.0, -2.0, float("nan"), float("inf"), float("-inf")])
def test_bad_ratio_raises(ratio: float) -> None:
    with pytest.raises(BudgetError):
        select_segments(torch.tensor([0.1, 0.2]), torch.tensor([3, 4]), torch.tensor([0, 0]), 1, ratio=ratio)


def test_unattainable_ratio_reports_largest_attainable() -> None:
    # example 0 is fine at r = 5; example 1: L = 10 in 3 segments -> at most 3.33x
    lengths = torch.tensor([20, 20, 3, 3, 4])
    example = torch.tensor([0, 0, 1, 1, 1])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(BudgetError) as info:
        select_segments(scores, lengths, example, 2, ratio=5.0)
    assert "3.33" in str(info.value)
    assert "context 1" in str(info.value)
    assert float(max_ratio(torch.tensor([10]), torch.tensor([3]))[0]) == pytest.approx(10 / 3)
    # exactly attainable: ratio L / N skims everything
    keep = select_segments(scores[2:], lengths[2:], torch.zeros(3, dtype=torch.long), 1, ratio=10 / 3)
    assert not keep.any()


def test_exactly_one_mode_required() -> None:
    args = (torch.tensor([0.1]), torch.tensor([3]), torch.tensor([0]), 1)
    with pytest.raises(BudgetError):
        select_segments(*args)
    with pytest.raises(BudgetError):
        select_segments(*args, ratio=2.0, keep_ratio=0.5)
    for bad in (-0.1, 1.5):
        with pytest.raises(BudgetError):
            select_segments(*args, keep_ratio=bad)


@SETTINGS
@given(
    sizes=st.lists(st.integers(1, 15), min_size=1, max_size=4),
    k_num=st.integers(0, 15),
    seed=st.integers(0, 1000),
)
def test_keep_ratio_keeps_floor_p_n_top_scored(sizes: list[int], k_num: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    num = len(sizes)
    example = torch.repeat_interleave(torch.arange(num), torch.tensor(sizes))
    scores = torch.randperm(len(example), generator=gen).float()  # distinct scores
    lengths = torch.randint(1, 10, (len(example),), generator=gen)
    n0 = sizes[0]
    p = min(k_num, n0) / n0  # exact k for the first example
    keep = select_segments(scores, lengths, example, num, keep_ratio=p)
    assert torch.equal(keep, select_by_keep_ratio(scores, example, num, p))
    for b, n in enumerate(sizes):
        exact = p * n
        expected = round(exact) if abs(exact - round(exact)) < 1e-6 else math.floor(exact)
        mine = torch.nonzero(example == b).flatten()
        kept = set(mine[keep[mine]].tolist())
        assert len(kept) == expected
        top = sorted(mine.tolist(), key=lambda i: -float(scores[i]))[:expected]
        assert kept == set(top)
    assert int(keep[example == 0].sum()) == min(k_num, n0)


def capped_reference(lengths: list[int], scores: list[float], ratio: float, share: float) -> tuple[list[bool], list[bool]]:
    """Sequential (keep, skim) for ONE example with skims capped at floor(share * budget)."""
    budget = math.ceil(sum(lengths) / ratio)
    cap = math.floor(budget * share + 1e-9)
    n = len(lengths)
    by_score = sorted(range(n), key=lambda i: -scores[i])
    keep = greedy_reference(lengths, scores, ratio) if n <= budget else None
    if keep is None or n - sum(keep) > cap:
        keep, close = [False] * n, budget - cap
        for i in by_score:
            if lengths[i] <= close:
                keep[i] = True
                close -= lengths[i]
        allowed = cap
    else:
        allowed = n
    skim, left = [False] * n, allowed
    for i in by_score:
        if not keep[i] and left > 0:
            skim[i] = True
            left -= 1
    return keep, skim


@SETTINGS
@given(data=examples_st(), ratio=st.floats(1.0, 40.0), share=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_skim_cap_matches_reference_and_budget(data, ratio: float, share: float) -> None:
    lengths, scores, example, num = data
    counts = torch.bincount(example, minlength=num)
    original = torch.zeros(num, dtype=torch.long).index_add_(0, example, lengths)
    budget = [math.ceil(int(original[b]) / ratio) for b in range(num)]
    if share == 1.0 and any(int(counts[b]) > budget[b] for b in range(num)):
        with pytest.raises(BudgetError):  # the paper's rule: above the all-skim ratio
            plan_segments(scores, lengths, example, num, ratio=ratio, max_skim_share=share)
        return
    keep, skim = plan_segments(scores, lengths, example, num, ratio=ratio, max_skim_share=share)
    assert keep.dtype == skim.dtype == torch.bool and not bool((keep & skim).any())
    cost = torch.where(keep, lengths, skim.long())
    for b in range(num):
        used = int(cost[example == b].sum())
        assert used <= budget[b]  # any ratio is attainable once skims are capped
        ref_keep, ref_skim = capped_reference(_split(lengths, example, b), _split(scores, example, b), ratio, share)
        assert _split(keep, example, b) == ref_keep and _split(skim, example, b) == ref_skim
        if int(skim[example == b].sum()) < int((~keep)[example == b].sum()):
            event("some dropped")
            assert int(skim[example == b].sum()) <= math.floor(budget[b] * share + 1e-9)
            skimmed = scores[(example == b) & skim]
            if len(skimmed):  # skims are the best of the segments not read
                assert float(scores[(example == b) & ~keep & ~skim].max()) <= float(skimmed.min())


def test_skim_cap_of_one_is_the_paper_rule() -> None:
    torch.manual_seed(0)
    lengths = torch.randint(5, 60, (40,))
    scores = torch.rand(40)
    example = torch.arange(40) // 10
    for ratio in (2.0, 4.0, 8.0):
        keep, skim = plan_segments(scores, lengths, example, 4, ratio=ratio, max_skim_share=1.0)
        assert torch.equal(keep, select_segments(scores, lengths, example, 4, ratio=ratio))
        assert torch.equal(skim, ~keep)


def test_skim_cap_frees_room_for_close_reading() -> None:
    # 20 segments of 50 tokens at 32x: budget 32; the paper's rule skims all 20 and reads none
    lengths = torch.full((20,), 50)
    scores = torch.linspace(0, 1, 20)
    example = torch.zeros(20, dtype=torch.long)
    keep, skim = plan_segments(scores, lengths, example, 1, ratio=1000 / 32, max_skim_share=1.0)
    assert not bool(keep.any()) and bool(skim.all())
    keep, skim = plan_segments(scores, lengths, example, 1, ratio=16.0, max_skim_share=0.2)  # budget 63, cap 12
    assert keep.nonzero().flatten().tolist() == [19]  # the best segment, read in full
    assert skim.nonzero().flatten().tolist() == list(range(7, 19))  # the next 12 as skims
    with pytest.raises(BudgetError, match="max_skim_share"):
        plan_segments(scores, lengths, example, 1, ratio=4.0, max_skim_share=1.5)
