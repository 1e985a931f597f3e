"""The ``ram`` command line: a thin layer over the library.

Every failure a user can cause prints one line ``error: ...`` on stderr and exits with 2,
before anything is written to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .bench.command import add_bench_parser, cmd_bench
from .config import DTYPE_NAMES, pick_device
from .eval.command import add_eval_parser, cmd_eval

logger = logging.getLogger("ram")


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


# ---------------------------------------------------------------------------- input helpers
def read_context(source: str) -> str | list[str]:
    """Text of ``--context``: a UTF-8 text file, ``-`` for stdin, or a JSON file holding a list of
    documents (``["...", ...]`` or ``{"documents": [...]}``)."""
    if source == "-":
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise UsageError(f"context file {source} does not exist")
        if not path.is_file():
            raise UsageError(f"context {source} is not a file")
        data = path.read_bytes()
        name = source
    if b"\x00" in data:
        raise UsageError(f"context {name} looks binary (NUL bytes); give a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"context {name} is not valid UTF-8 (byte {err.start})") from err
    if not text.strip():
        raise UsageError(f"context {name} is empty")
    if name.endswith(".json"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"context {name} is not valid JSON: {err}") from err
        docs = parsed.get("documents") if isinstance(parsed, dict) else parsed
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) and d.strip() for d in docs):
            raise UsageError(f"context {name}: expected a non-empty list of non-empty strings or {{\"documents\": [...]}}")
        return docs
    return text


def check_ratio(ratio: float | None) -> None:
    if ratio is not None and (not math.isfinite(ratio) or ratio < 1):
        raise UsageError(f"--ratio must be a number >= 1 (got {ratio:g})")


def check_question(question: str) -> str:
    if not question or not question.strip():
        raise UsageError("--question is empty")
    return question.strip()


DTYPE_HELP = ("weights and activations (default float32); bfloat16 roughly halves encoding time on CPUs "
              "with AVX512-BF16 or AMX (docs/results.md)")


DEVICE_HELP = "cpu, cuda, cuda:1, ... (default auto: cuda when available)"


def load_model(name: str, dtype: str = "float32", device: str = "auto") -> Any:
    """Load for inference: eval mode, LoRA folded into the weights (no extra matmuls per layer)."""
    import torch

    from .model import RAMModel

    model = RAMModel.from_pretrained(name, dtype=getattr(torch, dtype), device=pick_device(device)).eval()
    model.merge_lora()
    return model


def set_skim_share(model: Any, share: float | None) -> None:
    """Apply ``--max-skim-share`` (validated by RAMConfig)."""
    if share is not None:
        try:
            model.config = dataclasses.replace(model.config, max_skim_share=share)
        except ValueError as err:
            raise UsageError(str(err)) from err


# ---------------------------------------------------------------------------- commands
def cmd_compress(args: argparse.Namespace, answer: bool = False) -> int:
    question = check_question(args.question)
    check_ratio(args.ratio)
    context = read_context(args.context)
    model = load_model(args.model, args.dtype, args.device)
    set_skim_share(model, args.max_skim_share)
    keep_ratio = args.keep_ratio
    ratio = None if keep_ratio is not None else args.ratio
    if answer:
        model.decode_engine = args.engine
        result = model.answer(context, question, ratio=ratio, keep_ratio=keep_ratio, max_new_tokens=args.max_new_tokens)
        cc, payload = result.compressed, result.to_json()
    else:
        cc = model.compress(context, question, ratio=ratio, keep_ratio=keep_ratio)
        payload = cc.to_json()
    if args.format == "json":
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    kept = sum(s.kept for s in cc.segments)
    target = f"target {cc.stats['target_ratio']:g}x" if cc.stats.get("target_ratio") else f"keep_ratio {keep_ratio:g}"
    lines = []
    if answer:
        lines.append(f"answer: {payload['answer']}")
    lines += [
        f"ratio: {cc.stats['achieved_ratio']:.2f}x achieved ({target}): {cc.stats['original_tokens']} context tokens "
        f"-> {cc.compressed_length} positions; {kept}/{len(cc.segments)} segments close-read",
        f"map: {cc.segment_map()}   (# close-read, . skimmed, _ dropped, | document boundary)",
        "time: " + ", ".join(f"{k} {v:.2f}s" for k, v in payload["timings"].items()),
    ]
    if not answer:
        lines += ["", cc.to_text()]
    print("\n".join(lines))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = load_model(args.model, device="cpu")  # a description needs no GPU
    cfg = model.config
    dec = model.decoder.config
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    info = {
        "model": args.model,
        "trained": model.trained,
        "backbone": cfg.backbone,
        "backbone_class": type(model.decoder).__name__,
        "backbone_fingerprint": model.backbone_fingerprint,
        "backbone_layers": dec.num_hidden_layers,
        "hidden_size": dec.hidden_size,
        "context_window": getattr(dec, "max_position_embeddings", None),
        "encoder_layers": cfg.encoder_layers,
        "segment_tokens": cfg.segment_tokens,
        "skim_temperature": round(model.skim.temperature, 4),
        "prompt_format": cfg.prompt_format,
        "parameters": {"decoder": count(model.decoder), "encoder": count(model.encoder), "skim": count(model.skim)},
        "adapter_tensors": len(model.adapter_state_dict()),
    }
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .eval.metrics import substring_accuracy

    check_ratio(args.ratio)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"demo file {path} does not exist")
    try:
        demo = json.loads(path.read_text())
        docs, questions = demo["documents"], demo["questions"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UsageError(f"{path} is not a demo file ({err})") from err
    model = load_model(args.model, args.dtype, args.device)
    model.decode_engine = args.engine
    set_skim_share(model, args.max_skim_share)
    print(f"model: {args.model} ({'trained' if model.trained else 'untrained'} RAM on {model.config.backbone}); "
          f"{len(docs)} documents, {len(questions)} questions, target ratio {args.ratio:g}x\n")
    hits = 0.0
    total = 0.0
    for item in questions:
        ans = model.answer(docs, item["question"], ratio=args.ratio, max_new_tokens=args.max_new_tokens)
        hit = substring_accuracy(ans.text, item["answers"])
        hits += hit
        total += ans.timings["total"]
        cc = ans.compressed
        gold_doc = item.get("document")
        gold = [s for s in cc.segments if s.document == gold_doc]
        how = "close-read" if any(s.kept for s in gold) else "dropped" if gold and all(s.dropped for s in gold) else "skimmed"
        print(f"Q: {item['question']}\n   gold: {' | '.join(item['answers'])} (document {gold_doc}, "
              f"{how})\n   RAM:  {ans.text}  [{'correct' if hit else 'wrong'}]\n"
              f"   {cc.stats['original_tokens']} tokens -> {cc.compressed_length} positions "
              f"({cc.stats['achieved_ratio']:.2f}x), {ans.timings['total']:.1f}s\n   map: {cc.segment_map()}\n")
    print(f"substring accuracy {hits / len(questions):.2f} over {len(questions)} questions; {total:.1f}s in all")
    if args.full:
        full = model.answer_batch([docs], [questions[0]["question"]], mode="full", max_new_tokens=args.max_new_tokens)[0]
        print(f"full prompt on the first question: {full.timings['total']:.1f}s -> {full.text}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data.nq_multidoc import build_nq_multidoc, parse_docs_arg, write_examples

    src = Path(args.source)
    if not src.is_file():
        raise UsageError(f"NQ source file {src} does not exist")
    gold = args.gold_position if args.gold_position == "random" else int(args.gold_position)
    examples = build_nq_multidoc(src, num_docs=parse_docs_arg(args.docs), gold_position=gold, seed=args.seed,
                                 split=args.split, limit=args.limit)
    write_examples(examples, Path(args.out))
    print(f"wrote {len(examples)} examples to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train.config import TrainConfig
    from .train.trainer import train

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"out={args.out}")
    cfg = TrainConfig.load(args.config, overrides)
    final = train(cfg, resume=args.resume)
    print(f"model: {final}")
    return 0


# ---------------------------------------------------------------------------- parser
ENGINE_HELP = ("decoding: hf = transformers generate; fast = static KV cache, one fixed-shape step "
               "(CUDA graphs on a GPU); same greedy answers")
SKIM_SHARE_HELP = ("largest share of the position budget for skim vectors, in [0, 1]; the least relevant "
                   "segments beyond it are dropped, leaving room to close-read at high ratios "
                   "(default: the model's, 1.0 = the paper)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ram", description="Read As Human: compress long contexts by close-reading and skimming.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, answer: bool) -> None:
        p.add_argument("--context", required=True, help="text file, JSON list of documents, or - for stdin")
        p.add_argument("--question", required=True)
        p.add_argument("--ratio", type=float, default=4.0, help="target compression ratio (>= 1, exact)")
        p.add_argument("--keep-ratio", type=float, default=None, help="paper mode: share of segments close-read")
        p.add_argument("--model", default="default", help="'default', 'default-fast', a built-in backbone, or a RAM directory")
        p.add_argument("--format", choices=("text", "json"), default="text")
        p.add_argument("--max-skim-share", type=float, default=None, help=SKIM_SHARE_HELP)
        p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help=DTYPE_HELP)
        p.add_argument("--device", default="auto", help=DEVICE_HELP)
        if answer:
            p.add_argument("--max-new-tokens", type=int, default=32)
            p.add_argument("--engine", choices=("hf", "fast"), default="hf", help=ENGINE_HELP)

    common(sub.add_parser("compress", help="compress a context for a question"), answer=False)
    common(sub.add_parser("answer", help="compress and answer"), answer=True)
    info = sub.add_parser("info", help="describe a model")
    info.add_argument("--model", default="default")
    info.add_argument("--format", choices=("text", "json"), default="text")
    demo = sub.add_parser("demo", help="answer the questions of a demo file")
    demo.add_argument("file", nargs="?", default="examples/demo.json")
    demo.add_argument("--ratio", type=float, default=8.0)
    demo.add_argument("--model", default="default")
    demo.add_argument("--max-new-tokens", type=int, default=32)
    demo.add_argument("--engine", choices=("hf", "fast"), default="hf", help=ENGINE_HELP)
    demo.add_argument("--max-skim-share", type=float, default=None, help=SKIM_SHARE_HELP)
    demo.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help=DTYPE_HELP)
    demo.add_argument("--device", default="auto", help=DEVICE_HELP)
    demo.add_argument("--full", action="store_true", help="also time the full prompt on the first question")
    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    nq = data.add_parser("nq-multidoc", help="NQ multi-document contexts from the shared NQ-open file")
    nq.add_argument("--source", default="../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz")
    nq.add_argument("--docs", default="20", help="documents per context: N or LO-HI")
    nq.add_argument("--gold-position", default="random", help="'random' or a 0-based index")
    nq.add_argument("--seed", type=int, default=0)
    nq.add_argument("--split", choices=("train", "dev", "all"), default="all")
    nq.add_argument("--limit", type=int, default=None)
    nq.add_argument("--out", required=True)
    add_eval_parser(sub)
    add_bench_parser(sub)
    tr = sub.add_parser("train", help="train a RAM model (resumable; see docs/training.md)")
    tr.add_argument("--config", default=None, help="YAML/JSON training config")
    tr.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config settings")
    tr.add_argument("--out", default=None, help="run directory (checkpoints, metrics.jsonl, final/)")
    tr.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    return parser


COMMANDS = {
    "compress": cmd_compress,
    "answer": lambda a: cmd_compress(a, answer=True),
    "info": cmd_info,
    "demo": cmd_demo,
    "data": cmd_data,
    "train": cmd_train,
    "eval": cmd_eval,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        if not args.verbose:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # InputError, BudgetError, ModelError, BackboneError, DataError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
