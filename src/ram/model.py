"""RAMModel: segment -> encode -> score -> select -> skim -> assemble -> generate."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .assemble import hybrid_context, left_pad, with_prompt
from .atomic import staged_dir
from .backbone import builtin_name, fingerprint, load_backbone
from .cache import SegmentStateCache
from .compressed import Answer, CompressedContext, Segment
from .config import RAMConfig
from .encoder import build_encoder, encode_question_and_segments
from .prompt import prompt_ids
from .segment import InputError, SegmentedBatch, normalize_context, segment_batch
from .select import check_plan, plan_segments
from .skim import SkimPooler, masked_mean

logger = logging.getLogger(__name__)

CONFIG_NAME = "ram_config.json"
ADAPTER_NAME = "adapter.safetensors"
FORMAT_VERSION = 1
MODES = ("ram", "full", "all-skim", "close-only")
DECODE_ENGINES = ("hf", "fast")
DEFAULT_ADAPTER = Path(__file__).parent / "adapters" / "default"
# Trained adapters shipped in the package, by name: "default" (8-layer encoder) and "default-fast"
# (4-layer encoder: faster compression on CPU, weaker selection; see each MODEL_CARD.md).
SHIPPED_ADAPTERS = {"default": DEFAULT_ADAPTER, "default-fast": DEFAULT_ADAPTER.parent / "default-fast"}


class ModelError(ValueError):
    """A RAM checkpoint cannot be loaded (missing, malformed, or made for another backbone)."""


@dataclass
class HybridBatch:
    """Everything one batched compression pass produced (tensors keep grad when training)."""

    segments: SegmentedBatch
    scores: torch.Tensor  # [N] cosine(question, segment); NaN when not scored
    keep: torch.Tensor  # [N] bool close-read
    skim: torch.Tensor  # [N] bool skimmed; neither kept nor skimmed = dropped
    prompts: list[torch.Tensor]  # per example [T_b, H] decoder inputs
    context_spans: list[tuple[int, int]]
    question_mean: torch.Tensor | None = None  # [B, H]
    segment_mean: torch.Tensor | None = None  # [N, H]
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _projector_scale(decoder: PreTrainedModel) -> float:
    """Map unit-RMS-normalised states to the decoder's typical embedding size."""
    embed_rms = decoder.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt()
    norm = getattr(decoder.model, "norm", None)
    gain = norm.weight.detach().float().pow(2).mean().sqrt() if norm is not None and hasattr(norm, "weight") else 1.0
    return float(embed_rms / gain)


class RAMModel(nn.Module):
    """A decoder LLM that reads a long context by close-reading some segments and skimming the rest."""

    def __init__(self, config: RAMConfig, decoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.config = config
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.decoder.requires_grad_(False)
        self.encoder = build_encoder(decoder, config.encoder_layers)
        hidden = decoder.config.hidden_size
        self.skim = SkimPooler(hidden, hidden, config.skim_temperature, config.learn_temperature)
        self.skim.init_projector(_projector_scale(decoder))
        self.skim.to(device=decoder.device, dtype=decoder.dtype)
        self.backbone_fingerprint = fingerprint(decoder)
        self.decoder_trained: set[str] = set()  # decoder parameter names saved in the adapter
        self.lora: dict[str, dict] = {}  # part ("encoder" | "decoder") -> LoRA settings
        self.trained = False
        self.segment_cache: SegmentStateCache | None = None
        self.decode_engine: str = "hf"  # generate_ids' default engine: "hf" or "fast"

    def add_lora(self, part: str, rank: int = 8, alpha: float = 16.0, targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> None:
        """Inject LoRA adapters (peft) into the encoder or the decoder, in place.

        Only the low-rank tensors then differ from the backbone, which keeps adapters small."""
        from peft import LoraConfig, inject_adapter_in_model

        if part not in ("encoder", "decoder"):
            raise ValueError(f"LoRA part must be 'encoder' or 'decoder', got {part!r}")
        if part in self.lora:
            raise ValueError(f"the {part} already has LoRA adapters")
        settings = {"rank": int(rank), "alpha": float(alpha), "targets": list(targets)}
        config = LoraConfig(r=settings["rank"], lora_alpha=settings["alpha"], target_modules=settings["targets"], lora_dropout=0.0)
        module = self.encoder if part == "encoder" else self.decoder
        inject_adapter_in_model(config, module)
        module.to(self.device)
        self.lora[part] = settings

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the weights they wrap, for faster inference (no extra matmuls).

        Merged decoder weights count as trained tensors, so ``save_pretrained`` still writes a
        correct adapter (larger: whole q/k/v/o matrices instead of low-rank factors)."""
        from peft.tuners.lora import LoraLayer

        for part in list(self.lora):
            module = getattr(self, part)
            targets = [(name, m) for name, m in module.named_modules() if isinstance(m, LoraLayer)]
            for name, layer in targets:
                layer.merge()
                parent_name, _, child = name.rpartition(".")
                parent = module.get_submodule(parent_name) if parent_name else module
                setattr(parent, child, layer.get_base_layer())
            if part == "decoder":
                merged = {f"{name}.weight" for name, _ in targets}
                self.decoder_trained = {n for n in self.decoder_trained if "lora_" not in n} | merged
            del self.lora[part]
            logger.info("merged %d LoRA layers into the %s", len(targets), part)

    # ------------------------------------------------------------------ construction / io
    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike[str] = "smollm2-135m",
        *,
        config: RAMConfig | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        **overrides: object,
    ) -> "RAMModel":
        """An untrained RAM on a local HF checkpoint or a built-in backbone."""
        config = (config or RAMConfig()).replace(backbone=str(backbone), **overrides)
        decoder, tokenizer = load_backbone(config.backbone, dtype=dtype, device=device,
                                           encoder_layers=config.encoder_layers)
        return cls(config, decoder, tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike[str] = "default",
        *,
        backbone: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> "RAMModel":
        """Load a shipped adapter (``"default"``, ``"default-fast"``), a built-in backbone name
        (untrained), or a saved RAM directory."""
        name = str(name_or_dir)
        if name in SHIPPED_ADAPTERS:
            path = SHIPPED_ADAPTERS[name]
            if not (path / CONFIG_NAME).is_file():
                logger.warning("notice: adapter %r is not installed; using the untrained RAM on smollm2-135m", name)
                return cls.from_backbone("smollm2-135m", dtype=dtype, device=device)
        elif builtin_name(name) is not None:
            return cls.from_backbone(name, dtype=dtype, device=device)
        else:
            path = Path(name).expanduser()
        if not (path / CONFIG_NAME).is_file():
            raise ModelError(
                f"{name!r} is not a RAM model: expected {' or '.join(map(repr, SHIPPED_ADAPTERS))}, a built-in "
                "backbone name, or a "
                f"directory with {CONFIG_NAME} (made by save_pretrained or ram train)"
            )
        try:
            meta = json.loads((path / CONFIG_NAME).read_text())
            config = RAMConfig.from_dict(meta["config"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{path / CONFIG_NAME} is malformed: {err}") from err
        if backbone is not None:
            config = config.replace(backbone=backbone)
        model = cls.from_backbone(config.backbone, config=config, dtype=dtype, device=device)
        expected = meta.get("backbone_fingerprint")
        if expected and expected != model.backbone_fingerprint:
            raise ModelError(
                f"{path} was trained on backbone {meta['config']['backbone']!r} (fingerprint {expected}) "
                f"but {config.backbone!r} has fingerprint {model.backbone_fingerprint}: they are different models"
            )
        for part, settings in (meta.get("lora") or {}).items():
            model.add_lora(part, settings["rank"], settings["alpha"], settings["targets"])
        model.load_adapter(path / ADAPTER_NAME, decoder_trained=meta.get("decoder_trained", []))
        model.trained = bool(meta.get("trained", True))
        return model

    def adapter_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Only what differs from the backbone: changed encoder tensors, skim module, trained decoder tensors."""
        state: dict[str, torch.Tensor] = {}
        # LoRA-wrapped layers keep their base weight under ".base_layer."; compare on plain names
        base = {k.replace(".base_layer.", "."): v for k, v in self.decoder.model.state_dict().items()}
        for key, value in self.encoder.state_dict().items():
            base_key = key.replace(".base_layer.", ".")
            if base_key in base and f"model.{base_key}" not in self.decoder_trained and torch.equal(value, base[base_key]):
                continue
            state[f"encoder.{key}"] = value
        for key, value in self.skim.state_dict().items():
            state[f"skim.{key}"] = value
        decoder_state = self.decoder.state_dict()
        for key in sorted(self.decoder_trained):
            state[f"decoder.{key}"] = decoder_state[key]
        cast = (lambda v: v.to(dtype) if v.is_floating_point() else v) if dtype is not None else (lambda v: v)
        return {k: cast(v.detach()).contiguous().cpu() for k, v in state.items()}

    def load_adapter(self, path: Path, decoder_trained: Sequence[str] = ()) -> None:
        if not path.is_file():
            raise ModelError(f"{path} is missing")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ModelError(f"{path} cannot be read (truncated, or not a safetensors file): {err}") from err
        parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "skim": {}, "decoder": {}}
        for key, value in tensors.items():
            head, _, rest = key.partition(".")
            if head not in parts:
                raise ModelError(f"{path}: unexpected tensor {key!r}")
            parts[head][rest] = value
        for head, module in (("encoder", self.encoder), ("skim", self.skim), ("decoder", self.decoder)):
            if parts[head]:
                try:
                    missing_ok = module.load_state_dict(parts[head], strict=False)
                except RuntimeError as err:  # a tensor of another shape
                    raise ModelError(f"{path}: tensors do not fit the {head}: {err}") from err
                if missing_ok.unexpected_keys:
                    raise ModelError(f"{path}: tensors do not fit the {head}: {missing_ok.unexpected_keys[:3]}")
        self.decoder_trained = set(decoder_trained)

    def save_pretrained(
        self, directory: str | os.PathLike[str], extra: dict | None = None, dtype: torch.dtype | None = None
    ) -> Path:
        """Write ``ram_config.json`` + ``adapter.safetensors`` atomically (temp dir, then rename).

        ``dtype`` optionally stores the adapter's floating tensors in a smaller type."""
        target = Path(directory)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "backbone_fingerprint": self.backbone_fingerprint,
            "decoder_trained": sorted(self.decoder_trained),
            "lora": self.lora,
            "trained": self.trained,
            **(extra or {}),
        }
        with staged_dir(target) as stage:
            save_file(self.adapter_state_dict(dtype), str(stage / ADAPTER_NAME))
            (stage / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return target

    # ------------------------------------------------------------------ core pass
    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def _validate(self, contexts: Sequence[str | Sequence[str]], questions: Sequence[str]) -> list[list[str]]:
        if len(contexts) != len(questions):
            raise InputError(f"got {len(contexts)} contexts but {len(questions)} questions")
        if not questions:
            raise InputError("no questions given")
        for q in questions:
            if not isinstance(q, str) or not q.strip():
                raise InputError("question is empty")
        return [normalize_context(c) for c in contexts]

    def _encode_question(self, questions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(questions), add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].bool().to(self.device)

    def enable_segment_cache(self, max_tokens: int = 262_144) -> SegmentStateCache:
        """Reuse segment encodings across questions (inference only; see :mod:`ram.cache`)."""
        self.segment_cache = SegmentStateCache(max_tokens)
        return self.segment_cache

    def disable_segment_cache(self) -> None:
        self.segment_cache = None

    def compile_encoder(self, **compile_kwargs: Any) -> None:
        """Run the encoder through ``torch.compile`` at inference (gradients off).

        Compilation fuses the encoder's norms, rotary embeddings and activations, which otherwise
        cost as much as its matmuls: on an H100, 8 Qwen3-4B layers over 32k tokens took 97 ms
        compiled against 159 ms eager (``benchmarks/profile_encode.py``). Shapes are dynamic, so
        new segment widths or batch sizes rarely recompile; the first call pays the compile
        (tens of seconds). Training always uses the eager encoder. ``compile_kwargs`` go to
        ``torch.compile`` (e.g. ``backend``, ``mode``)."""
        compile_kwargs.setdefault("dynamic", True)
        # kept out of the module tree, so state_dict, save and LoRA see the plain encoder
        self.__dict__["_compiled_encoder"] = (self.encoder, torch.compile(self.encoder, **compile_kwargs))

    def uncompile_encoder(self) -> None:
        self.__dict__.pop("_compiled_encoder", None)

    def _encode(
        self, questions: Sequence[str], ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Question means [B, H] and segment states [N, S, H] (the cache is read only without gradients)."""
        q_ids, q_mask = self._encode_question(questions)
        inference = not torch.is_grad_enabled()
        cache = self.segment_cache if inference else None
        encoder = self.encoder
        compiled = self.__dict__.get("_compiled_encoder")
        if inference and compiled is not None and compiled[0] is self.encoder:  # stale after add_lora & co.
            encoder = compiled[1]
        return encode_question_and_segments(
            encoder, q_ids, q_mask, ids, mask, lengths, self.config.max_batch_tokens, cache
        )

    def hybrid(
        self,
        contexts: Sequence[str | Sequence[str]],
        questions: Sequence[str],
        ratio: float | None = None,
        keep_ratio: float | None = None,
        mode: str = "ram",
        keep: torch.Tensor | None = None,
        max_skim_share: float | None = None,
        max_new_tokens: int | None = None,
    ) -> HybridBatch:
        """One batched pass. ``mode``: ``ram`` (score + select + skim), ``full`` (keep all, no
        encoder), ``all-skim`` (skim everything), ``close-only`` (selected segments only, skims
        dropped). ``keep`` overrides the selection (e.g. a baseline's choice).
        ``max_skim_share`` overrides ``config.max_skim_share`` for this call. With
        ``max_new_tokens`` (the answer's length), a ratio that certainly leaves the prompt too long
        for the decoder's window fails before the encoder runs."""
        share = self.config.max_skim_share if max_skim_share is None else max_skim_share
        timings: dict[str, float] = {}
        docs = self._validate(contexts, questions)
        self.tokenizer.padding_side = "right"
        with _timed(timings, "segment"):
            seg = segment_batch(
                docs, self.tokenizer, self.config.segment_tokens, self.config.word_snap_window,
            )
            ids, mask = seg.ids.to(self.device), seg.mask.to(self.device)
            example = seg.example.to(self.device)
            cfg = self.config  # the prompt's ids around each context: (pre, post)
            wrappers = [prompt_ids(self.tokenizer, q, cfg.prompt_format, cfg.instruction) for q in questions]
        num = seg.num_examples
        if mode == "ram" and keep is None and ratio is not None:
            check_plan(seg.lengths, seg.example, num, ratio, share, self._context_room(wrappers, max_new_tokens))
        q_mean = s_mean = hidden = None
        skim: torch.Tensor | None = None  # [N] bool; None: every segment not kept
        scores = torch.full((seg.num_segments,), float("nan"), device=self.device)
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "full":
            keep = torch.ones(seg.num_segments, dtype=torch.bool, device=self.device)
        elif mode == "close-only" and keep is not None:
            pass  # the caller chose the segments and skims are dropped: no encoder pass needed
        else:
            with _timed(timings, "encode"):
                q_mean, hidden = self._encode(questions, ids, mask, seg.lengths)
                s_mean = masked_mean(hidden, mask)
            with _timed(timings, "select"):
                scores = torch.nn.functional.cosine_similarity(s_mean, q_mean[example], dim=-1)
                if keep is None and mode == "all-skim":
                    keep = torch.zeros_like(example, dtype=torch.bool)
                elif keep is None:
                    keep, skim = plan_segments(
                        scores.detach().cpu(), seg.lengths, seg.example, num, ratio=ratio, keep_ratio=keep_ratio,
                        max_skim_share=share,
                    )
                    keep, skim = keep.to(self.device), skim.to(self.device)
        keep = keep.to(self.device)
        skim = ~keep if skim is None else skim
        embed = self.decoder.get_input_embeddings()
        with _timed(timings, "skim"):
            if mode == "close-only":
                vectors = None  # ablation: skimmed segments vanish
                skim = torch.zeros_like(keep)
            elif bool(skim.any()):
                vectors = self.skim(hidden[skim], mask[skim], q_mean[example[skim]])
            else:
                vectors = embed.weight.new_zeros(0, embed.weight.shape[1])
        with _timed(timings, "assemble"):
            contexts_emb = hybrid_context(ids, mask, keep, example, vectors, embed, num, skim=skim)
            prompts, spans = [], []
            for b, (pre, post) in enumerate(wrappers):
                prompt, span = with_prompt(contexts_emb[b], pre, post, embed)
                prompts.append(prompt)
                spans.append(span)
        return HybridBatch(seg, scores, keep, skim, prompts, spans, q_mean, s_mean, timings)

    def _context_room(self, wrappers: Sequence[tuple[list[int], list[int]]], max_new_tokens: int | None) -> torch.Tensor | None:
        """[B] decoder positions the window leaves for each context after its prompt (``wrappers``:
        the ids before and after it) and the answer."""
        window = getattr(self.decoder.config, "max_position_embeddings", None)
        if window is None or max_new_tokens is None:
            return None
        around = torch.tensor([len(pre) + len(post) for pre, post in wrappers], dtype=torch.long)
        return window - max_new_tokens - around

    # ------------------------------------------------------------------ public API
    def _records(self, hb: HybridBatch, docs: list[list[str]], questions: Sequence[str], ratio: float | None, keep_ratio: float | None) -> list[CompressedContext]:
        seg = hb.segments
        example = seg.example.tolist()
        dropped = (~hb.keep & ~hb.skim).cpu().tolist()
        fields = zip(example, seg.document.tolist(), seg.start.tolist(), seg.end.tolist(), seg.lengths.tolist(),
                     hb.scores.detach().float().cpu().tolist(), hb.keep.cpu().tolist(), dropped)
        per_example: list[list[Segment]] = [[] for _ in questions]
        for ex, doc, start, end, tokens, score, kept, gone in fields:
            per_example[ex].append(Segment(len(per_example[ex]), doc, start, end, tokens, score, kept, gone))
        original = seg.original_tokens().tolist()
        out = []
        for b, question in enumerate(questions):
            span = hb.context_spans[b]
            length = span[1] - span[0]
            stats = {
                "original_tokens": original[b],
                "compressed_length": length,
                "target_ratio": ratio,
                "keep_ratio": keep_ratio,
                "achieved_ratio": original[b] / max(1, length),
                "timings": dict(hb.timings),
            }
            out.append(CompressedContext(
                inputs_embeds=hb.prompts[b].unsqueeze(0).detach(),
                attention_mask=torch.ones(1, hb.prompts[b].shape[0], dtype=torch.bool),
                segments=per_example[b], documents=docs[b], question=question,
                context_span=span, stats=stats, skim_marker=self.config.skim_marker,
            ))
        return out

    @torch.inference_mode()
    def compress_batch(
        self,
        contexts: Sequence[str | Sequence[str]],
        questions: Sequence[str],
        ratio: float | None = 4.0,
        keep_ratio: float | None = None,
        mode: str = "ram",
        keep: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
    ) -> list[CompressedContext]:
        """Compress several (context, question) pairs in one batched pass. ``max_new_tokens``: the
        answer the prompt must leave room for in the decoder's window; a context that certainly
        will not fit at ``ratio`` then fails at once, before it is encoded."""
        if keep_ratio is not None or mode in ("full", "all-skim") or keep is not None:
            ratio = None
        hb = self.hybrid(contexts, questions, ratio=ratio, keep_ratio=keep_ratio, mode=mode, keep=keep,
                         max_new_tokens=max_new_tokens)
        docs = [normalize_context(c) for c in contexts]
        return self._records(hb, docs, questions, ratio, keep_ratio)

    def compress(self, context: str | Sequence[str], question: str, ratio: float | None = 4.0, keep_ratio: float | None = None) -> CompressedContext:
        """Compress one context for one question (``context``: a string or a list of documents)."""
        return self.compress_batch([context], [question], ratio=ratio, keep_ratio=keep_ratio)[0]

    @torch.inference_mode()
    def generate_ids(
        self, prompts: Sequence[torch.Tensor], max_new_tokens: int = 32, stop_at_eos: bool = True,
        engine: str | None = None,
    ) -> list[list[int]]:
        """Greedy generation from per-example [T, H] decoder inputs (left-padded into one batch).

        Returns the new token ids per example, cut after the first EOS. ``engine`` (default
        :attr:`decode_engine`): ``hf`` is ``generate``; ``fast`` is a static KV cache with a
        fixed-shape one-token step, ``torch.compile``d with CUDA graphs on a GPU and eager on CPU
        (where compiling takes about a minute). Both give the same greedy ids.
        """
        engine = engine or self.decode_engine
        if engine not in DECODE_ENGINES:
            raise InputError(f"engine must be one of {', '.join(DECODE_ENGINES)}, got {engine!r}")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        window = getattr(self.decoder.config, "max_position_embeddings", None)
        longest = max(p.shape[0] for p in prompts)
        if window is not None and longest + max_new_tokens > window:
            raise InputError(
                f"prompt of {longest} positions + {max_new_tokens} new tokens exceeds the backbone's "
                f"window of {window}; use a higher compression ratio"
            )
        embeds, attn, _ = left_pad(prompts)
        eos = self.tokenizer.eos_token_id if stop_at_eos else None
        if engine == "fast":
            from .bench.engine import generate_fast

            out, _ = generate_fast(self.decoder, embeds, attn, max_new_tokens, compile=embeds.device.type == "cuda",
                                   eos_token_id=eos)
        else:
            out = self.decoder.generate(
                inputs_embeds=embeds,
                attention_mask=attn.long(),
                max_new_tokens=max_new_tokens,
                min_new_tokens=None if stop_at_eos else max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=eos,
            )
        # both engines may continue a finished row (padding or further greedy ids): cut at its EOS
        return [row[: row.index(eos) + 1] if eos is not None and eos in row else row for row in out.tolist()]

    def generate(self, prompts: Sequence[torch.Tensor], max_new_tokens: int = 32) -> list[str]:
        """Greedy answers (decoded, special tokens removed) for per-example decoder inputs."""
        ids = self.generate_ids(prompts, max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def answer_batch(
        self,
        contexts: Sequence[str | Sequence[str]],
        questions: Sequence[str],
        ratio: float | None = 4.0,
        keep_ratio: float | None = None,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        mode: str = "ram",
    ) -> list[Answer]:
        """Compress and answer, ``batch_size`` examples per pass."""
        answers: list[Answer] = []
        for start in range(0, len(questions), max(1, batch_size)):
            chunk = slice(start, start + batch_size)
            t0 = time.perf_counter()
            compressed = self.compress_batch(contexts[chunk], questions[chunk], ratio=ratio, keep_ratio=keep_ratio,
                                             mode=mode, max_new_tokens=max_new_tokens)
            t1 = time.perf_counter()
            texts = self.generate([c.inputs_embeds[0] for c in compressed], max_new_tokens)
            t2 = time.perf_counter()
            for cc, text in zip(compressed, texts):
                timings = {**cc.stats["timings"], "compress": t1 - t0, "generate": t2 - t1, "total": t2 - t0}
                answers.append(Answer(text=text, compressed=cc, timings=timings))
        return answers

    def answer(self, context: str | Sequence[str], question: str, ratio: float | None = 4.0, keep_ratio: float | None = None, max_new_tokens: int = 32) -> Answer:
        """Compress ``context`` for ``question`` and generate an answer."""
        return self.answer_batch([context], [question], ratio=ratio, keep_ratio=keep_ratio, max_new_tokens=max_new_tokens)[0]

