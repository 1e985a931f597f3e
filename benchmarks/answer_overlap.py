"""How much of a method's NQ dev accuracy is on answers that also answer a training question.

    PYTHONPATH=src python benchmarks/answer_overlap.py runs/eval-nq300 --method ram

Our NQ train/dev split is by question (``ram.data.nq_multidoc.split_of``), so no dev question
or gold passage is trained on, but answer strings repeat across questions ("1945", "the
United States"). A decoder tuned on the train split may have learned such answers. This prints,
per ratio, the share of dev questions whose gold answers include one that is also a train
answer, and the accuracy on those questions and on the rest.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

from ram.data.nq_multidoc import split_of
from ram.eval.runner import PREDICTIONS, read_predictions

SOURCE = Path("../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz")


def train_answers(source: Path) -> set[str]:
    answers: set[str] = set()
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if split_of(record["question"]) == "train":
                answers.update(a.lower().strip() for a in record["answers"])
    return answers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--method", nargs="+", default=["ram"])
    p.add_argument("--source", type=Path, default=SOURCE)
    args = p.parse_args(argv)

    seen = train_answers(args.source)
    groups: dict[tuple[str, float | None], list[tuple[bool, float]]] = defaultdict(list)
    for rec in read_predictions(args.folder / PREDICTIONS, repair=False):
        if rec["method"] in args.method:
            overlap = any(a.lower().strip() in seen for a in rec["answers"])
            groups[(rec["method"], rec.get("ratio"))].append((overlap, float(rec["accuracy"])))
    print("| method | ratio | n | answer also a train answer | accuracy on those | accuracy on the rest |")
    print("|---|---|---|---|---|---|")
    for (method, ratio), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        hit = [acc for overlap, acc in rows if overlap]
        rest = [acc for overlap, acc in rows if not overlap]
        mean = lambda xs: f"{sum(xs) / len(xs):.3f} ({len(xs)})" if xs else "—"  # noqa: E731
        label = "—" if ratio is None else f"{ratio:g}x"
        print(f"| {method} | {label} | {len(rows)} | {len(hit) / len(rows):.2f} | {mean(hit)} | {mean(rest)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
