"""Run methods x ratios x examples, score them and write a resumable result directory.

``out_dir`` gets:

- ``predictions.jsonl``: one record per (method, ratio, example), appended and flushed batch by
  batch. A rerun skips the (method, ratio, id) triples already there, so an interrupted
  evaluation continues where it stopped; a half-written last line (a crash mid-write) is dropped.
- ``run.json``: the settings that must not change between resumed runs (model, seed,
  max_new_tokens).
- ``ram_lengths.json``: RAM's decoder context length per (example, ratio), the budgets of the
  text baselines, so a later run in the same folder does not encode the contexts again to learn
  them. Entries are keyed by the example's context fingerprint and the model.
- ``summary.json`` / ``summary.md``: per (method, ratio) means with a bootstrap CI on accuracy,
  over the records of the examples evaluated now.
- ``accuracy_vs_ratio.png`` and, when examples carry a gold position,
  ``accuracy_vs_position.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..config import DTYPE_NAMES
from ..data.example import Example
from ..data.positives import positive_mask
from ..model import DECODE_ENGINES
from .methods import METHODS, Method, MethodOutput, MethodUnavailable, Models, get_method
from .metrics import bootstrap_ci, score_all
from .report import plot_accuracy_vs_position, plot_accuracy_vs_ratio, write_summary_md

logger = logging.getLogger(__name__)

__all__ = ["run_eval", "read_predictions", "summarize", "PREDICTIONS", "SUMMARY_JSON", "SUMMARY_MD"]

PREDICTIONS = "predictions.jsonl"
RUN_JSON = "run.json"
RAM_LENGTHS = "ram_lengths.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
RATIO_PNG = "accuracy_vs_ratio.png"
POSITION_PNG = "accuracy_vs_position.png"
METRICS = ("accuracy", "em", "f1", "f1_first", "rouge_l")

Key = tuple[str, float | None, str]


def _key(method: str, ratio: float | None, example_id: str) -> Key:
    return (method, None if ratio is None else float(ratio), example_id)


def read_predictions(path: Path, repair: bool = True) -> list[dict[str, Any]]:
    """Records of a predictions file. An unreadable *last* line (a crash mid-write) is
    ignored, and with ``repair`` cut off the file so that appending starts on a clean line; an
    unreadable line before the last is an error."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    records: list[dict[str, Any]] = []
    good: list[bytes] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict) or "method" not in rec or "id" not in rec:
                raise ValueError("not a prediction record")
        except ValueError as err:
            if lineno == len(lines) or all(not r.strip() for r in lines[lineno:]):
                logger.warning("%s:%d: ignoring an incomplete last line (interrupted write)", path, lineno)
                break
            raise ValueError(f"{path}:{lineno}: corrupt prediction record ({err}); "
                             "fix or delete the line, or use a new --out") from err
        records.append(rec)
        good.append(raw if raw.endswith(b"\n") else raw + b"\n")
    clean = b"".join(good)
    if repair and clean != data:
        atomic_write_bytes(path, clean)
    return records


def _check_run_settings(out_dir: Path, settings: dict[str, Any], resuming: bool) -> None:
    path = out_dir / RUN_JSON
    if path.exists() and resuming:
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if isinstance(old, dict):
            old.setdefault("dtype", "float32")  # folders from before --dtype ran in float32
            changed = {k: (old.get(k), v) for k, v in settings.items() if k in old and old[k] != v}
            if changed:
                what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise ValueError(f"{out_dir} holds predictions made with other settings ({what}); "
                                 "use a new --out or the same settings to resume")
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _gold_position(example: Example) -> int | None:
    for name in ("gold_document", "gold_position"):
        value = example.meta.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def context_fingerprint(example: Example) -> str:
    """A short hash of the example's documents: the same id with another context (say, another
    ``--docs``) is another example."""
    digest = hashlib.sha1("\x1e".join(example.documents).encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest()[:16]


def _load_ram_lengths(out_dir: Path, model_key: str) -> dict[str, dict[str, int]]:
    """``ram_lengths.json``'s entries (``"id|fingerprint" -> {ratio: length}``) for this model."""
    path = out_dir / RAM_LENGTHS
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        lengths = data["lengths"] if data.get("model") == model_key else {}
        if not isinstance(lengths, dict):
            raise TypeError("lengths is not a mapping")
        return lengths
    except (ValueError, KeyError, TypeError, AttributeError):
        logger.warning("%s is unreadable; RAM's lengths will be recomputed", path)
        return {}


def _save_ram_lengths(out_dir: Path, model_key: str, stored: dict[str, dict[str, int]],
                      keys: dict[str, str], targets: dict[tuple[str, float], int]) -> None:
    """Merge ``targets`` of the examples in ``keys`` (id -> "id|fingerprint") into ``stored``;
    rewrite the file only when something was added."""
    added = False
    for (example_id, ratio), length in targets.items():
        key = keys.get(example_id)
        if key is None:
            continue
        entry = stored.setdefault(key, {})
        if entry.get(f"{ratio:g}") != int(length):
            entry[f"{ratio:g}"] = int(length)
            added = True
    if added:
        atomic_write_text(out_dir / RAM_LENGTHS,
                          json.dumps({"model": model_key, "lengths": stored}, sort_keys=True) + "\n")


def _record(method: str, ratio: float | None, example: Example, out: MethodOutput, fingerprint: str) -> dict[str, Any]:
    scores = score_all(out.prediction, example.answers)
    rec: dict[str, Any] = {
        "method": method,
        "ratio": ratio,
        "id": example.id,
        "question": example.question,
        "context_sha1": fingerprint,
        "answers": list(example.answers),
        "prediction": out.prediction,
        **scores,
        "context_tokens": out.context_tokens,
        "original_tokens": out.original_tokens,
        "achieved_ratio": None if out.achieved_ratio is None else round(out.achieved_ratio, 6),
        "kept_segments": list(out.kept_segments),
        "num_segments": out.num_segments,
        "truncated": out.truncated,
        "latency_s": round(out.latency_s, 6),
        "gold_position": _gold_position(example),
    }
    if out.target_tokens is not None:
        rec["target_tokens"] = out.target_tokens
    if out.segment_spans is not None:
        rec["positive_recall"] = _positive_recall(example, out)
    if out.extra:
        rec.update(out.extra)
    return rec


def _positive_recall(example: Example, out: MethodOutput) -> float | None:
    """Share of answer-bearing (positive) segments that were close-read; None without positives."""
    positive = positive_mask(example, out.segment_spans or [])
    kept = set(out.kept_segments)
    total = sum(positive)
    return sum(1 for i, p in enumerate(positive) if p and i in kept) / total if total else None


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def summarize(records: Sequence[dict[str, Any]], method_order: Sequence[str] = (), seed: int = 0) -> list[dict[str, Any]]:
    """One row per (method, ratio): n, metric means, accuracy bootstrap CI, lengths, latency."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["method"], rec.get("ratio"))].append(rec)
    order = {m: i for i, m in enumerate(method_order)}

    def sort_key(item: tuple[str, float | None]) -> tuple[int, str, bool, float]:
        method, ratio = item
        return (order.get(method, len(order)), method, ratio is not None, ratio or 0.0)

    rows = []
    for method, ratio in sorted(groups, key=sort_key):
        recs = groups[(method, ratio)]
        acc = [float(r["accuracy"]) for r in recs]
        row: dict[str, Any] = {"method": method, "ratio": ratio, "n": len(recs)}
        for name in METRICS:
            row[name] = _mean(r.get(name) for r in recs)
        row["accuracy_ci"] = list(bootstrap_ci(acc, seed=seed))
        row["achieved_ratio_mean"] = _mean(r.get("achieved_ratio") for r in recs)
        row["context_tokens_mean"] = _mean(r.get("context_tokens") for r in recs)
        row["original_tokens_mean"] = _mean(r.get("original_tokens") for r in recs)
        row["target_tokens_mean"] = _mean(r.get("target_tokens") for r in recs)
        row["latency_s_mean"] = _mean(r.get("latency_s") for r in recs)
        row["positive_recall_mean"] = _mean(r.get("positive_recall") for r in recs)
        row["truncated_share"] = _mean(float(bool(r.get("truncated"))) for r in recs)
        rows.append(row)
    return rows


def _check_inputs(examples: Sequence[Example], methods: Sequence[str], ratios: Sequence[float],
                  batch_size: int, max_new_tokens: int) -> None:
    if not methods:
        raise ValueError(f"no method given; choose from {', '.join(METHODS)}")
    for name in methods:
        get_method(name)
    if len(set(methods)) != len(methods):
        raise ValueError(f"method listed twice: {', '.join(methods)}")
    for r in ratios:
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 1):
            raise ValueError(f"ratio must be a number >= 1, got {r!r}")
    if not ratios and any(METHODS[m].uses_ratio for m in methods):
        raise ValueError("methods " + ", ".join(m for m in methods if METHODS[m].uses_ratio) + " need --ratio")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not examples:
        raise ValueError("no examples to evaluate")
    seen: set[str] = set()
    for e in examples:
        if e.id in seen:
            raise ValueError(f"example id {e.id!r} occurs twice; ids must be unique to resume")
        seen.add(e.id)
        if not e.answers or not any(a.strip() for a in e.answers):
            raise ValueError(f"example {e.id!r} has no gold answer; cannot score it")


def run_eval(
    examples: Sequence[Example],
    methods: Sequence[str],
    ratios: Sequence[float],
    model_name: str,
    out_dir: Path,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
    *,
    device: str = "cpu",
    models: Models | None = None,
    segment_cache_mib: float = 0.0,
    engine: str = "hf",
    dtype: str = "float32",
) -> list[dict[str, Any]]:
    """Evaluate ``methods`` (x ``ratios`` for methods with a ratio) on ``examples``; return
    the summary rows (also written to ``out_dir``). Resumes from ``out_dir/predictions.jsonl``.

    Methods that cannot run on these examples (e.g. ``gold-only`` without gold documents) are
    skipped with an error in the log; if every method is skipped, ``MethodUnavailable``.
    ``segment_cache_mib`` > 0 reuses segment encodings across examples sharing documents.
    ``engine`` is the decode engine (``hf`` or ``fast``: same greedy ids, see
    :meth:`ram.RAMModel.generate_ids`). ``dtype`` (``float32``, ``bfloat16``, ``float16``) is the
    precision of every model of the run; a folder keeps one precision (``run.json``).
    """
    examples = list(examples)[: limit if limit is not None and limit >= 0 else None]
    methods = list(methods)
    ratios = sorted({float(r) for r in ratios})
    _check_inputs(examples, methods, ratios, batch_size, max_new_tokens)
    if engine not in DECODE_ENGINES:
        raise ValueError(f"engine must be one of {', '.join(DECODE_ENGINES)}, got {engine!r}")
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / PREDICTIONS

    records = read_predictions(pred_path)
    by_id = {e.id: e for e in examples}
    fingerprints = {e.id: context_fingerprint(e) for e in examples}
    for rec in records:  # the same id must mean the same question over the same context
        e = by_id.get(rec["id"])
        if e is not None and rec.get("question", e.question) != e.question:
            raise ValueError(f"{pred_path}: example {rec['id']!r} had the question {rec.get('question')!r}, "
                             f"now {e.question!r}: the data changed; use a new --out")
        if e is not None and rec.get("context_sha1", fingerprints[e.id]) != fingerprints[e.id]:
            raise ValueError(f"{pred_path}: example {rec['id']!r} had another context (other --docs, "
                             "--gold-position or data file?); use a new --out")
    done = {_key(r["method"], r.get("ratio"), r["id"]) for r in records}
    model_key = str(Path(model_name).resolve()) if Path(model_name).is_dir() else str(model_name)
    _check_run_settings(out_dir, {"model": model_key, "seed": seed, "max_new_tokens": max_new_tokens,
                                  "dtype": dtype}, resuming=bool(records))

    models = models or Models(model_name, device=device, seed=seed, batch_size=batch_size,
                              segment_cache_mib=segment_cache_mib, engine=engine, dtype=getattr(torch, dtype))
    stored_lengths = _load_ram_lengths(out_dir, model_key)
    length_keys = {e.id: f"{e.id}|{fingerprints[e.id]}" for e in examples}
    for e in examples:
        for ratio, length in stored_lengths.get(length_keys[e.id], {}).items():
            models.targets.setdefault((e.id, float(ratio)), int(length))
    instances: dict[str, Method] = {}
    skipped: dict[str, str] = {}
    for name in methods:
        method = METHODS[name](models)
        try:
            method.check(examples)
        except MethodUnavailable as err:
            skipped[name] = str(err)
            continue
        instances[name] = method
    if not instances:
        raise MethodUnavailable("; ".join(skipped.values()))
    for name, why in skipped.items():
        logger.error("error: skipping method %s: %s", name, why)

    plan: list[tuple[str, float | None, set[str]]] = []
    for name, method in instances.items():
        for ratio in (ratios if method.uses_ratio else [None]):
            pending = {e.id for e in examples if _key(name, ratio, e.id) not in done}
            if pending:
                plan.append((name, ratio, pending))
    total = sum(len(p) for _, _, p in plan)
    if records and total:
        logger.info("resuming: %d predictions already in %s, %d to go", len(records), pred_path, total)

    with tqdm(total=total, disable=not progress or total == 0, desc="eval", unit="ex", dynamic_ncols=True) as bar, \
            open(pred_path, "a", encoding="utf-8") as fh:
        # Example-major: every (method, ratio) of one chunk of examples before the next chunk,
        # so the segment cache still holds a chunk's encodings when the next ratio needs them.
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            for name, ratio, pending in plan:
                batch = [e for e in chunk if e.id in pending]
                if not batch:
                    continue
                bar.set_postfix_str(name if ratio is None else f"{name} x{ratio:g}")
                outs = instances[name].run(batch, ratio, max_new_tokens)
                if len(outs) != len(batch):
                    raise RuntimeError(f"method {name} returned {len(outs)} outputs for {len(batch)} examples")
                new = [_record(name, ratio, e, o, fingerprints[e.id]) for e, o in zip(batch, outs)]
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                fh.flush()
                os.fsync(fh.fileno())
                records.extend(new)
                bar.update(len(batch))
            _save_ram_lengths(out_dir, model_key, stored_lengths, length_keys, models.targets)

    current = {}
    for rec in records:  # last record wins; only examples evaluated now
        if rec["id"] in by_id:
            current[_key(rec["method"], rec.get("ratio"), rec["id"])] = rec
    final = list(current.values())
    rows = summarize(final, methods, seed=seed)
    atomic_write_text(out_dir / SUMMARY_JSON, json.dumps(rows, indent=2) + "\n")
    title = f"ram eval: model {model_name}, {len(examples)} examples, seed {seed}"
    write_summary_md(rows, out_dir / SUMMARY_MD, title=title)
    if rows:
        plot_accuracy_vs_ratio(rows, out_dir / RATIO_PNG)
        plot_accuracy_vs_position(final, out_dir / POSITION_PNG)
    if skipped:
        logger.error("error: skipped %s (see above)", ", ".join(skipped))
    return rows
