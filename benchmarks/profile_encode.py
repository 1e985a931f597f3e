"""Where RAM's compression time goes: the encoder pass over one long context, a few ways.

    PYTHONPATH=src python benchmarks/profile_encode.py --shape qwen3-4b --length 32768 --device cuda

Times (median of repeats after warm-ups) the encoder pass as ``ram`` runs it and variants that
isolate one cost each, then prints the top kernels of the ``ram`` pass from torch.profiler:

- ``ram``: question + segments, rows grouped by width (what ``encode_question_and_segments`` does)
- ``no-question``: the segments alone; every row is full, so no padding mask is built
- ``one-chunk``: as ``ram`` but with every row in one forward (no ``max_batch_tokens`` split)
- ``split-question``: the question in its own forward, then the full segment rows (no padding)
- ``compiled``: ``ram`` through ``torch.compile(encoder)`` (compile time not counted)
- ``layers-only``: the decoder layers' matmul work alone, as an ideal-ish floor (FLOPs / time)

Random weights, no checkpoint. Writes ``profile_encode.json`` to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ram.bench.latency import make_subject, prepare, resolve_device, resolve_dtype
from ram.encoder import encode_question_and_segments, encode_rows


def _time(fn, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="qwen3-4b")
    p.add_argument("--length", type=int, default=32768)
    p.add_argument("--encoder-layers", type=int, default=8)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    subject = make_subject(args.shape, device, dtype, encoder_layers=args.encoder_layers)
    prep = prepare(subject, args.length, torch.Generator().manual_seed(0))
    encoder, limit = subject.encoder, subject.max_batch_tokens
    ids, mask, lengths, q_ids = prep.ids, prep.mask, prep.lengths, prep.q_ids
    q_mask = torch.ones_like(q_ids, dtype=torch.bool)
    tokens = int(mask.sum()) + q_ids.numel()
    config = encoder.config
    inter = config.intermediate_size
    hidden, heads, kv, head_dim = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter  # weights of one block
    flops = 2 * per_layer * config.num_hidden_layers * tokens

    variants = {
        "ram": lambda: encode_question_and_segments(encoder, q_ids, q_mask, ids, mask, lengths, limit),
        "no-question": lambda: encode_rows(encoder, ids, mask, limit),
        "one-chunk": lambda: encode_question_and_segments(encoder, q_ids, q_mask, ids, mask, lengths, 1 << 30),
    }
    variants["split-question"] = lambda: (encode_rows(encoder, q_ids, q_mask, limit), encode_rows(encoder, ids, mask, limit))
    a = torch.randn(tokens, hidden, device=device, dtype=dtype)
    w_up = torch.randn(hidden, inter, device=device, dtype=dtype)
    w_qkv = torch.randn(hidden, head_dim * (heads + 2 * kv), device=device, dtype=dtype)

    def layers_only() -> None:
        for _ in range(config.num_hidden_layers):
            a @ w_qkv
            for _ in range(3):
                a @ w_up  # gate, up, and down's FLOPs (same size)
            a @ w_qkv[:, : head_dim * heads]  # o_proj's FLOPs

    variants["layers-only"] = layers_only
    compiled = torch.compile(encoder)
    variants["compiled"] = lambda: encode_question_and_segments(compiled, q_ids, q_mask, ids, mask, lengths, limit)
    rows = {}
    with torch.inference_mode():
        for name, fn in variants.items():
            try:
                seconds = _time(fn, device, args.repeats, args.warmup)
            except Exception as err:  # noqa: BLE001 - a variant that cannot run (e.g. compile) is reported
                print(f"{name:12s} failed: {type(err).__name__}: {str(err)[:200]}", flush=True)
                rows[name] = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
                continue
            rows[name] = {"s": seconds, "tflops": flops / seconds / 1e12}
            rate = flops / seconds
            shown = f"{rate / 1e12:6.0f} TFLOP/s" if rate >= 1e12 else f"{rate / 1e9:6.0f} GFLOP/s"  # GPU / CPU
            print(f"{name:14s} {seconds * 1000:8.1f} ms  {shown} (of block matmuls)", flush=True)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            variants["ram"]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=70)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        info = {"shape": args.shape, "length": args.length, "tokens": tokens, "encoder_layers": args.encoder_layers,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "dtype": str(dtype), "torch": torch.__version__, "block_matmul_flops": flops, "variants": rows,
                "profile": table}
        (args.out / "profile_encode.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
