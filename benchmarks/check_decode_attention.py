"""Do the decode-step attentions compute the right thing on this device and dtype? (seconds)

    PYTHONPATH=src python benchmarks/check_decode_attention.py --device cuda      # bf16 on a GPU
    PYTHONPATH=src python benchmarks/check_decode_attention.py --device cpu       # fp32 here

Timing a decode step says nothing if it computes the wrong thing, and the GPU paths (the flash
kernel and its log-sum-exp in ``fast-prefix``) never run in the CPU test suite. This check runs
first in a GPU loan (``RAM_BENCH_STEPS="check prefix triton"``):

1. one one-token attention call at Qwen3-4B's heads (32 query, 8 KV, head dim 128) over a cache
   of ``--length`` prompt slots plus a 31-slot decode tail, for ``fast``'s SDPA step,
   ``fast-split``, ``fast-prefix`` and (where Triton runs) ``fast-triton``, each against an
   fp64 reference; an engine whose error is
   more than ``--tolerance`` times the SDPA step's (plus a small floor) is a mismatch;
2. greedy ids of every engine (``--engines``) against ``hf`` on a small random Qwen3 (eager steps), as the share
   of equal ids (in bf16 a near-tie can flip a token, so this is reported, not enforced).

3. each attention's median time per call (``--repeats``, 50 by default on CUDA) and the K/V bytes it read per
   second: how close one layer's decode attention is to the memory bandwidth, before any
   engine is timed.

Prints one line per result and exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ram.bench.decode_kernel import available as triton_available
from ram.bench.engine import _fast_attention, _prefix_attention, _split_attention, _triton_attention, generate
from ram.bench.latency import resolve_device, resolve_dtype
from ram.bench.shapes import build_random_model, tiny

TAIL = 31  # decode slots after the prompt (32 new tokens)


ENGINES = ("fast", "fast-split", "fast-prefix", "fast-triton")


def attention_errors(device: torch.device, dtype: torch.dtype, length: int, seed: int,
                     engines: list[str], repeats: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """Max abs error of each engine's one-token attention against fp64, at Qwen3-4B's head layout
    (``fast``'s SDPA step always: it sets the limit); with ``repeats``, also each call's median
    time in microseconds."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    heads, kv_heads, dim = 32, 8, 128
    query = torch.randn(1, heads, 1, dim, generator=gen)
    key = torch.randn(1, kv_heads, length + TAIL, dim, generator=gen)
    value = torch.randn(1, kv_heads, length + TAIL, dim, generator=gen)
    tail = torch.zeros(1, 1, 1, TAIL, dtype=torch.bool)
    tail[..., :12] = True  # the 13th decode step: 12 decode slots written
    full = torch.cat([torch.ones(1, 1, 1, length, dtype=torch.bool), tail], -1)
    module = torch.nn.Module()
    module.num_key_value_groups = heads // kv_heads
    module.training = False
    scale = dim**-0.5
    ref, _ = sdpa_attention_forward(module, query.double(), key.double(), value.double(), full, scaling=scale)
    q, k, v = (t.to(device, dtype) for t in (query, key, value))
    full_d, tail_d = full.to(device), tail.to(device)
    calls = {"sdpa (fast)": lambda: _fast_attention(module, q, k, v, full_d, scaling=scale)[0]}
    if "fast-split" in engines:
        calls["split (fast-split)"] = lambda: _split_attention(module, q, k, v, full_d, scaling=scale)[0]
    if "fast-prefix" in engines:
        calls["prefix (fast-prefix)"] = lambda: _prefix_attention(module, q, k, v, tail_d, scaling=scale)[0]
    if "fast-triton" in engines:
        calls["triton (fast-triton)"] = lambda: _triton_attention(module, q, k, v, full_d, scaling=scale)[0]
    errors = {name: (call().double().cpu() - ref).abs().max().item() for name, call in calls.items()}
    times = {name: _median_us(call, repeats, device) for name, call in calls.items()} if repeats else {}
    return errors, times


def _median_us(call: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> float:
    """Median time of one call in microseconds (CUDA events on a GPU), after 3 warm-up calls."""
    for _ in range(3):
        call()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start_event, end_event in events:
        start_event.record()
        call()
        end_event.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in events) * 1e3


def id_agreement(device: torch.device, dtype: torch.dtype, seed: int, prompt_tokens: int,
                 engines: list[str], new_tokens: int) -> dict[str, float]:
    """Share of greedy ids equal to ``hf``'s, per engine, on a small random Qwen3 (one unpadded prompt)."""
    config = tiny()  # a fresh config per call
    config.head_dim, config.num_attention_heads, config.num_key_value_heads = 64, 4, 2
    config.hidden_size, config.intermediate_size, config.initializer_range = 256, 512, 0.1
    model = build_random_model(config, dtype=dtype, device=device, seed=seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (1, prompt_tokens), generator=gen).to(device)
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(ids)
    mask = torch.ones(1, ids.shape[1], dtype=torch.bool, device=device)
    ref, _ = generate(model, embeds, mask, new_tokens, engine="hf")
    agree = {}
    for engine in engines:
        out, _ = generate(model, embeds, mask, new_tokens, engine=engine, compile=False)
        agree[engine] = (out == ref).float().mean().item()
    return agree


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--length", type=int, default=32768, help="prompt slots in the cache")
    p.add_argument("--prompt-tokens", type=int, default=3000, help="prompt length of the greedy-ids check")
    p.add_argument("--tolerance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--new-tokens", type=int, default=24, help="greedy tokens of the ids check")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls of each attention (median reported, with the K/V bytes it read per "
                        "second); default 50 on CUDA, none elsewhere")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=None,
                   help="engines to check (default: all; fast-triton where Triton runs on this device)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    engines = args.engines or [e for e in ENGINES if e != "fast-triton" or triton_available(device)]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"check_decode_attention: {gpu}, {dtype}, torch {torch.__version__}, cache {args.length}+{TAIL}")
    repeats = args.repeats if args.repeats is not None else (50 if device.type == "cuda" else 0)
    errors, times = attention_errors(device, dtype, args.length, args.seed, engines, repeats)
    floor = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    limit = args.tolerance * errors["sdpa (fast)"] + floor
    failed = False
    for name, err in errors.items():
        bad = err > limit
        failed |= bad
        print(f"attention {name}: max abs error {err:.2e} against fp64 (limit {limit:.2e}) {'MISMATCH' if bad else 'ok'}")
    kv_bytes = 2 * 8 * (args.length + TAIL) * 128 * torch.finfo(dtype).bits // 8  # one layer's K and V
    for name, us in times.items():
        print(f"time {name}: {us:.1f} us per call, {kv_bytes / us / 1e3:.0f} GB/s of K/V read (one layer, batch 1)")
    for engine, share in id_agreement(device, dtype, args.seed, args.prompt_tokens, engines, args.new_tokens).items():
        print(f"ids {engine}: {share:.0%} equal to hf over {args.new_tokens} greedy tokens")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
