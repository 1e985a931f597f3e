"""run_eval and ``ram eval``: result files, resume after a crash, determinism, CLI wiring."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from ram import RAMModel
from ram.data import Example, write_examples
from ram.eval import methods as methods_mod
from ram.eval.command import add_eval_parser, cmd_eval
from ram.eval.methods import METHODS, MethodUnavailable
from ram.eval.runner import PREDICTIONS, read_predictions, run_eval

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = [
    "Paris is the capital and most populous city of France, on the river Seine.",
    "Charles Darwin wrote the origin of species in 1859.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]
SUMMARY_KEYS = {"method", "ratio", "n", "accuracy", "accuracy_ci", "em", "f1", "f1_first", "rouge_l",
                "achieved_ratio_mean", "context_tokens_mean", "latency_s_mean", "truncated_share"}
RECORD_KEYS = {"method", "ratio", "id", "question", "context_sha1", "answers", "prediction", "accuracy", "em", "f1", "f1_first",
               "rouge_l", "context_tokens", "original_tokens", "achieved_ratio", "kept_segments", "truncated",
               "latency_s", "gold_position"}


def make_examples(n: int = 3, gold: bool = True) -> list[Example]:
    out = []
    for i in range(n):
        docs = DOCS[i % 3 :] + DOCS[: i % 3]
        meta = {"gold_document": docs.index(DOCS[1])} if gold else {}
        out.append(Example(id=f"q{i}", question="Who wrote the origin of species?",
                           answers=["Charles Darwin", "Darwin"], documents=docs, meta=meta))
    return out


@pytest.fixture(scope="module")
def ram_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    model = RAMModel.from_backbone(tiny_llama_dir, **SMALL)
    return str(model.save_pretrained(tmp_path_factory.mktemp("eval-runner") / "ram-tiny"))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count Method.run calls per method name."""
    calls: dict[str, int] = {}
    for name, cls in list(METHODS.items()):
        def run(self, examples, ratio, max_new_tokens=32, _base=cls):  # type: ignore[no-untyped-def]
            calls[self.name] = calls.get(self.name, 0) + 1
            return _base.run(self, examples, ratio, max_new_tokens)

        monkeypatch.setitem(METHODS, name, type(cls.__name__, (cls,), {"run": run}))
    return calls


def test_run_eval_writes_everything_and_resumes(ram_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = make_examples(3)
    methods = ["closed-book", "full", "ram", "bm25"]
    out = tmp_path / "run"
    calls = _spy(monkeypatch)
    rows = run_eval(examples, methods, [2.0, 4.0], ram_dir, out, seed=0, batch_size=2, max_new_tokens=3,
                    progress=False)
    for name in ("predictions.jsonl", "summary.json", "summary.md", "accuracy_vs_ratio.png",
                 "accuracy_vs_position.png", "run.json"):
        assert (out / name).is_file(), name
    assert [(r["method"], r["ratio"]) for r in rows] == [
        ("closed-book", None), ("full", None), ("ram", 2.0), ("ram", 4.0), ("bm25", 2.0), ("bm25", 4.0)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(rows))
    for row in summary:
        assert SUMMARY_KEYS <= set(row)
        assert row["n"] == 3
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
    assert "| ram | 2 | 3 |" in (out / "summary.md").read_text()
    lines = _lines(out / PREDICTIONS)
    assert len(lines) == 3 * 6
    recs = [json.loads(line) for line in lines]
    assert all(RECORD_KEYS <= set(r) for r in recs)
    assert {r["gold_position"] for r in recs} == {0, 1, 2}
    by = {(r["method"], r["ratio"], r["id"]): r for r in recs}
    for e in examples:  # bm25 matched the length RAM reached on the same example
        for ratio in (2.0, 4.0):
            bm = by[("bm25", ratio, e.id)]
            assert bm["target_tokens"] == by[("ram", ratio, e.id)]["context_tokens"]
            assert bm["context_tokens"] <= bm["target_tokens"]
    assert calls == {"closed-book": 2, "full": 2, "ram": 4, "bm25": 4}  # batches of 2 over 3 examples

    # a second call recomputes nothing
    calls.clear()
    rows2 = run_eval(examples, methods, [2.0, 4.0], ram_dir, out, seed=0, batch_size=2, max_new_tokens=3,
                     progress=False)
    assert calls == {} and _lines(out / PREDICTIONS) == lines
    assert [r["accuracy"] for r in rows2] == [r["accuracy"] for r in rows]

    # crash mid-write: the last record is half there; only that one is redone
    (out / PREDICTIONS).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert len(read_predictions(out / PREDICTIONS, repair=False)) == len(lines) - 1
    run_eval(examples, methods, [2.0, 4.0], ram_dir, out, seed=0, batch_size=2, max_new_tokens=3, progress=False)
    assert calls == {recs[-1]["method"]: 1}
    redone = [json.loads(line) for line in _lines(out / PREDICTIONS)]
    assert len(redone) == len(lines)
    assert redone[-1]["prediction"] == recs[-1]["prediction"] and redone[-1]["id"] == recs[-1]["id"]

    # a corrupt line in the middle is an error, not silently skipped
    (out / PREDICTIONS).write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="corrupt"):
        run_eval(examples, methods, [2.0], ram_dir, out, max_new_tokens=3, progress=False)


def test_resume_refuses_other_settings(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(1)
    run_eval(examples, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=3, progress=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        run_eval(examples, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=4, progress=False)
    with pytest.raises(ValueError, match="dtype 'float32' -> 'bfloat16'"):
        run_eval(examples, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=3, progress=False, dtype="bfloat16")
    # a folder from before --dtype (no dtype in run.json) ran in float32
    settings = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "dtype"}))
    with pytest.raises(ValueError, match="dtype 'float32' -> 'bfloat16'"):
        run_eval(examples, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=3, progress=False, dtype="bfloat16")
    with pytest.raises(ValueError, match="dtype must be"):
        run_eval(examples, ["closed-book"], [], ram_dir, tmp_path / "new", max_new_tokens=3, progress=False, dtype="fp8")


def test_bfloat16_run_loads_bfloat16_models(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(2)
    models = methods_mod.Models(ram_dir, dtype=torch.bfloat16)
    rows = run_eval(examples, ["ram", "closed-book"], [2.0], ram_dir, tmp_path, max_new_tokens=3, progress=False,
                    models=models, dtype="bfloat16")
    assert models.ram.decoder.dtype == models.ram.encoder.dtype == torch.bfloat16
    assert {r["method"] for r in rows} == {"ram", "closed-book"} and all(r["n"] == 2 for r in rows)
    assert json.loads((tmp_path / "run.json").read_text())["dtype"] == "bfloat16"


def test_resume_refuses_another_context_under_the_same_id(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(1)
    run_eval(examples, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=3, progress=False)
    fewer = [Example(id=e.id, question=e.question, answers=e.answers, documents=e.documents[:2]) for e in examples]
    with pytest.raises(ValueError, match="another context"):
        run_eval(fewer, ["closed-book"], [], ram_dir, tmp_path, max_new_tokens=3, progress=False)


def test_ram_lengths_are_kept_for_later_runs(ram_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = make_examples(2)
    models = methods_mod.Models(ram_dir)
    run_eval(examples, ["bm25"], [2.0], ram_dir, tmp_path, max_new_tokens=3, progress=False, models=models)
    stored = json.loads((tmp_path / "ram_lengths.json").read_text())
    assert stored["model"] == str(Path(ram_dir).resolve())
    assert len(stored["lengths"]) == 2 and all(set(v) == {"2"} for v in stored["lengths"].values())
    first = {r["id"]: r["target_tokens"] for r in read_predictions(tmp_path / PREDICTIONS)}

    hybrids: list[int] = []
    original = RAMModel.hybrid

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("keep") is None:  # a RAM pass (the baseline's own close-only pass encodes nothing)
            hybrids.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RAMModel, "hybrid", counting)
    fresh = methods_mod.Models(ram_dir)
    run_eval(examples, ["random"], [2.0], ram_dir, tmp_path, max_new_tokens=3, progress=False, models=fresh)
    assert fresh.targets == {(i, 2.0): n for i, n in first.items()}
    assert hybrids == []  # read from ram_lengths.json: no RAM pass to learn the lengths
    random_targets = {r["id"]: r["target_tokens"] for r in read_predictions(tmp_path / PREDICTIONS)
                      if r["method"] == "random"}
    assert random_targets == first

    other = tmp_path / "other"  # another context under the same ids: recomputed
    other.mkdir()
    (other / "ram_lengths.json").write_text((tmp_path / "ram_lengths.json").read_text())
    changed = [Example(id=e.id, question=e.question, answers=e.answers, documents=e.documents[:2]) for e in examples]
    run_eval(changed, ["random"], [2.0], ram_dir, other, max_new_tokens=3, progress=False)
    assert hybrids  # recomputed


def test_runs_every_ratio_of_a_chunk_before_the_next_chunk(ram_dir: str, tmp_path: Path) -> None:
    """Example-major order: the segment cache still holds a chunk when its next ratio runs."""
    examples = make_examples(4)
    run_eval(examples, ["ram"], [2.0, 4.0], ram_dir, tmp_path, batch_size=2, max_new_tokens=2, progress=False)
    order = [(r["ratio"], r["id"]) for r in read_predictions(tmp_path / PREDICTIONS)]
    assert order == [(2.0, "q0"), (2.0, "q1"), (4.0, "q0"), (4.0, "q1"),
                     (2.0, "q2"), (2.0, "q3"), (4.0, "q2"), (4.0, "q3")]


def test_unknown_engine_is_refused_before_anything_is_written(ram_dir: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        run_eval(make_examples(1), ["closed-book"], [], ram_dir, tmp_path / "out", progress=False, engine="vllm")
    assert not (tmp_path / "out").exists()


def test_random_baseline_is_deterministic(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(3)
    runs = []
    for name, batch in (("a", 3), ("b", 1)):  # batching does not change what is read
        run_eval(examples, ["random"], [2.0], ram_dir, tmp_path / name, seed=7, batch_size=batch, max_new_tokens=3,
                 progress=False)
        runs.append([{k: r[k] for k in ("id", "prediction", "kept_segments", "context_tokens")}
                     for r in map(json.loads, _lines(tmp_path / name / PREDICTIONS))])
    assert runs[0] == runs[1]


def test_bad_inputs_and_skipped_methods(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(2, gold=False)
    with pytest.raises(ValueError, match="unknown method 'bm-25'.*closed-book"):
        run_eval(examples, ["bm-25"], [2.0], ram_dir, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="need --ratio"):
        run_eval(examples, ["ram"], [], ram_dir, tmp_path / "x", progress=False)
    with pytest.raises(MethodUnavailable, match="gold_document"):
        run_eval(examples, ["gold-only"], [], ram_dir, tmp_path / "x", progress=False)
    rows = run_eval(examples, ["gold-only", "closed-book"], [], ram_dir, tmp_path / "y", max_new_tokens=3,
                    progress=False)
    assert [r["method"] for r in rows] == ["closed-book"]
    assert not (tmp_path / "y" / "accuracy_vs_position.png").exists()  # no gold positions
    rows = run_eval(make_examples(3), ["closed-book"], [], ram_dir, tmp_path / "z", limit=2, max_new_tokens=3,
                    progress=False)
    assert rows[0]["n"] == 2


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ram")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cmd_eval(ram_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    write_examples(make_examples(2), data)
    args = _parse(["eval", "--data", str(data), "--method", "closed-book", "ram", "--ratio", "2",
                   "--model", ram_dir, "--max-new-tokens", "3", "--no-progress", "--device", "cpu",
                   "--out", str(tmp_path / "out")])
    assert cmd_eval(args) == 0
    printed = capsys.readouterr().out
    assert "summary.md" in printed and "closed-book" in printed and "ram" in printed
    assert len(_lines(tmp_path / "out" / PREDICTIONS)) == 4
    bad = _parse(["eval", "--data", str(data), "--method", "nope", "--out", str(tmp_path / "o2")])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        cmd_eval(bad)
    bad = _parse(["eval", "--data", str(data), "--method", "full", "--gold-position", "0", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="needs --docs"):
        cmd_eval(bad)


def test_cmd_eval_fast_engine_gives_the_same_predictions(ram_dir: str, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    write_examples(make_examples(3), data)
    preds = {}
    for engine in ("hf", "fast"):
        args = _parse(["eval", "--data", str(data), "--method", "ram", "full", "--ratio", "2", "--model", ram_dir,
                       "--max-new-tokens", "6", "--no-progress", "--engine", engine, "--out", str(tmp_path / engine)])
        assert cmd_eval(args) == 0
        preds[engine] = [(r["method"], r["id"], r["prediction"]) for r in read_predictions(tmp_path / engine / PREDICTIONS)]
    assert preds["fast"] == preds["hf"] and len(preds["hf"]) == 6


def test_cmd_eval_builds_nq_multidoc(ram_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = [("who wrote the origin of species", "Charles Darwin", "Darwin", "Charles Darwin wrote it in 1859."),
             ("what is the capital of france", "Paris", "France", "Paris is the capital of France."),
             ("what does photosynthesis make", "glucose", "Photosynthesis", "Plants make glucose from light."),
             ("when was the first nobel prize", "1901", "Nobel Prize", "The first Nobel Prize was in 1901.")]
    src = tmp_path / "nq.jsonl"
    src.write_text("".join(json.dumps({"question": q, "answers": [a], "ctxs": [
        {"title": t, "text": x, "isgold": True, "hasanswer": True}]}) + "\n" for q, a, t, x in facts))
    args = _parse(["eval", "--data", str(src), "--docs", "3", "--gold-position", "1", "--method", "gold-only", "full",
                   "--model", ram_dir, "--max-new-tokens", "3", "--limit", "2", "--no-progress", "--device", "cpu",
                   "--out", str(tmp_path / "out")])
    assert cmd_eval(args) == 0
    recs = [json.loads(line) for line in _lines(tmp_path / "out" / PREDICTIONS)]
    assert len(recs) == 4 and {r["gold_position"] for r in recs} == {1}
    gold = [r for r in recs if r["method"] == "gold-only"]
    full = {r["id"]: r for r in recs if r["method"] == "full"}
    assert all(r["context_tokens"] < full[r["id"]]["context_tokens"] for r in gold)
    assert (tmp_path / "out" / "accuracy_vs_position.png").is_file()
    assert "gold-only" in capsys.readouterr().out


def test_methods_module_registry_is_the_runners() -> None:
    from ram.eval import runner

    assert runner.METHODS is methods_mod.METHODS


def test_positive_recall_is_recorded(ram_dir: str, tmp_path: Path) -> None:
    examples = make_examples(2)
    run_eval(examples, ["full", "ram-all-skim", "ram"], [2.0], ram_dir, tmp_path, max_new_tokens=2, progress=False)
    records = [json.loads(line) for line in _lines(tmp_path / "predictions.jsonl")]
    by_method = {r["method"]: r for r in records}
    assert by_method["full"]["positive_recall"] == 1.0  # everything close-read
    assert by_method["ram-all-skim"]["positive_recall"] == 0.0  # nothing close-read
    assert 0.0 <= by_method["ram"]["positive_recall"] <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {r["method"]: r["positive_recall_mean"] for r in summary}["full"] == 1.0


def test_segment_cache_reuses_shared_documents_without_changing_results(ram_dir: str, tmp_path: Path) -> None:
    """L-Eval style: many questions over one document; the cache must not change any answer."""
    questions = ["Who wrote the origin of species?", "What is the capital of France?", "What does photosynthesis do?"]
    examples = [Example(id=f"l{i}", question=q, answers=["x"], documents=list(DOCS)) for i, q in enumerate(questions)]
    plain = run_eval(examples, ["ram"], [2.0], ram_dir, tmp_path / "plain", batch_size=1, max_new_tokens=3,
                     progress=False)
    models = methods_mod.Models(ram_dir, batch_size=1, segment_cache_mib=1.0)
    cached = run_eval(examples, ["ram"], [2.0], ram_dir, tmp_path / "cached", batch_size=1, max_new_tokens=3,
                      progress=False, models=models)
    cache = models.ram.segment_cache
    assert cache is not None and len(cache) == cache.misses > 0
    assert cache.hits == 2 * cache.misses  # questions 2 and 3 encoded no segment
    strip = lambda rows: [{k: v for k, v in r.items() if "latency" not in k} for r in rows]  # noqa: E731
    assert strip(plain) == strip(cached)
    keep = lambda d: [(r["id"], r["prediction"], r["kept_segments"]) for r in read_predictions(d / PREDICTIONS)]  # noqa: E731
    assert keep(tmp_path / "plain") == keep(tmp_path / "cached")


def test_negative_segment_cache_is_rejected() -> None:
    with pytest.raises(ValueError, match="segment cache"):
        methods_mod.Models("default", segment_cache_mib=-1)


def test_gold_only_positive_recall_is_measured_on_the_whole_context(ram_dir: str, tmp_path: Path) -> None:
    """gold-only keeps every segment of the gold document: all answer-bearing segments are read."""
    examples = make_examples(3)  # the gold document sits at positions 1, 0 and 2
    run_eval(examples, ["gold-only", "full"], [], ram_dir, tmp_path / "g", batch_size=2, max_new_tokens=2,
             progress=False)
    records = read_predictions(tmp_path / "g" / PREDICTIONS)
    assert {r["method"] for r in records} == {"gold-only", "full"}
    assert [r["positive_recall"] for r in records] == [1.0] * 6
    gold = [r for r in records if r["method"] == "gold-only"]
    full = {r["id"]: r for r in records if r["method"] == "full"}
    assert all(len(r["kept_segments"]) < len(full[r["id"]]["kept_segments"]) for r in gold)


def test_results_table_script_merges_folders(ram_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "results_table.py"
    main = runpy.run_path(str(script))["main"]
    run_eval(make_examples(3), ["closed-book", "ram"], [2.0], ram_dir, tmp_path / "a", max_new_tokens=2, progress=False)
    run_eval(make_examples(2), ["random"], [2.0], ram_dir, tmp_path / "b", max_new_tokens=2, progress=False)
    a = str(tmp_path / "a")
    assert main([a, str(tmp_path / "b"), "--rename", f"{a}:ram=ram, old", "--drop", f"{a}:closed-book",
                 "--plot", str(tmp_path / "acc.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 questions evaluated in every folder")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[:3] for r in rows] == [["| random", "2x", "2"], ["| ram, old", "2x", "2"]]
    assert (tmp_path / "acc.png").stat().st_size > 0
