"""Tests for ram.data.nq_multidoc: NQ multi-document contexts, splits and determinism."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ram.data.example import Example
from ram.data.nq_multidoc import (
    build_nq_multidoc,
    parse_docs_arg,
    parse_gold_position,
    split_of,
    write_examples,
)
from ram.data.positives import normalize_answer, positive_spans
from ram.data.readers import detect_format, format_document, load_examples

SHARED_NQ = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nq-open" / "nq-open-oracle.dev.jsonl.gz"
)
N = 60
SHARED_TEXT = "A passage that is gold for one train and one dev question."


def body(document: str) -> str:
    """A formatted document without its position: ``(Title: t) text``."""
    return re.sub(r"^Document \[\d+\]", "", document)


def make_records(n: int = N) -> list[dict[str, Any]]:
    """Synthetic NQ-open oracle records with traps for the distractor filter.

    Question i's answer is ``zebra{i:03d}``; passage 3k also mentions the answer of question
    3k+1, passage 10's title holds the answer of question 11, questions 20 and 21 share a gold
    passage, and one train and one dev question share ``SHARED_TEXT``.
    """
    records = []
    for i in range(n):
        text = f"Passage {i} says the answer is zebra{i:03d}. Some filler words follow here."
        if i % 3 == 0:
            text += f" It also mentions ZEBRA{i + 1:03d} in passing."
        title = "zebra011 history" if i == 10 else f"Topic {i}"
        records.append({
            "question": f"what is the answer to question number {i}",
            "answers": [f"zebra{i:03d}"],
            "ctxs": [{"title": title, "text": text, "hasanswer": True, "isgold": True}],
        })
    records[21]["ctxs"][0]["text"] = records[20]["ctxs"][0]["text"] + "  "  # same after normalising
    splits = [split_of(r["question"], 0.3) for r in records]
    i_train, i_dev = splits.index("train"), splits.index("dev")
    for i in (i_train, i_dev):
        records[i]["ctxs"][0]["text"] = SHARED_TEXT
    return records


@pytest.fixture()
def nq_file(tmp_path: Path) -> Path:
    path = tmp_path / "nq.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for rec in make_records():
            f.write(json.dumps(rec) + "\n")
    return path


# --- split_of and argument parsing -----------------------------------------------------------


def test_split_of_is_normalisation_invariant_and_fractional() -> None:
    assert split_of("Who is the President?") == split_of("who is  president")
    questions = [f"synthetic question {i}" for i in range(3000)]
    dev = sum(split_of(q) == "dev" for q in questions) / len(questions)
    assert 0.17 < dev < 0.23
    assert {split_of(q, 0.0) for q in questions[:200]} == {"train"}
    assert {split_of(q, 1.0) for q in questions[:200]} == {"dev"}
    with pytest.raises(ValueError, match="dev_fraction"):
        split_of("q", 1.5)


def test_split_of_does_not_depend_on_hash_seed() -> None:
    # A stub parent package keeps the subprocess from importing ram/__init__ (and torch).
    src = Path(__file__).resolve().parents[2] / "src"
    code = (
        "import sys, types; pkg = types.ModuleType('ram'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['ram'] = pkg\n"
        "from ram.data.nq_multidoc import split_of\n"
        "print(''.join(split_of(f'q{i}')[0] for i in range(64)))"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", code, str(src / "ram")], env=env, capture_output=True,
                                   text=True, check=True).stdout.strip())
    expected = "".join(split_of(f"q{i}")[0] for i in range(64))
    assert outputs == {expected}
    assert set(expected) == {"t", "d"}


@pytest.mark.parametrize(("arg", "expected"), [("20", 20), ("5-20", (5, 20)), (" 5 - 20 ", (5, 20)), ("7-7", (7, 7))])
def test_parse_docs_arg(arg: str, expected: int | tuple[int, int]) -> None:
    assert parse_docs_arg(arg) == expected


@pytest.mark.parametrize("arg", ["0", "20-5", "abc", "5-", "-5", "0-3", "2.5"])
def test_parse_docs_arg_rejects(arg: str) -> None:
    with pytest.raises(ValueError, match="--docs"):
        parse_docs_arg(arg)


def test_parse_gold_position() -> None:
    assert parse_gold_position("random") == "random"
    assert parse_gold_position("Random") == "random"
    assert parse_gold_position("4") == 4
    for bad in ("-1", "middle", ""):
        with pytest.raises(ValueError, match="--gold-position"):
            parse_gold_position(bad)


# --- building ---------------------------------------------------------------------------------


def test_deterministic_for_a_seed(nq_file: Path) -> None:
    a = build_nq_multidoc(nq_file, num_docs=(3, 8), seed=3)
    b = build_nq_multidoc(nq_file, num_docs=(3, 8), seed=3)
    c = build_nq_multidoc(nq_file, num_docs=(3, 8), seed=4)
    assert a == b
    assert [e.documents for e in a] != [e.documents for e in c]
    assert len(a) == N


def test_examples_do_not_depend_on_limit(nq_file: Path) -> None:
    full = build_nq_multidoc(nq_file, num_docs=6, seed=1)
    assert build_nq_multidoc(nq_file, num_docs=6, seed=1, limit=7) == full[:7]
    assert build_nq_multidoc(nq_file, limit=0) == []


@pytest.mark.parametrize(("position", "expected"), [(0, 0), (2, 2), (4, 4), (99, 4)])
def test_fixed_gold_position(nq_file: Path, position: int, expected: int) -> None:
    records = make_records()
    for ex in build_nq_multidoc(nq_file, num_docs=5, gold_position=position, limit=12):
        i = int(ex.id.split("-")[1]) - 1  # ids are nq-{line}
        gold = records[i]["ctxs"][0]
        assert ex.meta["gold_document"] == expected
        assert ex.documents[expected] == format_document(expected + 1, gold["title"], gold["text"])
        assert [d.startswith(f"Document [{k + 1}](Title: ") for k, d in enumerate(ex.documents)] == [True] * 5


def test_random_gold_position_varies_and_points_at_gold(nq_file: Path) -> None:
    examples = build_nq_multidoc(nq_file, num_docs=5, gold_position="random")
    positions = [ex.meta["gold_document"] for ex in examples]
    assert set(positions) <= set(range(5)) and len(set(positions)) >= 4
    with_answer = 0
    for ex in examples:
        gold = ex.meta["gold_document"]
        assert set(positive_spans(ex)) <= {gold}
        if ex.answers[0] in ex.documents[gold]:  # all but the trap questions sharing a passage
            with_answer += 1
            assert set(positive_spans(ex)) == {gold}
    assert with_answer == N - 3


def test_doc_count_range(nq_file: Path) -> None:
    examples = build_nq_multidoc(nq_file, num_docs=(3, 6))
    counts = [len(ex.documents) for ex in examples]
    assert set(counts) == {3, 4, 5, 6}
    assert all(ex.meta["num_docs"] == len(ex.documents) for ex in examples)
    assert {len(ex.documents) for ex in build_nq_multidoc(nq_file, num_docs=7)} == {7}


def test_distractors_never_contain_the_answer_nor_repeat(nq_file: Path) -> None:
    for seed in range(3):
        for ex in build_nq_multidoc(nq_file, num_docs=12, seed=seed):
            gold = ex.meta["gold_document"]
            answer = normalize_answer(ex.answers[0])
            for d, doc in enumerate(ex.documents):
                if d != gold:
                    assert answer not in normalize_answer(body(doc)), (ex.id, doc)
            bodies = [normalize_answer(body(doc)) for doc in ex.documents]
            assert len(set(bodies)) == len(bodies), ex.id


def test_no_leakage_between_splits(nq_file: Path) -> None:
    records = make_records()
    split = {r["question"]: split_of(r["question"], 0.3) for r in records}
    passages = {s: {normalize_answer(r["ctxs"][0]["text"]) for r in records if split[r["question"]] == s}
                for s in ("train", "dev")}
    built = {s: build_nq_multidoc(nq_file, num_docs=5, split=s, dev_fraction=0.3) for s in ("train", "dev")}
    assert built["train"] and built["dev"]
    for s, other in (("train", "dev"), ("dev", "train")):
        for ex in built[s]:
            assert split[ex.question] == s == ex.meta["split"]
            for doc in ex.documents:
                text = normalize_answer(doc.split(") ", 1)[1])
                assert text not in passages[other], (s, ex.id, doc)
    everything = build_nq_multidoc(nq_file, num_docs=5)
    shared = [ex for ex in everything if ex.documents[ex.meta["gold_document"]].endswith(SHARED_TEXT)]
    assert len(shared) == 2  # in "all" both questions are kept; in the splits both are dropped
    assert len(built["train"]) + len(built["dev"]) == N - 2


def test_too_few_distractors(nq_file: Path) -> None:
    with pytest.raises(ValueError, match="valid distractors"):
        build_nq_multidoc(nq_file, num_docs=N + 5, limit=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_docs": 0}, "num_docs"),
        ({"num_docs": (5, 3)}, "num_docs"),
        ({"num_docs": (0, 3)}, "num_docs"),
        ({"gold_position": -1}, "gold_position"),
        ({"gold_position": "middle"}, "gold_position"),
        ({"split": "test"}, "split"),
        ({"limit": -1}, "limit"),
    ],
)
def test_invalid_arguments(nq_file: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_nq_multidoc(nq_file, **kwargs)


def test_write_and_reload(nq_file: Path, tmp_path: Path) -> None:
    examples = build_nq_multidoc(nq_file, num_docs=(2, 4), limit=10)
    out = tmp_path / "out" / "nq_train.jsonl"
    assert write_examples(examples, out) == 10
    assert detect_format(out) == "examples"
    assert load_examples(out) == examples
    assert all(isinstance(e, Example) and e.gold_spans == [] for e in examples)


# --- real data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_nq() -> Path:
    if not SHARED_NQ.exists():
        pytest.skip(f"{SHARED_NQ} not available")
    return SHARED_NQ


def test_real_nq_train_examples(real_nq: Path) -> None:
    with gzip.open(real_nq, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    dev_passages = {normalize_answer(r["ctxs"][0]["text"]) for r in records if split_of(r["question"]) == "dev"}
    dev_questions = {r["question"] for r in records if split_of(r["question"]) == "dev"}
    text_of = {f"(Title: {r['ctxs'][0]['title']}) {r['ctxs'][0]['text']}": r["ctxs"][0]["text"] for r in records}
    examples = build_nq_multidoc(real_nq, num_docs=20, split="train", limit=40)
    assert len(examples) == 40
    assert examples == build_nq_multidoc(real_nq, num_docs=20, split="train", limit=40)
    for ex in examples:
        assert ex.question not in dev_questions
        assert len(ex.documents) == 20
        for doc in ex.documents:
            assert normalize_answer(text_of[body(doc)]) not in dev_passages
        evidence = positive_spans(ex)
        assert ex.meta["gold_document"] in evidence  # the gold passage holds an answer
        assert set(evidence) == {ex.meta["gold_document"]}  # and no distractor does
