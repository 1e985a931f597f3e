"""Named architecture shapes for latency runs with random weights (no checkpoint needed).

Latency depends on the shape of a model, not on its weights, so a benchmark of Qwen3-4B's
speed needs only its config. Each entry builds a fresh ``PretrainedConfig``; nothing here
touches a model hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch and transformers load on first use: `ram --help` stays fast
    import torch
    from transformers import PretrainedConfig, PreTrainedModel


def qwen3_4b() -> PretrainedConfig:
    """Qwen3-4B: 36 layers, hidden 2560, GQA 32/8 heads of 128, tied embeddings."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def qwen3_0_6b() -> PretrainedConfig:
    """Qwen3-0.6B: 28 layers, hidden 1024, GQA 16/8 heads of 128, tied embeddings."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def llama_3_1_8b() -> PretrainedConfig:
    """Llama-3.1-8B: 32 layers, hidden 4096, GQA 32/8 heads, llama3 RoPE scaling to 128k."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        },
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )


def smollm2_135m() -> PretrainedConfig:
    """SmolLM2-135M (the default backbone's shape): 30 layers, hidden 576, GQA 9/3 heads."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 100_000.0}, rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def tiny() -> PretrainedConfig:
    """A few-hundred-kilobyte Qwen3 for tests: 4 layers, hidden 64."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, tie_word_embeddings=True,
    )


SHAPES: dict[str, Callable[[], PretrainedConfig]] = {
    "qwen3-4b": qwen3_4b,
    "llama-3.1-8b": llama_3_1_8b,
    "qwen3-0.6b": qwen3_0_6b,
    "smollm2-135m-shape": smollm2_135m,
    "tiny": tiny,
}


def shape_config(shape: str) -> PretrainedConfig:
    """A fresh config of the named shape; ValueError names the known shapes otherwise."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: default, {', '.join(SHAPES)}")
    return SHAPES[shape]()


def build_random_model(
    shape: str | PretrainedConfig,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> PreTrainedModel:
    """A causal LM of ``shape`` with random weights, created directly on ``device`` in ``dtype``.

    Creation under ``torch.device(device)`` allocates and initialises every tensor on the target
    device (fast on a GPU; no host copy). Weights are the architecture's usual random init, so
    activations stay finite and timings are representative.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = shape_config(shape) if isinstance(shape, str) else shape
    dtype = torch.float32 if dtype is None else dtype
    device = torch.device(device)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model
