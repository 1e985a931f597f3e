"""One table (and plot) of accuracy across settings: number of documents, or gold position.

    PYTHONPATH=src python benchmarks/length_study.py \
        --setting "10=runs/eval-nq10-dev" --setting "20=runs/eval-nq300,runs/eval-nq20-dev" \
        --setting "40=runs/eval-nq40-dev" --keep ram:4 ram:8 bm25:4 bm25:8 full \
        --xlabel "documents in the context" --plot docs/nq-docs-study.png

Each ``--setting LABEL=DIR[,DIR...]`` is one column. Its records come from the folders'
``predictions.jsonl``; where two folders hold the same (method, ratio, question), the first
folder listed wins (list the folder with the current adapter first). Only questions present in
every setting are kept, so all columns share one question set; a cell's ``n`` shows where a
method stopped early. ``--keep METHOD[:RATIO]`` limits the rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ram.eval.report import METHOD_ORDER as ORDER, plot_accuracy_vs_setting
from ram.eval.runner import PREDICTIONS, read_predictions, summarize



def _parse_setting(spec: str) -> tuple[str, list[Path]]:
    label, sep, dirs = spec.partition("=")
    if not sep or not label or not dirs:
        raise SystemExit(f"expected LABEL=DIR[,DIR...], got {spec!r}")
    return label, [Path(d) for d in dirs.split(",") if d]


def _parse_keep(spec: str) -> tuple[str, float | None]:
    method, sep, ratio = spec.partition(":")
    return method, (float(ratio) if sep else None)


def load_setting(folders: list[Path]) -> list[dict[str, Any]]:
    """Records of several eval folders, the first folder winning on duplicates."""
    seen: set[tuple[str, float | None, str]] = set()
    out = []
    for folder in folders:
        recs = read_predictions(folder / PREDICTIONS, repair=False)
        if not recs:
            raise SystemExit(f"{folder / PREDICTIONS}: no predictions")
        for rec in recs:
            key = (rec["method"], rec.get("ratio"), rec["id"])
            if key not in seen:
                seen.add(key)
                out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", action="append", required=True, metavar="LABEL=DIR[,DIR...]")
    p.add_argument("--keep", nargs="+", default=None, metavar="METHOD[:RATIO]",
                   help="rows to show (default: every method and ratio found)")
    p.add_argument("--xlabel", default="setting")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of accuracy across the settings")
    args = p.parse_args(argv)

    settings = [_parse_setting(s) for s in args.setting]
    records = {label: load_setting(dirs) for label, dirs in settings}
    shared = set.intersection(*({r["id"] for r in recs} for recs in records.values()))
    keep = None if args.keep is None else {_parse_keep(k) for k in args.keep}
    rows_by_setting: dict[str, list[dict[str, Any]]] = {}
    for label, recs in records.items():
        recs = [r for r in recs if r["id"] in shared]
        if keep is not None:
            recs = [r for r in recs if (r["method"], r.get("ratio")) in keep]
        rows_by_setting[label] = summarize(recs, ORDER)

    print(f"{len(shared)} questions present in every setting\n")
    labels = list(rows_by_setting)
    print("| method | ratio | " + " | ".join(f"{args.xlabel}: {label}" for label in labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    order = {m: i for i, m in enumerate(ORDER)}
    keys = sorted({(r["method"], r["ratio"]) for rows in rows_by_setting.values() for r in rows},
                  key=lambda k: (order.get(k[0], len(order)), k[0], k[1] is not None, k[1] or 0.0))
    for method, ratio in keys:
        cells = []
        for label in labels:
            row = next((r for r in rows_by_setting[label] if (r["method"], r["ratio"]) == (method, ratio)), None)
            if row is None:
                cells.append("—")
            else:
                lo, hi = row["accuracy_ci"]
                positions = row["context_tokens_mean"]
                length = "" if positions is None else f", {positions:.0f} pos."
                cells.append(f"{row['accuracy']:.3f} [{lo:.2f}, {hi:.2f}] (n={row['n']}{length})")
        shown = "—" if ratio is None else f"{ratio:g}x"
        print(f"| {method} | {shown} | " + " | ".join(cells) + " |")
    if args.plot is not None:
        plot_accuracy_vs_setting(rows_by_setting, args.plot, xlabel=args.xlabel,
                                 title=f"Accuracy by {args.xlabel}")
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
