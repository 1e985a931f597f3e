"""Do the decode-step attentions compute the right thing on this device and dtype? (seconds)

    PYTHONPATH=src python benchmarks/check_decode_attention.py --device cuda      # bf16 on a GPU
    PYTHONPATH=src python benchmarks/check_decode_attention.py --device cpu       # fp32 here

Timing a decode step says nothing if it computes the wrong thing, and the GPU paths (the flash
kernel and its log-sum-exp in ``fast-prefix``) never run in the CPU test suite. This check runs
first in a GPU loan (``RAM_BENCH_STEPS="check prefix split"``):

1. one one-token attention call at Qwen3-4B's heads (32 query, 8 KV, head dim 128) over a cache
   of ``--length`` prompt slots plus a 31-slot decode tail, for ``fast``'s SDPA step,
   ``fast-split`` and ``fast-prefix``, each against an fp64 reference; an engine whose error is
   more than ``--tolerance`` times the SDPA step's (plus a small floor) is a mismatch;
2. greedy ids of every engine against ``hf`` on a small random Qwen3 (eager steps), as the share
   of equal ids (in bf16 a near-tie can flip a token, so this is reported, not enforced).

Prints one line per result and exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ram.bench.engine import _fast_attention, _prefix_attention, _split_attention, generate
from ram.bench.latency import resolve_device, resolve_dtype
from ram.bench.shapes import build_random_model, tiny

TAIL = 31  # decode slots after the prompt (32 new tokens)


def attention_errors(device: torch.device, dtype: torch.dtype, length: int, seed: int) -> dict[str, float]:
    """Max abs error of each one-token attention against fp64, at Qwen3-4B's head layout."""
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
    out = {
        "sdpa (fast)": _fast_attention(module, q, k, v, full_d, scaling=scale)[0],
        "split (fast-split)": _split_attention(module, q, k, v, full_d, scaling=scale)[0],
        "prefix (fast-prefix)": _prefix_attention(module, q, k, v, tail_d, scaling=scale)[0],
    }
    return {name: (o.double().cpu() - ref).abs().max().item() for name, o in out.items()}


def id_agreement(device: torch.device, dtype: torch.dtype, seed: int, prompt_tokens: int) -> dict[str, float]:
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
    ref, _ = generate(model, embeds, mask, 24, engine="hf")
    agree = {}
    for engine in ("fast", "fast-split", "fast-prefix"):
        out, _ = generate(model, embeds, mask, 24, engine=engine, compile=False)
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
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"check_decode_attention: {gpu}, {dtype}, torch {torch.__version__}, cache {args.length}+{TAIL}")
    errors = attention_errors(device, dtype, args.length, args.seed)
    floor = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    limit = args.tolerance * errors["sdpa (fast)"] + floor
    failed = False
    for name, err in errors.items():
        bad = err > limit
        failed |= bad
        print(f"attention {name}: max abs error {err:.2e} against fp64 (limit {limit:.2e}) {'MISMATCH' if bad else 'ok'}")
    for engine, share in id_agreement(device, dtype, args.seed, args.prompt_tokens).items():
        print(f"ids {engine}: {share:.0%} equal to hf over 24 greedy tokens")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
