"""ram: Read As Human context compression — close-read what matters, skim the rest.

Heavy modules (torch, transformers) load on first use, so ``ram.data`` and the CLI's input
checks stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compressed import Answer, CompressedContext, Segment
    from .config import RAMConfig
    from .model import RAMModel

__all__ = ["Answer", "CompressedContext", "RAMConfig", "RAMModel", "Segment"]
__version__ = "0.1.0"
_WHERE = {"Answer": "compressed", "CompressedContext": "compressed", "Segment": "compressed",
          "RAMConfig": "config", "RAMModel": "model"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'ram' has no attribute {name!r}")
