"""ram: Read As Human context compression — close-read what matters, skim the rest."""

from .compressed import Answer, CompressedContext, Segment
from .config import RAMConfig
from .model import RAMModel

__all__ = ["Answer", "CompressedContext", "RAMConfig", "RAMModel", "Segment"]
__version__ = "0.1.0"
