"""Tests for ram.eval.report: markdown table and PNG plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ram.eval.report import (plot_accuracy_vs_position, plot_accuracy_vs_ratio, plot_accuracy_vs_setting, position_bins,
                             write_summary_md)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(method: str, ratio: float | None, acc: float, ci: tuple[float, float] | None = None) -> dict[str, Any]:
    return {
        "method": method,
        "ratio": ratio,
        "n": 300,
        "accuracy": acc,
        "accuracy_ci": list(ci) if ci else None,
        "em": acc / 2,
        "f1": acc * 0.8,
        "rouge_l": acc * 0.7,
        "achieved_ratio_mean": ratio * 1.002 if ratio else None,
        "context_tokens_mean": 2480.0 / ratio if ratio else 2480.0,
        "latency_s_mean": 0.41,
    }


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    # Deliberately unsorted.
    return [
        _row("ram", 8.0, 0.21, (0.17, 0.26)),
        _row("llmlingua", 4.0, 0.30, (0.25, 0.35)),
        _row("ram", 2.0, 0.40, (0.345, 0.455)),
        _row("full", None, 0.45, (0.39, 0.51)),
        _row("ram", 32.0, 0.12, (0.08, 0.16)),
        _row("closed-book", None, 0.10, (0.07, 0.14)),
        _row("llmlingua", 16.0, 0.15, (0.11, 0.19)),
    ]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # a real rendered figure, not an empty stub


def _no_temp_files(directory: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in directory.iterdir())


def test_summary_md_contents_and_order(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    out = write_summary_md(rows, tmp_path / "summary.md", title="NQ 20 docs")
    assert out == tmp_path / "summary.md"
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# NQ 20 docs"
    header = next(line for line in lines if line.startswith("| method"))
    for col in ("ratio", "n", "accuracy [95% CI]", "em", "f1", "rouge-L", "achieved ratio", "context tokens", "latency s"):
        assert col in header
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| method")]
    keys = [tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in table]
    assert keys == [
        ("closed-book", "—"),
        ("full", "—"),
        ("llmlingua", "4"),
        ("llmlingua", "16"),
        ("ram", "2"),
        ("ram", "8"),
        ("ram", "32"),
    ]
    assert "0.210 [0.170, 0.260]" in text
    assert "0.400 [0.345, 0.455]" in text
    assert "8.02" in text  # achieved ratio
    assert "310.0" in text  # context tokens for ratio 8
    assert "0.410" in text  # latency
    assert _no_temp_files(tmp_path)


def test_summary_md_missing_values_and_no_title(tmp_path: Path) -> None:
    out = write_summary_md([{"method": "gold-only", "ratio": None, "n": 5, "accuracy": 0.6}], tmp_path / "s.md")
    text = out.read_text(encoding="utf-8")
    assert not text.startswith("#")
    row = text.splitlines()[2]
    assert row.startswith("| gold-only | — | 5 | 0.600 | — |")


def test_summary_md_overwrites_atomically(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "sub" / "summary.md"
    write_summary_md(rows, path)
    write_summary_md(rows[:1], path)
    assert path.read_text(encoding="utf-8").count("| ram |") == 1
    assert _no_temp_files(path.parent)


def test_plot_accuracy_vs_ratio(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    out = plot_accuracy_vs_ratio(rows, tmp_path / "acc_vs_ratio.png")
    assert out == tmp_path / "acc_vs_ratio.png"
    _assert_png(out)
    assert _no_temp_files(tmp_path)


def test_plot_accuracy_vs_ratio_only_references(tmp_path: Path) -> None:
    out = plot_accuracy_vs_ratio([_row("full", None, 0.5), _row("closed-book", None, 0.1)], str(tmp_path / "r.png"))
    _assert_png(out)
    with pytest.raises(ValueError):
        plot_accuracy_vs_ratio([], tmp_path / "empty.png")


def test_plot_accuracy_vs_position(tmp_path: Path) -> None:
    records = []
    for method, ratio in (("ram", 8.0), ("ram", 4.0), ("full", None)):
        for pos in (0, 4, 9, 14, 19):
            for i in range(4):
                records.append({"method": method, "ratio": ratio, "gold_position": pos, "accuracy": int(i < pos % 3 + 1)})
    records.append({"method": "closed-book", "ratio": None, "gold_position": None, "accuracy": 1})
    out = plot_accuracy_vs_position(records, tmp_path / "acc_vs_pos.png")
    assert out == tmp_path / "acc_vs_pos.png"
    assert isinstance(out, Path)
    _assert_png(out)


def test_plot_accuracy_vs_position_skipped_without_positions(tmp_path: Path) -> None:
    records = [{"method": "ram", "ratio": 8.0, "gold_position": None, "accuracy": 1}, {"method": "full", "ratio": None, "accuracy": 0}]
    path = tmp_path / "pos.png"
    assert plot_accuracy_vs_position(records, path) is False
    assert not path.exists()
    assert plot_accuracy_vs_position([], path) is False
    assert os.listdir(tmp_path) == []


def test_position_bins_group_sparse_positions_only() -> None:
    sparse = {p: 15 for p in range(20)}  # 300 questions, gold placed at random among 20
    assert position_bins(sparse) == [(0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]
    dense = {p: 100 for p in (0, 4, 9, 14, 19)}  # a fixed-position sweep
    assert position_bins(dense) == [(0, 0), (4, 4), (9, 9), (14, 14), (19, 19)]
    assert position_bins({p: 40 for p in range(20)}) == [(p, p) for p in range(20)]
    odd = position_bins({p: 3 for p in range(11)})  # 11 positions: the last range is shorter
    assert odd == [(0, 2), (3, 5), (6, 8), (9, 10)] and position_bins({}) == []


def test_plot_accuracy_vs_position_binned(tmp_path: Path) -> None:
    records = [{"method": "ram", "ratio": 8.0, "gold_position": p, "accuracy": int(i % 2 == 0)}
               for p in range(20) for i in range(5)]
    _assert_png(plot_accuracy_vs_position(records, tmp_path / "binned.png"))


def _write_records(folder: Path, records: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _rec(method: str, ratio: float | None, qid: str, acc: float) -> dict:
    return {"method": method, "ratio": ratio, "id": qid, "accuracy": acc, "context_tokens": 10}


def test_length_study_script_joins_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "length_study.py"
    main = runpy.run_path(str(script))["main"]
    # setting "10": q0-q2; setting "20": two folders, the first (new adapter) wins on ram rows
    _write_records(tmp_path / "k10", [_rec("ram", 8.0, f"q{i}", 1.0) for i in range(3)]
                   + [_rec("full", None, f"q{i}", 0.0) for i in range(3)])
    _write_records(tmp_path / "new", [_rec("ram", 8.0, "q0", 1.0), _rec("ram", 8.0, "q1", 1.0)])
    _write_records(tmp_path / "old", [_rec("ram", 8.0, f"q{i}", 0.0) for i in range(4)]
                   + [_rec("full", None, f"q{i}", 1.0) for i in range(4)] + [_rec("bm25", 8.0, "q0", 1.0)])
    plot = tmp_path / "study.png"
    assert main(["--setting", f"10={tmp_path / 'k10'}", "--setting", f"20={tmp_path / 'new'},{tmp_path / 'old'}",
                 "--keep", "ram:8", "full", "--xlabel", "documents", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 questions present in every setting")
    rows = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert "bm25" not in out  # not kept
    full = rows["| full"].split(" | ")
    assert full[2].startswith("0.000") and "n=3" in full[2] and full[3].startswith("1.000")
    ram = rows["| ram"].split(" | ")
    # q0, q1 from the new folder (1.0), q2 only in the old one (0.0); q3 is not in every setting
    assert ram[2].startswith("1.000") and ram[3].startswith("0.667") and "n=3" in ram[3]
    assert plot.stat().st_size > 0


def test_plot_accuracy_vs_setting_rejects_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_accuracy_vs_setting({}, tmp_path / "x.png", xlabel="documents")
    with pytest.raises(ValueError):
        plot_accuracy_vs_setting({"10": [{"method": "ram", "ratio": 8.0, "accuracy": None}]}, tmp_path / "x.png",
                                 xlabel="documents")
