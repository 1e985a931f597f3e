"""``ram eval``: evaluate RAM and baselines on a QA dataset (resumable result directory).

Importing this module is cheap (no torch); the runner loads on first use.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence

from ..config import DTYPE_NAMES, pick_device

logger = logging.getLogger(__name__)

__all__ = ["add_eval_parser", "cmd_eval", "format_table"]

FORMATS = ("auto", "examples", "ram", "dpr", "hotpot", "leval", "kv")
DEFAULT_RATIOS = (4.0, 8.0)


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``eval`` sub-command on an ``add_subparsers()`` object."""
    p = subparsers.add_parser(
        "eval", help="evaluate methods (RAM, ablations, baselines) on a QA dataset (resumable)",
        description="Answer every example with each method at each ratio; write predictions.jsonl, "
                    "summary.json, summary.md and plots to --out. Rerunning with the same --out resumes.",
    )
    p.add_argument("--data", required=True, help="dataset file (JSONL, JSON, .gz)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="reader (default: detect)")
    p.add_argument("--docs", default=None, metavar="K",
                   help="build NQ multi-document contexts (K documents, or LO-HI) from a DPR/NQ-open --data file")
    p.add_argument("--gold-position", default=None, metavar="random|INT",
                   help="with --docs: where the gold document goes (default random)")
    p.add_argument("--split", choices=("all", "train", "dev"), default="all",
                   help="keep only questions of this hash split (the split ram train uses)")
    p.add_argument("--method", nargs="+", required=True, metavar="METHOD",
                   help="closed-book, full, gold-only, ram, ram-untrained, ram-all-skim, ram-close-only, "
                        "ram-skim-cap, random, bm25, embedding")
    p.add_argument("--ratio", nargs="+", type=float, default=list(DEFAULT_RATIOS), metavar="R",
                   help="compression ratios for methods that take one (default: 4 8)")
    p.add_argument("--model", default="default", help="'default', 'default-fast', a built-in backbone, or a RAM directory")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--segment-cache-mib", type=float, default=512.0, metavar="MIB",
                   help="memory for reusing segment encodings across examples that share documents "
                        "(L-Eval: many instructions per document); 0 turns it off (default 512)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32",
                   help="weights and activations of the RAM and backbone models (default float32; the embedding "
                        "baseline stays float32)")
    p.add_argument("--engine", choices=("hf", "fast"), default="hf",
                   help="decoding: hf = transformers generate; fast = static KV cache (same greedy answers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="result directory (created; reused to resume)")
    return p


def _load(args: argparse.Namespace) -> list[Any]:
    from ..data import build_nq_multidoc, load_examples, parse_docs_arg, parse_gold_position, split_of

    path = Path(args.data)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.segment_cache_mib < 0:
        raise ValueError(f"--segment-cache-mib must be >= 0, got {args.segment_cache_mib:g}")
    if args.docs is not None:
        gold = parse_gold_position(args.gold_position or "random")
        return build_nq_multidoc(path, parse_docs_arg(args.docs), gold_position=gold, seed=args.seed,
                                 split=args.split, limit=args.limit)
    if args.gold_position is not None:
        raise ValueError("--gold-position needs --docs (it places the gold document of built NQ contexts)")
    if args.split == "all":
        return load_examples(path, args.format, limit=args.limit)
    examples = [e for e in load_examples(path, args.format)
                if e.meta.get("split", split_of(e.question)) == args.split]
    return examples[: args.limit] if args.limit is not None else examples


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A compact fixed-width table of summary rows."""
    head = ("method", "ratio", "n", "acc", "95% CI", "f1", "rougeL", "ctx", "x", "trunc", "lat s")
    lines = [head]
    for r in rows:
        ci = r.get("accuracy_ci") or [None, None]
        lines.append((
            str(r["method"]), "-" if r.get("ratio") is None else f"{r['ratio']:g}", str(r["n"]),
            _num(r.get("accuracy"), 3), f"{_num(ci[0], 2)}-{_num(ci[1], 2)}", _num(r.get("f1"), 3),
            _num(r.get("rouge_l"), 3), _num(r.get("context_tokens_mean"), 0),
            _num(r.get("achieved_ratio_mean"), 2), _num(r.get("truncated_share"), 2), _num(r.get("latency_s_mean"), 3),
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``ram eval``; user errors raise ValueError (the CLI prints ``error: ...``, exit 2)."""
    from .methods import get_method

    for name in args.method:  # fail before reading data or loading models
        get_method(name)
    examples = _load(args)
    if not examples:
        raise ValueError(f"no examples in {args.data}" + (f" for split {args.split}" if args.split != "all" else ""))

    from .runner import SUMMARY_MD, run_eval

    out = Path(args.out)
    rows = run_eval(examples, args.method, args.ratio, args.model, out, seed=args.seed, limit=args.limit,
                    batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                    progress=not args.no_progress, device=pick_device(args.device),
                    segment_cache_mib=args.segment_cache_mib, engine=args.engine, dtype=args.dtype)
    print(f"summary: {out / SUMMARY_MD} ({len(examples)} examples; predictions in {out / 'predictions.jsonl'})")
    print(format_table(rows))
    return 0
