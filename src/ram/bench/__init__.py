"""Latency benchmarks for RAM: architecture shapes with random weights, decode engines, sweeps.

``ram bench`` (see :mod:`ram.bench.command`) times full prompts against RAM compression at
several ratios, stage by stage. Heavy modules load on first use.
"""

from __future__ import annotations

__all__ = ["ENGINES", "SHAPES", "build_random_model", "generate", "run_bench"]


def __getattr__(name: str):  # lazy: keep `import ram.bench` cheap
    if name in ("SHAPES", "build_random_model"):
        from . import shapes

        return getattr(shapes, name)
    if name in ("ENGINES", "generate"):
        from . import engine

        return getattr(engine, name)
    if name == "run_bench":
        from .latency import run_bench

        return run_bench
    raise AttributeError(f"module 'ram.bench' has no attribute {name!r}")
