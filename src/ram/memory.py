"""Will a model fit? Weight sizes counted from a config, against the memory free on a device.

Loading a model larger than the free memory does not fail cleanly: the process is killed
halfway (CPU) or dies with an allocator error after minutes of reading weights (GPU). The
size of every parameter is known from the config alone, so the check costs a fraction of a
second and runs before anything is read or allocated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig

HEADROOM = 0.9  # share of the free memory the weights may take; the rest is for activations and caches


class InsufficientMemoryError(ValueError):
    """The weights alone would not fit in the device's free memory."""


def weight_bytes(config: PretrainedConfig, dtype: torch.dtype, encoder_layers: int = 0) -> int:
    """Bytes of a causal LM's parameters in ``dtype`` plus, with ``encoder_layers``, RAM's encoder
    copy of its embeddings and first blocks. Counted on the meta device: nothing is allocated,
    tied weights count once."""
    from transformers import AutoModel, AutoModelForCausalLM

    from .encoder import encoder_config

    with torch.device("meta"):
        total = sum(p.numel() for p in AutoModelForCausalLM.from_config(config, dtype=dtype).parameters())
        if encoder_layers:
            encoder = AutoModel.from_config(encoder_config(config, encoder_layers), dtype=dtype)
            total += sum(p.numel() for p in encoder.parameters())
    return total * torch.empty((), dtype=dtype).element_size()


def free_memory_bytes(device: str | torch.device) -> int:
    """Memory a new model can take now: free memory of a CUDA device, available RAM otherwise."""
    import psutil

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def check_fits(
    config: PretrainedConfig,
    dtype: torch.dtype,
    device: str | torch.device,
    encoder_layers: int = 0,
    name: str = "this model",
    hint: str = "use bfloat16, a device with more memory, or a smaller model",
) -> None:
    """InsufficientMemoryError, before anything is allocated, when the weights (decoder plus
    encoder copy) exceed ``HEADROOM`` of the free memory on ``device``."""
    device = torch.device(device)
    need = weight_bytes(config, dtype, encoder_layers)
    free = free_memory_bytes(device)
    if need > HEADROOM * free:
        gib = 2**30
        where = "this machine (available RAM)" if device.type == "cpu" else str(device)
        raise InsufficientMemoryError(
            f"{name} needs {need / gib:.1f} GiB for its weights in {str(dtype).replace('torch.', '')} "
            f"(decoder plus an encoder of {encoder_layers} layers), but only {free / gib:.1f} GiB is free "
            f"on {where}; {hint}"
        )
