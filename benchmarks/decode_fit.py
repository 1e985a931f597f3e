"""Decode cost per token as a straight line in the cache length, per `ram bench` JSON file.

    PYTHONPATH=src python benchmarks/decode_fit.py docs/bench-gpu/qwen3-4b-cuda-fast-cenc.json

A one-token step reads every weight once (a fixed cost) and the whole KV cache (a cost that
grows with the decoder's input length). Fitting ``ms/token = fixed + per_1k x positions/1000``
over a file's rows (full prompt and RAM rows alike: they differ only in cache length) splits
the two, and the same fit of the bandwidth bound says how far each part is from memory speed.
A decode attention that reads the cache at memory speed has a ``per 1k`` near the bound's;
the fixed part is the rest of the step (matmuls, norms, kernel launches).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def fit(rows: list[dict], key: str) -> tuple[float, float]:
    """Least-squares ``key = fixed + per_1k * positions / 1000`` over rows -> (fixed, per_1k)."""
    x = np.array([r["decoder_input_tokens"] / 1000 for r in rows])
    y = np.array([r[key] for r in rows])
    per_1k, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(per_1k)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="ram bench JSON files")
    args = p.parse_args(argv)
    print("| file | engine | rows | positions | fixed ms | ms per 1k positions | bound: fixed ms | bound: ms per 1k "
          "| fixed vs bound | per 1k vs bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.files:
        data = json.loads(path.read_text())
        rows = [r for r in data.get("rows", []) if r.get("decode_ms_per_token") and r.get("decode_bound_ms")]
        if len({r["decoder_input_tokens"] for r in rows}) < 2:
            print(f"{path}: fewer than two cache lengths with a decode time and a bound; skipped", file=sys.stderr)
            continue
        fixed, per_1k = fit(rows, "decode_ms_per_token")
        bound_fixed, bound_per_1k = fit(rows, "decode_bound_ms")
        lengths = sorted(r["decoder_input_tokens"] for r in rows)
        print(f"| {path.name} | {rows[0]['engine']} | {len(rows)} | {lengths[0]}–{lengths[-1]} | {fixed:.2f} | "
              f"{per_1k:.3f} | {bound_fixed:.2f} | {bound_per_1k:.3f} | {fixed / bound_fixed:.1f}x | "
              f"{per_1k / bound_per_1k:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
