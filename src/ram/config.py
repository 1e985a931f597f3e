"""RAMConfig: every knob of the method in one validated, JSON-serialisable dataclass."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_FORMATS = ("chat", "plain")
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # precisions the CLI and configs accept, by torch name


def pick_device(name: str = "auto") -> str:
    """A device name for ``--device``: ``auto`` is ``cuda`` when a GPU is usable, else ``cpu``;
    asking for CUDA without one is a ValueError (not a crash deep inside the first forward)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = ", a CPU-only build" if torch.version.cuda is None else ""
        raise ValueError(f"--device {name}: CUDA is not available (torch {torch.__version__}{build}); use --device cpu")
    return name


@dataclass
class RAMConfig:
    """Hyper-parameters of a RAM model (what is trained and how contexts are compressed).

    Attributes:
        backbone: local directory of a HF causal LM, or a built-in name (``"smollm2-135m"``).
        encoder_layers: number of the decoder's first layers copied into the encoder (paper: 8).
        segment_tokens: target segment length in tokens (paper: 50).
        skim_temperature: initial tau of the query-guided skim pooling (paper: 1.0).
        learn_temperature: whether tau is a trainable parameter.
        max_batch_tokens: bound on padded tokens per encoder forward, keeps memory flat.
        prompt_format: ``"chat"`` uses the tokenizer's chat template, ``"plain"`` the paper's
            ``{context}Question:{q}\\nAnswer:``.
        instruction: text placed before the context in the chat format.
        skim_marker: what a skimmed segment looks like in the text view.
        word_snap_window: how far (tokens) a segment cut may move back to land on a word start.
        max_skim_share: the largest share of a ratio's position budget that skim vectors may
            take; beyond it the lowest-scored segments are dropped so that close reading keeps
            the rest (1.0 = the paper: every segment not read is skimmed). Below 1 it also makes
            ratios above the all-skim limit attainable.
    """

    backbone: str = "smollm2-135m"
    encoder_layers: int = 8
    segment_tokens: int = 50
    skim_temperature: float = 1.0
    learn_temperature: bool = True
    max_batch_tokens: int = 16384
    prompt_format: str = "chat"
    instruction: str = (
        "Answer the question based on the given documents. "
        "Only give me the answer and do not output any other words."
    )
    skim_marker: str = " [...] "
    word_snap_window: int = 8
    max_skim_share: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError("backbone must be a non-empty string (a directory or a built-in name)")
        if self.encoder_layers < 1:
            raise ValueError(f"encoder_layers must be >= 1, got {self.encoder_layers}")
        if self.segment_tokens < 2:
            raise ValueError(f"segment_tokens must be >= 2, got {self.segment_tokens}")
        if not self.skim_temperature > 0:
            raise ValueError(f"skim_temperature must be > 0, got {self.skim_temperature}")
        if self.max_batch_tokens < self.segment_tokens:
            raise ValueError(
                f"max_batch_tokens ({self.max_batch_tokens}) must be >= segment_tokens ({self.segment_tokens})"
            )
        if not 0.0 <= self.max_skim_share <= 1.0:
            raise ValueError(f"max_skim_share must be in [0, 1], got {self.max_skim_share}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        if not 0 <= self.word_snap_window < max(1, self.segment_tokens // 2):
            raise ValueError(
                "word_snap_window must be in [0, segment_tokens // 2) so cuts stay ordered, "
                f"got {self.word_snap_window} with segment_tokens={self.segment_tokens}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RAMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RAMConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "RAMConfig":
        path = Path(text_or_path)
        text = path.read_text() if not str(text_or_path).lstrip().startswith("{") else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "RAMConfig":
        return dataclasses.replace(self, **changes)
