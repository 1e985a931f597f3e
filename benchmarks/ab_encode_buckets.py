"""Encoder time, one padded batch against rows grouped by width, on real text (A/B, interleaved).

    PYTHONPATH=src python benchmarks/ab_encode_buckets.py default [--threads 2] [--repeats 5]

For the bench's 4k text and for one NQ dev question with 20 and 40 documents, prints the rows,
the share of real tokens before and after grouping, the width groups, the median time of each
variant (the two alternate, so both see the machine's speed of the moment) and the largest
difference between their states at real tokens. Needs ../shared/data (NQ-open oracle file).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from ram.bench.latency import _text_of_length, make_subject
from ram.data.nq_multidoc import build_nq_multidoc
from ram.encoder import encode_rows, pad_to, width_buckets
from ram.model import RAMModel
from ram.segment import segment_batch

NQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "nq-open" / "nq-open-oracle.dev.jsonl.gz"
QUESTION = "who wrote the origin of species and when was it published?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="shipped adapter name or RAM directory (e.g. default, default-fast)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--nq", type=Path, default=NQ)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = RAMModel.from_pretrained(args.model)
    encoder, tok = model.encoder.eval(), model.tokenizer
    subject = make_subject(model, torch.device("cpu"), torch.float32)
    texts = {"bench 4k": [_text_of_length(subject, 4096)]}
    for docs in (20, 40):
        example = build_nq_multidoc(args.nq, docs, split="dev", limit=1)[0]
        texts[f"NQ {docs} docs"] = list(example.documents)

    def single_batch(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return encoder(input_ids=ids, attention_mask=mask.long(), use_cache=False).last_hidden_state

    def grouped(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return encode_rows(encoder, ids, mask, 1 << 30)

    for label, docs in texts.items():
        seg = segment_batch([docs], tok, model.config.segment_tokens, model.config.word_snap_window)
        q = tok([QUESTION], add_special_tokens=False, return_tensors="pt")
        width = seg.ids.shape[1]
        ids = torch.cat([pad_to(q["input_ids"], width, 0), seg.ids])
        mask = torch.cat([pad_to(q["attention_mask"].bool(), width, False), seg.mask])
        widths = mask.sum(1)
        uppers = width_buckets(widths)
        padded_after = sum(min(u for u in uppers if u >= w) for w in widths.tolist())
        times: dict[str, list[float]] = {"single": [], "grouped": []}
        with torch.inference_mode():
            single_batch(ids, mask), grouped(ids, mask)  # warm-up
            for _ in range(args.repeats):
                for name, fn in (("single", single_batch), ("grouped", grouped)):
                    start = time.perf_counter()
                    fn(ids, mask)
                    times[name].append(time.perf_counter() - start)
            diff = (single_batch(ids, mask)[mask] - grouped(ids, mask)[mask]).abs().max().item()
        single, group = statistics.median(times["single"]), statistics.median(times["grouped"])
        print(f"{args.model} | {label} | rows {len(widths)} | fill {float(widths.sum()) / mask.numel():.3f} -> "
              f"{float(widths.sum()) / padded_after:.3f} | groups {uppers} | single {single:.3f}s | grouped "
              f"{group:.3f}s | {single / group:.2f}x | max diff {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
