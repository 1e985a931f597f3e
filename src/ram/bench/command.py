"""``ram bench``: the latency sweep from the command line.

Writes ``<shape>-<device>-<engine>.json|.md|.png`` under ``--out`` (the JSON is rewritten after
every row, so a run cut short keeps what it measured) and prints the markdown table.
Bad input raises ValueError, which the CLI prints as ``error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..config import DTYPE_NAMES

logger = logging.getLogger(__name__)

DEFAULT_LENGTHS = [1024, 2048, 4096]
DEFAULT_RATIOS = [4.0, 8.0, 16.0, 32.0]


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` on the CLI's subparsers (returns the new parser)."""
    from .shapes import SHAPES

    p = subparsers.add_parser(
        "bench", help="latency of full prompts vs RAM compression (stage timings, JSON + plot)",
        description="Time full prompts against RAM at several ratios over context lengths. Shapes other than "
        "'default' use random weights and random token ids (latency needs no trained weights).",
    )
    p.add_argument("--shape", default="default",
                   help=f"'default' (the offline RAM model on real text) or a random-weight shape: {', '.join(SHAPES)}")
    p.add_argument("--model", default=None, metavar="NAME|DIR",
                   help="a shipped adapter (default-fast) or a saved RAM directory (from ram train or "
                        "save_pretrained) to time instead of --shape, on real text like 'default'")
    p.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS, metavar="L", help="context lengths in tokens")
    p.add_argument("--ratios", type=float, nargs="+", default=DEFAULT_RATIOS, metavar="R", help="RAM compression ratios")
    p.add_argument("--engine", nargs="+", default=["hf"], metavar="{hf,fast,fast-flex,fast-split,fast-prefix,fast-triton}",
                   help="decode engine(s): hf = generate(); fast = StaticCache + compiled step; fast-flex = fast "
                        "with FlexAttention for one-token steps (measured 2.6x slower than fast on an H200; kept "
                        "for comparison); fast-split = fast with split-KV one-token steps in plain matmuls; "
                        "fast-prefix = fast with the prompt's cache read by the unmasked flash kernel and the "
                        "decode tail merged by log-sum-exp; fast-triton = fast with a split-KV Triton kernel "
                        "(CUDA only) (the last three not yet timed on a GPU) "
                        "(several: one file each)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="fast engine without torch.compile (eager step, no compile wait; compiled decodes "
                        "faster on CPU too, see docs/results.md)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run (EOS ignored)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (medians are reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per setting first (compilation happens here)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    p.add_argument("--dtype", default=None, choices=DTYPE_NAMES,
                   help="default: float32 on cpu, bfloat16 on cuda")
    p.add_argument("--encoder-layers", type=int, default=None,
                   help="encoder depth (default: 8 for random shapes, the model's own for 'default')")
    p.add_argument("--segment-tokens", type=int, default=None, help="segment size (default 50 / the model's)")
    p.add_argument("--text", default=None, help="text for 'default': a demo JSON or a text file (default examples/demo.json)")
    p.add_argument("--bandwidth-gbs", type=float, default=None,
                   help="memory bandwidth for the decode bound (default: measured by a copy on cuda; none on cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--compile-encoder", action="store_true",
                   help="run RAM's encoder through torch.compile (the warm-ups absorb the compile; fastest on GPU)")
    p.add_argument("--cached", action="store_true",
                   help="also time RAM with segment encodings cached (documents encoded once, before the question)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    p.add_argument("--out", required=True, help="output directory")
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the sweep for each engine on one model; ValueError on bad input."""
    import torch

    from .engine import ENGINES, release
    from .latency import check_settings, machine_info, make_subject, markdown_table, resolve_device, resolve_dtype
    from .latency import MODEL_PREFIX, measure_bandwidth, mode_label, run_bench, write_json, write_report

    label = args.shape  # names the output files: the shape, a shipped adapter's name, or "model"
    if args.model is not None:
        from ..model import SHIPPED_ADAPTERS

        if args.shape != "default":
            raise ValueError("give --model or --shape, not both")
        args.shape = MODEL_PREFIX + str(args.model)
        label = str(args.model) if str(args.model) in SHIPPED_ADAPTERS else "model"
    engines = list(dict.fromkeys(args.engine))
    for engine in engines:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        check_settings(args.shape, args.lengths, args.ratios, engine, args.new_tokens, args.repeats, args.warmup,
                       args.segment_tokens)
    if args.encoder_layers is not None and args.encoder_layers < 1:
        raise ValueError(f"--encoder-layers must be >= 1, got {args.encoder_layers}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if "fast-triton" in engines:
        from .decode_kernel import available

        if not available(device):
            raise ValueError(f"--engine fast-triton needs the triton package and a CUDA device, not {device.type}")
    dtype = resolve_dtype(args.dtype, device)
    start = time.perf_counter()
    subject = make_subject(args.shape, device, dtype, args.encoder_layers, args.segment_tokens, args.text, args.seed)
    machine = machine_info(device)
    bandwidth = args.bandwidth_gbs
    if bandwidth is not None and bandwidth <= 0:
        raise ValueError(f"--bandwidth-gbs must be > 0, got {bandwidth}")
    if bandwidth is None and device.type == "cuda":
        bandwidth = measure_bandwidth(device)
    machine["bandwidth_gbs"] = bandwidth
    print(f"{label}: built in {subject.build_s:.1f}s on {machine.get('gpu') or machine['cpu']} "
          f"({str(dtype).replace('torch.', '')}, encoder {subject.encoder_layers} layers, "
          f"segments of {subject.segment_tokens})", file=sys.stderr)
    for engine in engines:
        compile_ = bool(args.compile) and engine.startswith("fast")
        stem = f"{label}-{device.type}-{engine}{'' if compile_ or engine == 'hf' else '-eager'}"
        stem += "-cenc" if args.compile_encoder else ""
        settings = {
            "shape": label, "model": None if args.model is None else str(args.model), "lengths": args.lengths,
            "ratios": args.ratios, "engine": engine,
            "compile": compile_, "new_tokens": args.new_tokens, "repeats": args.repeats, "warmup": args.warmup,
            "device": str(device), "dtype": str(dtype).replace("torch.", ""), "encoder_layers": subject.encoder_layers,
            "segment_tokens": subject.segment_tokens, "seed": args.seed, "model_build_s": subject.build_s,
            "threads": torch.get_num_threads(), "cached": bool(args.cached),
            "compile_encoder": bool(args.compile_encoder),
        }
        done: list[dict] = []

        def progress(row: dict, stem: str = stem, settings: dict = settings, done: list = done) -> None:
            done.append(row)
            write_json(out / f"{stem}.json", done, machine, {**settings, "complete": False})
            ratio = mode_label(row)
            print(f"[{engine}] L={row['context_tokens']} {ratio}: e2e {row['e2e_s']:.3f}s "
                  f"(prefill {row['prefill_s']:.3f}s, decode {row['decode_ms_per_token']:.1f} ms/token)",
                  file=sys.stderr, flush=True)

        rows = run_bench(
            args.shape, args.lengths, args.ratios, engine=engine, new_tokens=args.new_tokens, repeats=args.repeats,
            warmup=args.warmup, device=device, dtype=dtype, encoder_layers=args.encoder_layers,
            segment_tokens=args.segment_tokens, compile=compile_, seed=args.seed, subject=subject, on_row=progress,
            bandwidth_gbs=bandwidth, cached=args.cached, compile_encoder=args.compile_encoder,
        )
        settings["wall_s"] = time.perf_counter() - start
        paths = write_report(out, stem, rows, machine, {**settings, "complete": True}, plot=args.plot)
        print(markdown_table(rows))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        release(subject.decoder)  # the fast engine's cache and compiled step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m ram.bench.command ...``), same contract as ``ram bench``."""
    parser = argparse.ArgumentParser(prog="ram")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        return cmd_bench(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
