"""Resumable RAM training with HF accelerate (CPU, one GPU, or DDP via ``accelerate launch``).

Every random choice (data order, sampled ratio) is a pure function of (seed, step), so a resumed
run continues exactly where the interrupted one stopped; checkpoints are written to a temp dir
and renamed, so a cut write is never loaded.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import staged_dir
from ..data.example import Example
from ..data.nq_multidoc import build_nq_multidoc, parse_docs_arg
from ..data.positives import positive_mask
from ..data.readers import load_examples
from ..model import ADAPTER_NAME, HybridBatch, RAMModel
from ..segment import segment_batch
from .config import TrainConfig
from .losses import answer_nll, contrastive_loss

logger = logging.getLogger(__name__)
STATE_NAME = "trainer_state.json"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, ...)."""


# ---------------------------------------------------------------------------- data
def load_split(spec: str, cfg: TrainConfig, docs: int | tuple[int, int], seed: int) -> list[Example]:
    """``nq-multidoc:<split>`` builds NQ contexts from the shared file; anything else is a data file."""
    if spec.startswith("nq-multidoc:"):
        split = spec.split(":", 1)[1]
        return build_nq_multidoc(Path(cfg.nq_source), num_docs=docs, gold_position="random", seed=seed, split=split)
    return load_examples(Path(spec))


def segment_positives(hb: HybridBatch, examples: Sequence[Example]) -> torch.Tensor:
    """[N] bool: segment overlaps an answer occurrence or a gold span of its example."""
    seg = hb.segments
    spans = list(zip(seg.document.tolist(), seg.start.tolist(), seg.end.tolist()))  # grouped by example
    bounds = np.cumsum([0, *seg.segments_per_example().tolist()])
    out: list[bool] = []
    for b, ex in enumerate(examples):
        out.extend(positive_mask(ex, spans[bounds[b] : bounds[b + 1]]))
    return torch.tensor(out, dtype=torch.bool, device=hb.keep.device)


def positive_recall(keep: torch.Tensor, positive: torch.Tensor) -> float:
    """Share of positive segments that were close-read (nan when there is none)."""
    total = int(positive.sum())
    return float((keep & positive).sum()) / total if total else float("nan")


def step_ratio(seed: int, step: int, lo: float, hi: float) -> float:
    """Log-uniform ratio for a step, a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step, 7])
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def step_indices(seed: int, step: int, global_batch: int, n: int) -> list[int]:
    """Example indices of a step: epoch-wise seeded permutations, a pure function of (seed, step)."""
    out: list[int] = []
    start = step * global_batch
    while len(out) < global_batch:
        epoch, offset = divmod(start + len(out), n)
        order = np.random.default_rng([seed, epoch, 11]).permutation(n)
        out.extend(order[offset : offset + global_batch - len(out)].tolist())
    return out


# ---------------------------------------------------------------------------- model policy
def apply_policy(model: RAMModel, cfg: TrainConfig) -> None:
    """Set requires_grad by the training policy and record trained decoder tensors."""
    for part, policy in (("encoder", cfg.encoder_policy), ("decoder", cfg.decoder_policy)):
        if policy == "lora" and part not in model.lora:
            model.add_lora(part, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
    model.requires_grad_(False)
    model.skim.projector.requires_grad_(True)
    model.skim.log_tau.requires_grad_(model.config.learn_temperature)
    layers = model.encoder.layers
    if cfg.encoder_policy == "full":
        model.encoder.requires_grad_(True)
    elif cfg.encoder_policy == "top":
        for layer in layers[len(layers) - cfg.encoder_trainable_layers :]:
            layer.requires_grad_(True)
        model.encoder.norm.requires_grad_(True)
    for part, policy in (("encoder", cfg.encoder_policy), ("decoder", cfg.decoder_policy)):
        if policy == "lora":
            for name, param in getattr(model, part).named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)
    if cfg.decoder_policy == "full":
        model.decoder.requires_grad_(True)
    elif cfg.decoder_policy == "qkv":
        for name, param in model.decoder.named_parameters():
            if any(f"self_attn.{p}_proj" in name for p in "qkv"):
                param.requires_grad_(True)
    model.decoder_trained = {n for n, p in model.decoder.named_parameters() if p.requires_grad}


class TrainingStep(nn.Module):
    """Loss of one batch: answer NLL through the hybrid context + lambda * contrastive loss."""

    def __init__(self, model: RAMModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, examples: Sequence[Example], ratio: float) -> dict[str, torch.Tensor]:
        model, cfg = self.model, self.cfg
        hb = model.hybrid([e.documents for e in examples], [e.question for e in examples], ratio=ratio)
        positive = segment_positives(hb, examples)
        example = hb.segments.example.to(positive.device)
        con = contrastive_loss(hb.scores, positive, example, len(examples), cfg.contrastive_tau)
        tok = model.tokenizer
        answers = [tok(e.answers[0], add_special_tokens=False)["input_ids"][: cfg.max_answer_tokens] + [tok.eos_token_id] for e in examples]
        nll, count = answer_nll(model.decoder, hb.prompts, answers, model.decoder.get_input_embeddings())
        lengths = [s[1] - s[0] for s in hb.context_spans]
        original = hb.segments.original_tokens().tolist()
        return {
            "loss": nll + cfg.contrastive_weight * con,
            "nll": nll.detach(),
            "contrastive": con.detach(),
            "positive_recall": torch.tensor(positive_recall(hb.keep, positive)),
            "achieved_ratio": torch.tensor(float(np.mean([o / l for o, l in zip(original, lengths)]))),
            "tokens": torch.tensor(float(sum(original))),
            "no_positive": torch.tensor(float(sum(not bool(positive[example == b].any()) for b in range(len(examples))))),
        }


# ---------------------------------------------------------------------------- checkpoints
def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (their state file is written last), oldest first."""
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / STATE_NAME).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(out: Path, step: int, model: RAMModel, optimizer: torch.optim.Optimizer, scheduler: Any, keep_last: int) -> Path:
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:08d}"
    with staged_dir(target) as stage:  # the state file marks a complete checkpoint
        model.save_pretrained(stage / "model")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, stage / "optimizer.pt")
        (stage / STATE_NAME).write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
    for old in checkpoints(out)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: RAMModel, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    meta = json.loads((path / "model" / "ram_config.json").read_text())
    model.load_adapter(path / "model" / ADAPTER_NAME, decoder_trained=meta.get("decoder_trained", []))
    state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(json.loads((path / STATE_NAME).read_text())["step"])


# ---------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def evaluate(model: RAMModel, examples: Sequence[Example], ratios: Sequence[float], generate: bool, batch_size: int = 4) -> dict[str, float]:
    """Positive recall and (optionally) substring accuracy on a fixed dev slice, per ratio."""
    from ..eval.metrics import substring_accuracy

    out: dict[str, float] = {}
    for ratio in ratios:
        kept = total = 0
        hits: list[float] = []
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start : start + batch_size])
            hb = model.hybrid([e.documents for e in chunk], [e.question for e in chunk], ratio=ratio)
            pos = segment_positives(hb, chunk)
            kept += int((hb.keep & pos).sum())
            total += int(pos.sum())
            if generate:
                texts = model.generate(hb.prompts, max_new_tokens=24)
                hits += [substring_accuracy(t, e.answers) for t, e in zip(texts, chunk)]
        out[f"recall@{ratio:g}"] = kept / max(1, total)
        if generate:
            out[f"accuracy@{ratio:g}"] = float(np.mean(hits))
    return out


# ---------------------------------------------------------------------------- main loop
def build_model(cfg: TrainConfig) -> RAMModel:
    if cfg.init_from:
        model = RAMModel.from_pretrained(cfg.init_from)
    else:
        model = RAMModel.from_backbone(
            cfg.backbone, encoder_layers=cfg.encoder_layers, segment_tokens=cfg.segment_tokens,
            word_snap_window=cfg.word_snap_window,
        )
    apply_policy(model, cfg)
    return model


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the directory of the final model."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.bf16 and torch.cuda.is_available() else "no",
        cpu=not torch.cuda.is_available(),
    )
    out = Path(cfg.out)
    existing = checkpoints(out)
    if existing and not resume:
        raise ValueError(f"{out} already has checkpoints; pass --resume to continue or choose another --out")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.dump(out / "train_config.json")
    torch.manual_seed(cfg.seed)

    train_docs = parse_docs_arg(cfg.train_docs)
    train_set = load_split(cfg.train_data, cfg, train_docs, cfg.seed)
    if cfg.max_examples:
        train_set = train_set[: cfg.max_examples]
    dev_set = load_split(cfg.dev_data, cfg, cfg.dev_docs, cfg.seed + 1)[: cfg.eval_limit] if cfg.dev_data else []
    if not train_set:
        raise ValueError("no training examples")
    train_q = {e.question for e in train_set}
    leaked = sum(e.question in train_q for e in dev_set)
    if leaked:
        raise ValueError(f"{leaked} dev questions also appear in the training data")
    logger.info("train examples: %d, dev examples: %d", len(train_set), len(dev_set))

    model = build_model(cfg)
    if cfg.gradient_checkpointing:
        model.encoder.gradient_checkpointing_enable()
        model.decoder.gradient_checkpointing_enable()
    projector_params = list(model.skim.parameters())
    projector_ids = {id(p) for p in projector_params}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in projector_ids]
    groups = [{"params": [p for p in projector_params if p.requires_grad], "lr": cfg.projector_lr}]
    if other:
        groups.append({"params": other, "lr": cfg.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start_step = 0
    if resume and existing:
        start_step = load_checkpoint(existing[-1], model, optimizer, scheduler)
        logger.info("resumed from %s at step %d", existing[-1], start_step)
    step_module = TrainingStep(model, cfg)
    step_module, optimizer = accelerator.prepare(step_module, optimizer)

    stop = {"flag": False}

    def _request_stop(signum: int, _frame: Any) -> None:
        stop["flag"] = True
        logger.warning("signal %d: saving a checkpoint and stopping after this step", signum)

    old_handlers = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    metrics_path = out / "metrics.jsonl"
    global_batch = cfg.batch_size * accelerator.num_processes
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (progress and accelerator.is_main_process), desc="train")
    step = start_step
    try:
        while step < cfg.steps and not stop["flag"]:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                idx = step_indices(cfg.seed, step * cfg.grad_accum + micro, global_batch, len(train_set))
                mine = idx[accelerator.process_index * cfg.batch_size : (accelerator.process_index + 1) * cfg.batch_size]
                batch = [train_set[i] for i in mine]
                ratio = _attainable(model, batch, step_ratio(cfg.seed, step, cfg.ratio_min, cfg.ratio_max))
                result = step_module(batch, ratio)
                loss = result["loss"]
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite loss {float(loss)} at step {step}, examples {[e.id for e in batch]}")
                accelerator.backward(loss / cfg.grad_accum)
                for key, value in result.items():
                    logs[key] = logs.get(key, 0.0) + float(value.detach()) / cfg.grad_accum
                logs["ratio"] = ratio
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - t0
            if accelerator.is_main_process:
                record = {"step": step, **{k: round(v, 6) for k, v in logs.items()}, "lr": scheduler.get_last_lr()[-1],
                          "tokens_per_s": round(logs["tokens"] * cfg.grad_accum / elapsed, 1), "step_s": round(elapsed, 3),
                          "temperature": round(model.skim.temperature, 4)}
                with metrics_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{logs['loss']:.3f}", nll=f"{logs['nll']:.3f}", con=f"{logs['contrastive']:.3f}",
                                rec=f"{logs['positive_recall']:.2f}")
                bar.update(1)
            if cfg.eval_every and step % cfg.eval_every == 0 and dev_set and accelerator.is_main_process:
                _log_eval(model, dev_set, cfg, step, metrics_path)
            if (step % cfg.save_every == 0 or stop["flag"]) and accelerator.is_main_process:
                save_checkpoint(out, step, model, optimizer, scheduler, cfg.keep_last)
            accelerator.wait_for_everyone()
    finally:
        bar.close()
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
    if step < cfg.steps:
        logger.warning("stopped at step %d of %d; rerun with --resume to continue", step, cfg.steps)
        return out
    final = out / "final"
    if accelerator.is_main_process:
        if step % cfg.save_every:  # not just saved inside the loop
            save_checkpoint(out, step, model, optimizer, scheduler, cfg.keep_last)
        if dev_set and not (cfg.eval_every and step % cfg.eval_every == 0):
            _log_eval(model, dev_set, cfg, step, metrics_path)
        model.trained = True
        model.save_pretrained(final, extra={"training": {"steps": step, "config": cfg.to_dict()}},
                              dtype=getattr(torch, cfg.adapter_dtype))
    accelerator.wait_for_everyone()
    return final


def _attainable(model: RAMModel, batch: Sequence[Example], ratio: float) -> float:
    """Clip a sampled ratio to what every context of the batch can reach (all-skim bound)."""
    seg = segment_batch([e.documents for e in batch], model.tokenizer, model.config.segment_tokens, model.config.word_snap_window)
    best = float((seg.original_tokens().double() / seg.segments_per_example().double()).min())
    return min(ratio, 0.95 * best) if best > 1 else 1.0


def _log_eval(model: RAMModel, dev: Sequence[Example], cfg: TrainConfig, step: int, path: Path) -> None:
    model.eval()
    result = evaluate(model, dev, cfg.eval_ratios, cfg.eval_generate)
    logger.info("dev at step %d: %s", step, result)
    with path.open("a") as fh:
        fh.write(json.dumps({"step": step, "eval": result}) + "\n")
