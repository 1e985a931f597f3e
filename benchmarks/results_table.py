"""One results table (and accuracy-vs-ratio plot) from several `ram eval` folders.

    PYTHONPATH=src python benchmarks/results_table.py runs/eval-nq20-dev runs/eval-nq300 \
        --drop "runs/eval-nq20-dev:ram" --plot docs/nq20-accuracy-vs-ratio.png

Reads every folder's ``predictions.jsonl`` (not its ``summary.json``, which covers only the
examples of that folder's last run), keeps the examples that every listed folder evaluated
with at least one method (so all rows share one question set unless a method stopped early:
its ``n`` says so), summarises each (method, ratio) with ``ram.eval.runner.summarize`` and
prints a markdown table in the layout of ``docs/results.md``. ``--drop DIR:METHOD`` leaves out
a folder's rows of one method (e.g. ``ram`` rows made by an older adapter); ``--rename
DIR:METHOD=LABEL`` relabels them instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ram.eval.report import METHOD_ORDER as ORDER, plot_accuracy_vs_ratio
from ram.eval.runner import PREDICTIONS, read_predictions, summarize



def _split(spec: str) -> tuple[str, str]:
    folder, _, rest = spec.rpartition(":")
    if not folder or not rest:
        raise SystemExit(f"expected DIR:METHOD, got {spec!r}")
    return str(Path(folder)), rest


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--drop", action="append", default=[], metavar="DIR:METHOD")
    p.add_argument("--rename", action="append", default=[], metavar="DIR:METHOD=LABEL")
    p.add_argument("--plot", type=Path, default=None, help="write an accuracy-vs-ratio PNG of the rows")
    args = p.parse_args(argv)

    drop = {_split(spec) for spec in args.drop}
    rename = {}
    for spec in args.rename:
        key, _, label = spec.partition("=")
        rename[_split(key)] = label
    records, id_sets = [], []
    for folder in args.dirs:
        recs = read_predictions(folder / PREDICTIONS, repair=False)
        if not recs:
            raise SystemExit(f"{folder / PREDICTIONS}: no predictions")
        id_sets.append({r["id"] for r in recs})
        for rec in recs:
            if (str(folder), rec["method"]) in drop:
                continue
            label = rename.get((str(folder), rec["method"]))
            records.append({**rec, "method": label} if label else rec)
    shared = set.intersection(*id_sets)
    records = [r for r in records if r["id"] in shared]
    order = list(ORDER) + sorted({r["method"] for r in records} - set(ORDER))
    rows = summarize(records, order)
    print(f"{len(shared)} questions evaluated in every folder\n")
    print("| method | ratio | n | substring acc. [95% CI] | EM | F1 | positive recall | achieved ratio | "
          "context positions | latency s/question |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lo, hi = row["accuracy_ci"]
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:g}x"
        print(f"| {row['method']} | {ratio} | {row['n']} | {row['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{_fmt(row['em'])} | {_fmt(row['f1'])} | {_fmt(row['positive_recall_mean'])} | "
              f"{_fmt(row['achieved_ratio_mean'], 2)} | {_fmt(row['context_tokens_mean'], 0)} | "
              f"{_fmt(row['latency_s_mean'], 2)} |")
    if args.plot is not None:
        plot_accuracy_vs_ratio(rows, args.plot)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
