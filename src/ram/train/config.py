"""TrainConfig: one validated dataclass, loadable from YAML/JSON with key=value overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..config import DTYPE_NAMES

ENCODER_POLICIES = ("full", "top", "lora", "frozen")
DECODER_POLICIES = ("frozen", "qkv", "lora", "full")


@dataclass
class TrainConfig:
    """Everything a training run depends on; written resolved next to its checkpoints."""

    out: str = "runs/ram"
    train_data: str = "nq-multidoc:train"  # a file readable by ram.data, or nq-multidoc:<split>
    dev_data: str = "nq-multidoc:dev"
    nq_source: str = "../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz"
    train_docs: str = "5-20"  # documents per NQ context (N or LO-HI)
    dev_docs: int = 20
    backbone: str = "smollm2-135m"
    init_from: str | None = None  # start from a saved RAM directory instead of the backbone
    encoder_layers: int = 8
    segment_tokens: int = 50
    word_snap_window: int = 8
    encoder_policy: str = "top"  # full | top (only the top `encoder_trainable_layers`) | frozen
    encoder_trainable_layers: int = 2
    decoder_policy: str = "frozen"  # frozen | qkv | lora | full
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    steps: int = 1000
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-4
    projector_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ratio_min: float = 2.0
    ratio_max: float = 32.0
    contrastive_weight: float = 1.0
    contrastive_tau: float = 0.1
    max_answer_tokens: int = 24
    seed: int = 0
    save_every: int = 100
    keep_last: int = 2
    eval_every: int = 0  # 0: only at the end
    eval_limit: int = 32
    eval_ratios: list[float] = field(default_factory=lambda: [4.0, 8.0])
    eval_generate: bool = True
    bf16: bool = False  # on GPU; CPU trains in fp32
    gradient_checkpointing: bool = False
    max_examples: int | None = None
    adapter_dtype: str = "bfloat16"  # storage dtype of the final adapter

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _typed(f.name, str(f.type), getattr(self, f.name)))
        if self.encoder_policy not in ENCODER_POLICIES:
            raise ValueError(f"encoder_policy must be one of {ENCODER_POLICIES}, got {self.encoder_policy!r}")
        if self.decoder_policy not in DECODER_POLICIES:
            raise ValueError(f"decoder_policy must be one of {DECODER_POLICIES}, got {self.decoder_policy!r}")
        if not 1 <= self.encoder_trainable_layers <= self.encoder_layers:
            raise ValueError("encoder_trainable_layers must be in [1, encoder_layers]")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be >= 1")
        if not 1.0 <= self.ratio_min <= self.ratio_max:
            raise ValueError(f"need 1 <= ratio_min <= ratio_max, got {self.ratio_min}, {self.ratio_max}")
        if self.lr <= 0 or self.projector_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if self.contrastive_tau <= 0 or self.contrastive_weight < 0:
            raise ValueError("contrastive_tau must be > 0 and contrastive_weight >= 0")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if self.adapter_dtype not in DTYPE_NAMES:
            raise ValueError(f"adapter_dtype must be one of {', '.join(DTYPE_NAMES)}")
        if self.keep_last < 1 or self.save_every < 1:
            raise ValueError("keep_last and save_every must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> "TrainConfig":
        """From a YAML/JSON file (optional) plus ``key=value`` overrides (values parsed as YAML)."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ValueError(f"train config {p} does not exist")
            loaded = _parse_yaml(p.read_text(), f"{p} is not valid YAML/JSON") or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{p}: expected a mapping of settings")
            data.update(loaded)
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value")
            data[key.strip().replace("-", "_")] = _parse_yaml(value, f"override {item!r}: the value is not valid YAML")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _parse_yaml(text: str, problem: str) -> Any:
    """``yaml.safe_load``, with a parse error as a one-line ValueError that starts with ``problem``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{problem} ({' '.join(str(err).split())})") from err


_KINDS = {"int": (int, "an integer"), "float": ((int, float), "a number"), "str": (str, "a string"),
          "bool": (bool, "true or false")}


def _typed(name: str, annotation: str, value: Any) -> Any:
    """``value`` as the setting's annotated type (``int``, ``float``, ``str``, ``bool``, ``X | None``,
    ``list[X]``), or a ValueError naming the setting. Numbers written as strings are converted:
    YAML reads ``1e-4`` (no dot) as a string."""
    base = annotation.removesuffix(" | None")
    if value is None and base != annotation:
        return None
    if base.startswith("list[") and base.endswith("]"):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return [_typed(f"{name}[{i}]", base[5:-1], v) for i, v in enumerate(value)]
    kinds, wanted = _KINDS[base]
    if isinstance(value, str) and base in ("int", "float"):
        try:
            value = int(value) if base == "int" else float(value)
        except ValueError:
            pass
    if (isinstance(value, bool) and base != "bool") or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {wanted}{' or null' if base != annotation else ''}, got {value!r}")
    return value
