"""Latency sweep: full prompt vs RAM at several ratios, stage by stage, over context lengths.

Each RAM run goes through the library's own stages, called on token ids so that random-weight
architecture shapes need no tokenizer:

    tokenize        segment_batch + question/prompt tokenization (real tokenizer + text only;
                    0 for random shapes, whose ids are drawn before the clock starts)
    encode          encoder over question + segment rows (ram.encoder.encode_question_and_segments);
                    with --cached only the question (segment states come from a SegmentStateCache)
    compress_other  cosine scores, exact-budget selection, skim pooling, hybrid assembly,
                    prompt wrapping and left padding (the full prompt: embedding + wrapping)
    prefill         decoder forward over the assembled inputs_embeds (first token)
    decode          the remaining new tokens (EOS ignored: a fixed count)
    e2e             wall clock of all of the above

Timings are medians over ``repeats`` runs after ``warmup`` runs; every stage boundary is
synchronised on CUDA.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..assemble import hybrid_context, left_pad, with_prompt
from ..atomic import atomic_file
from ..cache import SegmentStateCache
from ..config import DTYPE_NAMES, pick_device
from ..encoder import build_encoder, encode_question_and_segments
from ..memory import check_fits
from ..select import select_segments
from ..skim import SkimPooler, masked_mean
from .engine import ENGINES, generate
from .shapes import SHAPES, build_random_model, shape_config

logger = logging.getLogger(__name__)

MODEL_PREFIX = "model:"  # shape string for a saved RAM directory: "model:runs/x/final"
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
DEMO_FILE = Path(__file__).resolve().parents[3] / "examples" / "demo.json"
STAGES = ("tokenize_s", "encode_s", "compress_other_s", "prefill_s", "decode_s", "e2e_s")
ROW_FIELDS = (
    "shape", "engine", "compile", "device", "dtype", "mode", "ratio", "context_tokens", "segments",
    "kept_segments", "context_positions", "decoder_input_tokens", "achieved_ratio", "new_tokens", "repeats",
    "warmup", "tokenize_s", "encode_s", "compress_other_s", "compress_s", "prefill_s", "decode_s",
    "decode_ms_per_token", "e2e_s", "e2e_runs_s", "speedup_e2e", "decode_bytes_per_token", "decode_bound_ms",
    "decode_vs_bound", "peak_mem_mb", "mem_kind", "beyond_window", "encoder_compiled",
)
RANDOM_PREFIX, RANDOM_SUFFIX, RANDOM_QUESTION = 24, 16, 16  # prompt tokens around the context (chat-like)


def mode_label(row: dict) -> str:
    """``full``, ``RAM 8x`` or ``RAM 8x cached`` (segment encodings reused, question encoded)."""
    if row["mode"] == "full":
        return "full"
    label = f"RAM {row['ratio']:g}x" + (" cached" if row["mode"] == "ram-cached" else "")
    return label + (" (compiled encoder)" if row.get("encoder_compiled") else "")


# ---------------------------------------------------------------------------- validation
def resolve_device(device: str | torch.device) -> torch.device:
    dev = torch.device(pick_device(str(device)))
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!s}")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def check_settings(
    shape: object, lengths: Sequence[int], ratios: Sequence[float], engine: str, new_tokens: int, repeats: int,
    warmup: int, segment_tokens: int | None,
) -> None:
    """Cheap checks before any model is built (ValueError with a message for the user)."""
    if isinstance(shape, str) and shape.startswith(MODEL_PREFIX):
        from ..model import CONFIG_NAME, SHIPPED_ADAPTERS

        source = shape.removeprefix(MODEL_PREFIX)
        folder = SHIPPED_ADAPTERS.get(source) or Path(source).expanduser()
        if not (folder / CONFIG_NAME).is_file():
            raise ValueError(f"{folder} is not a saved RAM model (no {CONFIG_NAME}; make one with ram train)")
    elif isinstance(shape, str) and shape != "default" and shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: default, {', '.join(SHAPES)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not lengths:
        raise ValueError("give at least one context length")
    for name, value, low in (("new_tokens", new_tokens, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    seg = segment_tokens or 50
    if seg < 2:
        raise ValueError(f"segment_tokens must be >= 2, got {segment_tokens}")
    for length in lengths:
        if int(length) != length or length < seg:
            raise ValueError(f"context length {length} is shorter than one segment ({seg} tokens)")
    for ratio in ratios:
        if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1):
            raise ValueError(f"ratio must be a finite number >= 1, got {ratio!r}")
        for length in lengths:
            best = length / math.ceil(length / seg)
            if ratio > best:
                raise ValueError(
                    f"ratio {ratio:g} is not attainable at length {length} with {seg}-token segments "
                    f"(at most {best:.1f}: every segment skimmed); use a lower ratio or longer segments"
                )


# ---------------------------------------------------------------------------- subject
@dataclass
class Subject:
    """What is timed: decoder, encoder and skim module, and where inputs come from."""

    name: str
    decoder: nn.Module
    encoder: nn.Module
    skim: SkimPooler
    segment_tokens: int
    encoder_layers: int
    max_batch_tokens: int = 16384
    tokenizer: Any = None  # set: real text, real tokenization (timed)
    ram_config: Any = None
    text: str | None = None
    question: str | None = None
    build_s: float = 0.0
    extra: dict = field(default_factory=dict)
    encoder_compiled: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype


def _demo_text(path: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(long text, question) from a ``ram demo`` JSON file or a plain text file."""
    file = Path(path) if path is not None else DEMO_FILE
    if not file.is_file():
        raise ValueError(f"text file {file} does not exist (the default model reads examples/demo.json)")
    raw = file.read_text(encoding="utf-8")
    if file.suffix == ".json":
        try:
            data = json.loads(raw)
            docs = data["documents"] if isinstance(data, dict) else data
            question = data["questions"][0]["question"] if isinstance(data, dict) and data.get("questions") else None
        except (json.JSONDecodeError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{file}: expected a demo file with 'documents' ({err})") from err
        text = "\n".join(docs)
    else:
        text, question = raw, None
    if not text.strip():
        raise ValueError(f"{file} holds no text")
    return text, question or "What is this text about?"


def _from_ram_model(model: Any, name: str, encoder_layers: int | None, segment_tokens: int | None,
                    text: str | None, build_s: float) -> Subject:
    config = model.config
    encoder = model.encoder
    layers = config.encoder_layers
    if encoder_layers is not None and encoder_layers != layers:
        with torch.device(model.device):
            encoder = build_encoder(model.decoder, encoder_layers)
        layers = encoder_layers
    body, question = _demo_text(text)
    return Subject(
        name=name, decoder=model.decoder, encoder=encoder.eval(), skim=model.skim,
        segment_tokens=segment_tokens or config.segment_tokens, encoder_layers=layers,
        max_batch_tokens=config.max_batch_tokens, tokenizer=model.tokenizer, ram_config=config,
        text=body, question=question, build_s=build_s,
    )


def make_subject(
    shape_or_model: Any,
    device: torch.device,
    dtype: torch.dtype,
    encoder_layers: int | None = None,
    segment_tokens: int | None = None,
    text: str | None = None,
    seed: int = 0,
) -> Subject:
    """A random-weight shape by name, ``"default"`` (the offline RAM model), ``"model:NAME|DIR"`` (a
    shipped adapter such as ``default-fast``, or a saved RAM directory from ``ram train``), or a RAMModel."""
    start = time.perf_counter()
    if not isinstance(shape_or_model, str):  # a RAMModel (duck-typed: decoder, encoder, skim, tokenizer)
        return _from_ram_model(shape_or_model, "model", encoder_layers, segment_tokens, text, 0.0)
    if shape_or_model == "default" or shape_or_model.startswith(MODEL_PREFIX):
        from ..model import SHIPPED_ADAPTERS, RAMModel

        source = shape_or_model.removeprefix(MODEL_PREFIX)
        model = RAMModel.from_pretrained(source, dtype=dtype, device=device)
        model.eval()
        model.merge_lora()  # inference deployment: the full prompt and RAM run on the same plain-speed decoder
        name = source if source in SHIPPED_ADAPTERS else "model"
        return _from_ram_model(model, name, encoder_layers, segment_tokens, text, time.perf_counter() - start)
    config = shape_config(shape_or_model)
    layers = 8 if encoder_layers is None else encoder_layers
    if not 1 <= layers <= config.num_hidden_layers:
        raise ValueError(f"encoder_layers must be in [1, {config.num_hidden_layers}] for {shape_or_model}, got {layers}")
    check_fits(config, dtype, device, layers, name=shape_or_model,
               hint="use a smaller shape, --dtype bfloat16, or a device with more memory")
    decoder = build_random_model(config, dtype=dtype, device=device, seed=seed)
    with torch.device(device):  # the encoder copy is created on the device too
        encoder = build_encoder(decoder, layers).eval()
        skim = SkimPooler(config.hidden_size, config.hidden_size)
    skim.init_projector(1.0)
    skim.to(device=device, dtype=dtype).eval()
    return Subject(
        name=shape_or_model, decoder=decoder, encoder=encoder, skim=skim, segment_tokens=segment_tokens or 50,
        encoder_layers=layers, build_s=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------- inputs
@dataclass
class Prepared:
    """One context of a given length, ready to run (ids drawn or text cut outside the clock)."""

    length: int
    text: str | None = None
    ids: torch.Tensor | None = None  # [N, S]
    mask: torch.Tensor | None = None
    lengths: torch.Tensor | None = None  # [N] cpu
    q_ids: torch.Tensor | None = None  # [1, Q]
    prefix: list[int] = field(default_factory=list)
    suffix: list[int] = field(default_factory=list)


def prepare(subject: Subject, length: int, generator: torch.Generator) -> Prepared:
    if subject.tokenizer is not None:
        return Prepared(length=length, text=_text_of_length(subject, length))
    vocab = subject.decoder.config.vocab_size
    seg = subject.segment_tokens
    count = math.ceil(length / seg)
    flat = torch.randint(0, vocab, (count * seg,), generator=generator)
    mask = (torch.arange(count * seg) < length).view(count, seg)
    device = subject.device
    draw = lambda n: torch.randint(0, vocab, (n,), generator=generator).tolist()  # noqa: E731
    return Prepared(
        length=length, ids=flat.view(count, seg).to(device), mask=mask.to(device), lengths=mask.sum(1),
        q_ids=torch.tensor([draw(RANDOM_QUESTION)], device=device), prefix=draw(RANDOM_PREFIX),
        suffix=draw(RANDOM_SUFFIX),
    )


def _text_of_length(subject: Subject, length: int) -> str:
    """The subject's text repeated and cut so that it tokenizes to about ``length`` tokens."""
    tok, base = subject.tokenizer, subject.text
    base_tokens = len(tok(base, add_special_tokens=False)["input_ids"])
    reps = length // max(1, base_tokens) + 2
    big = "\n".join([base] * reps)
    offsets = tok(big, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return big[: offsets[length][0]] if length < len(offsets) else big


# ---------------------------------------------------------------------------- one run
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def run_once(
    subject: Subject, prep: Prepared, mode: str, ratio: float | None, engine: str, new_tokens: int, compile: bool,
    cache: SegmentStateCache | None = None,
) -> dict[str, Any]:
    """One timed pass: (tokenize) -> (encode -> select/skim) -> assemble -> prefill -> decode.

    ``ram-cached`` reads segment states from ``cache`` (filled by an earlier pass)."""
    device = subject.device
    decoder = subject.decoder
    embed = decoder.get_input_embeddings()
    _sync(device)
    t0 = time.perf_counter()
    if prep.text is not None:  # real text: tokenization is part of the timed path
        from ..prompt import prompt_ids
        from ..segment import segment_batch

        tok, cfg = subject.tokenizer, subject.ram_config
        seg = segment_batch([[prep.text]], tok, subject.segment_tokens, cfg.word_snap_window)
        ids, mask, lengths = seg.ids.to(device), seg.mask.to(device), seg.lengths
        q_ids = tok([subject.question], add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        prefix, suffix = prompt_ids(tok, subject.question, cfg.prompt_format, cfg.instruction)
    else:
        ids, mask, lengths, q_ids = prep.ids, prep.mask, prep.lengths, prep.q_ids
        prefix, suffix = prep.prefix, prep.suffix
    _sync(device)
    t1 = time.perf_counter() if prep.text is not None else t0  # random ids: nothing to tokenize
    num = ids.shape[0]
    example = torch.zeros(num, dtype=torch.long)
    example_dev = example.to(device)
    if mode in ("ram", "ram-cached"):
        q_mask = torch.ones_like(q_ids, dtype=torch.bool)
        q_mean, hidden = encode_question_and_segments(
            subject.encoder, q_ids, q_mask, ids, mask, lengths, subject.max_batch_tokens, cache
        )
        s_mean = masked_mean(hidden, mask)
        _sync(device)
        t2 = time.perf_counter()
        scores = F.cosine_similarity(s_mean, q_mean[example_dev], dim=-1)
        keep = select_segments(scores.float().cpu(), lengths, example, 1, ratio=ratio).to(device)
        skimmed = ~keep
        if bool(skimmed.any()):
            vectors = subject.skim(hidden[skimmed], mask[skimmed], q_mean[example_dev[skimmed]])
        else:
            vectors = embed.weight.new_zeros(0, embed.weight.shape[1])
    else:
        t2 = t1
        keep = torch.ones(num, dtype=torch.bool, device=device)
        vectors = embed.weight.new_zeros(0, embed.weight.shape[1])
    context = hybrid_context(ids, mask, keep, example_dev, vectors, embed, 1)[0]
    prompt, _ = with_prompt(context, prefix, suffix, embed)
    embeds, attn, _ = left_pad([prompt])
    _sync(device)
    t3 = time.perf_counter()
    _, timings = generate(decoder, embeds, attn, new_tokens, engine=engine, compile=compile)
    _sync(device)
    t4 = time.perf_counter()
    return {
        "tokenize_s": t1 - t0, "encode_s": t2 - t1, "compress_other_s": t3 - t2, "e2e_s": t4 - t0, **timings,
        "context_tokens": int(lengths.sum()), "segments": num, "kept_segments": int(keep.sum()),
        "context_positions": int(context.shape[0]), "decoder_input_tokens": int(embeds.shape[1]),
    }


# ---------------------------------------------------------------------------- memory
def reset_peak_memory(device: torch.device) -> bool:
    """Start a new high-water mark; False where the OS does not allow it (then it is the process's)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM (Linux >= 4.0)
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device) -> tuple[float | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "rss_high_water"
    except OSError:
        pass
    return None, "unavailable"


# ---------------------------------------------------------------------------- bandwidth bound
def measure_bandwidth(device: torch.device, mib: int = 512, reps: int = 5) -> float:
    """Achievable memory bandwidth in GB/s (a large copy; bytes read + bytes written)."""
    size = mib * 2**20
    src = torch.empty(size, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    _sync(device)
    seconds = time.perf_counter() - start
    del src, dst
    return 2 * size * reps / seconds / 1e9


def decode_bytes(decoder: nn.Module, context: int) -> int:
    """Bytes one decode step must read at ``context`` cached positions: the weights (the input
    embedding only when tied, as then it is also the output head) plus the KV cache."""
    config = decoder.config
    weights = sum(p.numel() * p.element_size() for p in decoder.parameters())
    embed = decoder.get_input_embeddings().weight
    head = decoder.get_output_embeddings()
    if head is None or head.weight.data_ptr() != embed.data_ptr():
        weights -= embed.numel() * embed.element_size()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_position = 2 * config.num_hidden_layers * kv_heads * head_dim * embed.element_size()
    return int(weights + per_position * context)


# ---------------------------------------------------------------------------- sweep
def run_bench(
    shape_or_model: Any,
    lengths: Sequence[int],
    ratios: Sequence[float],
    engine: str = "hf",
    new_tokens: int = 32,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    encoder_layers: int | None = 8,
    segment_tokens: int | None = None,
    *,
    compile: bool = True,
    bandwidth_gbs: float | None = None,
    text: str | None = None,
    seed: int = 0,
    subject: Subject | None = None,
    on_row: Callable[[dict], None] | None = None,
    cached: bool = False,
    compile_encoder: bool = False,
) -> list[dict]:
    """Rows of stage timings: per length, ``full`` then ``ram`` at each ratio (see module doc).

    ``shape_or_model``: a name from :data:`SHAPES` (random weights, random ids), ``"default"``
    (the offline RAM model on real text from ``examples/demo.json`` or ``text``), or a RAMModel.
    ``subject`` reuses an already built one (e.g. to run several engines on one model).
    ``cached`` adds ``ram-cached`` rows: segment encodings computed before the clock starts (a
    RAG corpus encoded once), so only the question is encoded per query.
    ``bandwidth_gbs``: achievable memory bandwidth for the decode bound (``decode_bound_ms``
    = bytes a step reads / bandwidth); measured with a large copy on CUDA when not given,
    left out (None) on CPU unless given.
    ``compile_encoder`` runs RAM's encoder through ``torch.compile`` (dynamic shapes; the
    warm-ups absorb the compile), as :meth:`ram.RAMModel.compile_encoder` does.
    """
    name = shape_or_model if isinstance(shape_or_model, str) else None
    check_settings(name, lengths, ratios, engine, new_tokens, repeats, warmup, segment_tokens)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if subject is None:
        subject = make_subject(shape_or_model, dev, dt, encoder_layers, segment_tokens, text, seed)
    dev, dt = subject.device, subject.dtype
    check_settings(name, lengths, ratios, engine, new_tokens, repeats, warmup, subject.segment_tokens)
    window = getattr(subject.decoder.config, "max_position_embeddings", None)
    beyond = [n for n in lengths if window is not None and n + new_tokens > window]
    if beyond:
        logger.warning("lengths %s exceed the decoder's window of %d positions: the full prompt runs beyond it "
                       "(a timing only, flagged beyond_window; its cost grows quadratically)",
                       ", ".join(map(str, sorted(beyond))), window)
    if compile_encoder and not subject.encoder_compiled:
        subject.encoder = torch.compile(subject.encoder, dynamic=True)
        subject.encoder_compiled = True
    if bandwidth_gbs is None and dev.type == "cuda":
        bandwidth_gbs = measure_bandwidth(dev)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    for length in sorted(lengths):
        prep = prepare(subject, length, generator)
        configs: list[tuple[str, float | None]] = [("full", None)] + [("ram", float(r)) for r in sorted(ratios)]
        if cached:
            configs += [("ram-cached", float(r)) for r in sorted(ratios)]
        length_rows = []
        for mode, ratio in configs:
            cache = None
            if mode == "ram-cached":  # documents encoded before the question arrives (outside the clock)
                cache = SegmentStateCache(max_tokens=2 * length + 1024)
                run_once(subject, prep, mode, ratio, engine, new_tokens, compile, cache)
            resettable = reset_peak_memory(dev)
            for _ in range(warmup):
                run_once(subject, prep, mode, ratio, engine, new_tokens, compile, cache)
            runs = [run_once(subject, prep, mode, ratio, engine, new_tokens, compile, cache) for _ in range(repeats)]
            peak, kind = peak_memory_mb(dev)
            last = runs[-1]
            row: dict[str, Any] = {
                "shape": subject.name, "engine": engine, "compile": bool(compile and engine.startswith("fast")),
                "device": str(dev), "dtype": str(dt).replace("torch.", ""), "mode": mode, "ratio": ratio,
                "context_tokens": last["context_tokens"], "segments": last["segments"],
                "kept_segments": last["kept_segments"], "context_positions": last["context_positions"],
                "decoder_input_tokens": last["decoder_input_tokens"],
                "achieved_ratio": last["context_tokens"] / max(1, last["context_positions"]),
                "new_tokens": new_tokens, "repeats": repeats, "warmup": warmup,
                "encoder_compiled": bool(subject.encoder_compiled and mode != "full"),
            }
            for key in ("tokenize_s", "encode_s", "compress_other_s", "prefill_s", "decode_s", "decode_ms_per_token", "e2e_s"):
                row[key] = statistics.median(r[key] for r in runs)
            row["compress_s"] = row["tokenize_s"] + row["encode_s"] + row["compress_other_s"]
            row["e2e_runs_s"] = [r["e2e_s"] for r in runs]
            # mean context over the decode steps: prompt + half the new tokens
            traffic = decode_bytes(subject.decoder, last["decoder_input_tokens"] + new_tokens // 2)
            row["decode_bytes_per_token"] = traffic
            row["decode_bound_ms"] = 1000 * traffic / (bandwidth_gbs * 1e9) if bandwidth_gbs else None
            row["decode_vs_bound"] = (row["decode_ms_per_token"] / row["decode_bound_ms"]
                                      if row["decode_bound_ms"] and new_tokens > 1 else None)
            row["peak_mem_mb"] = peak
            row["mem_kind"] = kind if resettable else f"{kind}_process"
            row["beyond_window"] = bool(window is not None and last["decoder_input_tokens"] + new_tokens > window)
            length_rows.append(row)
            logger.info("L=%d %s%s e2e %.3fs", length, mode, f" {ratio:g}x" if ratio else "", row["e2e_s"])
        full = length_rows[0]["e2e_s"]
        for row in length_rows:
            row["speedup_e2e"] = full / row["e2e_s"] if row["e2e_s"] > 0 else None
            rows.append({k: row[k] for k in ROW_FIELDS})
            if on_row is not None:
                on_row(rows[-1])
    return rows


# ---------------------------------------------------------------------------- reports
def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Where the numbers come from: processor/GPU, library versions, date, git commit, load."""
    import transformers

    dev = torch.device(device)
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if dev.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(dev)
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["gpu_multiprocessors"] = props.multi_processor_count
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(start: Path | None = None) -> str | None:
    """HEAD's commit read from ``.git`` (no git process); None outside a checkout."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        git = folder / ".git"
        if git.is_file():  # a worktree: "gitdir: PATH"
            text = git.read_text().strip()
            git = (folder / text.split(":", 1)[1].strip()).resolve() if text.startswith("gitdir:") else git
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref:"):
                return head
            ref = head.split(":", 1)[1].strip()
            for base in (git, _common_dir(git)):
                if (base / ref).is_file():
                    return (base / ref).read_text().strip()
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0]
        except OSError:
            return None
        return None
    return None


def _common_dir(git: Path) -> Path:
    common = git / "commondir"
    return (git / common.read_text().strip()).resolve() if common.is_file() else git


def fit_full(rows: Sequence[dict]) -> dict[str, Any]:
    """Least-squares fits of full-prompt e2e latency vs context length, per engine:
    linear a*L+b, quadratic a*L^2+b*L+c, and the log-log slope."""
    import numpy as np

    fits: dict[str, Any] = {}
    for engine in sorted({r["engine"] for r in rows}):
        pts = sorted((r["context_tokens"], r["e2e_s"]) for r in rows if r["engine"] == engine and r["mode"] == "full")
        if len(pts) < 2:
            continue
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1] for p in pts], dtype=float)
        fit: dict[str, Any] = {"points": len(pts), "linear": dict(zip("ab", np.polyfit(x, y, 1).tolist()))}
        if len(pts) >= 3:
            fit["quadratic"] = dict(zip("abc", np.polyfit(x, y, 2).tolist()))
        if bool((y > 0).all()):
            fit["loglog_slope"] = float(np.polyfit(np.log(x), np.log(y), 1)[0])
        fits[engine] = fit
    return fits


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    with atomic_file(path) as tmp:
        write(tmp)
    return path


def write_json(path: str | os.PathLike[str], rows: Sequence[dict], machine: dict | None = None,
               settings: dict | None = None) -> Path:
    payload = {"machine": machine or {}, "settings": settings or {}, "rows": list(rows), "fits": fit_full(rows)}
    text = json.dumps(payload, indent=2, default=str) + "\n"
    return _atomic_write(Path(path), lambda p: p.write_text(text))


def plot_latency(path: str | os.PathLike[str], rows: Sequence[dict], title: str = "") -> Path:
    """Log-log end-to-end latency vs context length: full, each ratio, and the fits of full."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    engines = sorted({r["engine"] for r in rows})
    styles = ["-", "--", ":", "-."]
    fits = fit_full(rows)
    for e_i, engine in enumerate(engines):
        style = styles[e_i % len(styles)]
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            if r["engine"] == engine:
                label = mode_label(r)
                series.setdefault(label, []).append((r["context_tokens"], r["e2e_s"]))
        for label, pts in sorted(series.items(), key=lambda kv: (kv[0] != "full", kv[0])):
            pts.sort()
            tag = f"{label} [{engine}]" if len(engines) > 1 else label
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=tag,
                    linewidth=2.2 if label == "full" else 1.4, color="black" if label == "full" else None)
        fit = fits.get(engine)
        xs = sorted(p[0] for p in series.get("full", []))
        if fit and xs:
            grid = np.geomspace(xs[0], xs[-1], 100)
            for key, color in (("linear", "tab:gray"), ("quadratic", "tab:red")):
                if key in fit:
                    ys = np.polyval(list(fit[key].values()), grid)
                    ok = ys > 0
                    ax.plot(grid[ok], ys[ok], style, color=color, linewidth=0.9, alpha=0.8,
                            label=f"full {key} fit" + (f" [{engine}]" if len(engines) > 1 else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("end-to-end latency (s)")
    ax.set_title(title or "RAM vs full prompt")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=120))


def markdown_table(rows: Sequence[dict]) -> str:
    """One line per row: stage medians, decoder input size and speedup over full."""
    head = ("| engine | mode | L | positions | kept/segments | tokenize s | encode s | other s | prefill s "
            "| decode ms/tok | vs bound | e2e s | speedup | peak MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        mode = mode_label(r)
        peak = f"{r['peak_mem_mb']:.0f}" if r.get("peak_mem_mb") is not None else "-"
        speed = f"{r['speedup_e2e']:.2f}x" if r.get("speedup_e2e") else "-"
        bound = f"{r['decode_vs_bound']:.2f}x" if r.get("decode_vs_bound") else "-"
        lines.append(
            f"| {r['engine']}{'+compile' if r.get('compile') else ''} | {mode} | {r['context_tokens']} "
            f"| {r['decoder_input_tokens']} | {r['kept_segments']}/{r['segments']} | {r['tokenize_s']:.4f} "
            f"| {r['encode_s']:.4f} | {r['compress_other_s']:.4f} | {r['prefill_s']:.4f} "
            f"| {r['decode_ms_per_token']:.2f} | {bound} | {r['e2e_s']:.4f} | {speed} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | os.PathLike[str], stem: str, rows: Sequence[dict], machine: dict,
                 settings: dict, plot: bool = True) -> dict[str, Path]:
    """``STEM.json``, ``STEM.md`` and (when ``plot``) ``STEM.png`` under ``out_dir``."""
    out = Path(out_dir)
    paths = {"json": write_json(out / f"{stem}.json", rows, machine, settings)}
    md = f"# {stem}\n\n{_machine_line(machine)}\n\n{markdown_table(rows)}"
    paths["md"] = _atomic_write(out / f"{stem}.md", lambda p: p.write_text(md))
    if plot and rows:
        paths["png"] = plot_latency(out / f"{stem}.png", rows, title=stem)
    return paths


def _machine_line(machine: dict) -> str:
    where = machine.get("gpu") or machine.get("cpu") or "?"
    return (f"{where}; torch {machine.get('torch')}, transformers {machine.get('transformers')}; "
            f"{machine.get('date')}; commit {str(machine.get('git_commit') or '?')[:12]}")
