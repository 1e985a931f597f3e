"""Data for RAM: benchmark readers, NQ multi-document construction and positive segments.

Pure standard-library code: importing ``ram.data`` never pulls in torch or transformers.
"""

from __future__ import annotations

from ram.data.example import Example
from ram.data.nq_multidoc import (
    build_nq_multidoc,
    parse_docs_arg,
    parse_gold_position,
    split_of,
)
from ram.data.positives import (
    answer_char_spans,
    normalize_answer,
    positive_mask,
    positive_spans,
)
from ram.data.readers import (
    READERS,
    DataError,
    detect_format,
    format_document,
    load_examples,
    read_dpr,
    read_examples,
    read_hotpot,
    read_kv,
    read_leval,
    read_ram,
    write_examples,
)

__all__ = [
    "Example",
    "DataError",
    "READERS",
    "detect_format",
    "load_examples",
    "write_examples",
    "format_document",
    "read_examples",
    "read_ram",
    "read_dpr",
    "read_hotpot",
    "read_leval",
    "read_kv",
    "split_of",
    "build_nq_multidoc",
    "parse_docs_arg",
    "parse_gold_position",
    "normalize_answer",
    "answer_char_spans",
    "positive_spans",
    "positive_mask",
]
