"""Packaging a (possibly multi-stage) run: adapter copied, curves drawn, card names every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ram.train.config import TrainConfig
from ram.train.package import main, package, stages


def _fake_run(root: Path, name: str, steps: int, step_s: float, init_from: str | None = None, **cfg) -> Path:
    run = root / name
    (run / "final").mkdir(parents=True)
    TrainConfig(out=str(run), init_from=init_from, steps=steps, **cfg).dump(run / "train_config.json")
    rows = [{"step": i + 1, "loss": 3.0 - i / steps, "nll": 2.0 - i / steps, "contrastive": 1.0,
             "positive_recall": 0.5, "step_s": step_s} for i in range(steps)]
    rows.append({"step": steps, "eval": {"recall@4": 0.9}})
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n{cut")
    (run / "final" / "ram_config.json").write_text(json.dumps({"stage": name}))
    (run / "final" / "adapter.safetensors").write_bytes(name.encode())
    return run


def test_two_stage_run_is_packaged_with_both_stages(tmp_path: Path) -> None:
    first = _fake_run(tmp_path, "s1", 30, 6.0)
    second = _fake_run(tmp_path, "s2", 20, 9.0, init_from=str(first / "final"), decoder_policy="lora", lora_rank=16,
                       encoder_layers=4)
    assert stages(second) == [first, second]
    eval_dir = tmp_path / "ev"
    eval_dir.mkdir()
    (eval_dir / "summary.json").write_text(json.dumps([
        {"method": "ram", "ratio": 8.0, "n": 200, "accuracy": 0.25, "accuracy_ci": [0.2, 0.3],
         "positive_recall_mean": 0.8, "achieved_ratio_mean": 8.0, "context_tokens_mean": 317}]))
    other = tmp_path / "base"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps([
        {"method": m, "ratio": None, "n": 200, "accuracy": 0.1, "accuracy_ci": [0.05, 0.15]} for m in ("full", "ram")]
        + [{"method": "closed-book", "ratio": None, "n": 200, "accuracy": 0.03, "accuracy_ci": [0.01, 0.06],
            "positive_recall_mean": None, "achieved_ratio_mean": None, "context_tokens_mean": 0.0}]))
    out = package(second, tmp_path / "pkg", [eval_dir, f"{other}=full,closed-book"])
    assert (out / "adapter.safetensors").read_bytes() == b"s2"  # the last stage's weights
    assert (out / "training_curves.png").stat().st_size > 1000
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# RAM adapter for SmolLM2-135M-Instruct (`pkg`, 4-layer encoder)") and "`make train-pkg`" in card
    assert "2 stages" in card
    assert "stage 1 (`" in card and "30 steps" in card and "3.0 min" in card
    assert "stage 2 (`" in card and "decoder lora (rank 16" in card and "20 steps" in card
    assert "6.0 min of steps in all" in card
    assert "| ev | ram | 8x | 200 | 0.250 [0.200, 0.300] | 0.800 |" in card
    assert "| base | full | — | 200 | 0.100" in card and "| base | ram |" not in card  # filtered
    assert "| base | closed-book | — | 200 | 0.030 [0.010, 0.060] | — | — | 0 |" in card  # no ratio, no recall


def test_single_stage_and_missing_final(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _fake_run(tmp_path, "only", 10, 1.0)
    assert stages(run) == [run]
    assert main([str(run), "--to", str(tmp_path / "p")]) == 0
    assert "1 stage," in (tmp_path / "p" / "MODEL_CARD.md").read_text()
    (run / "final" / "ram_config.json").unlink()
    assert main([str(run), "--to", str(tmp_path / "q")]) == 2
    assert "no finished model" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
