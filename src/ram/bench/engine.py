"""Greedy decode engines over ``inputs_embeds``, timed: ``hf`` (``generate``) and ``fast``.

``fast`` prefills into a ``StaticCache`` with one eager forward, then runs a greedy loop whose
one-token step is ``torch.compile``'d (``mode="reduce-overhead"``, i.e. CUDA graphs, on CUDA).
Every shape in the loop is fixed (cache length, attention-mask buffer), so the graph is
captured once per cache length and replayed for every token. ``fast-flex`` is ``fast`` with
FlexAttention's decoding kernel for the one-token steps: an experiment for long caches on GPU,
where SDPA's masked kernel leaves most SMs idle. On an H200 it was 2.6x slower than ``fast``
(docs/results.md), so it stays a bench option, not a library engine. ``fast-split`` (split-KV
in plain matmuls) and ``fast-prefix`` (the prompt's cache through the unmasked flash kernel,
merged with the decode tail by log-sum-exp) and ``fast-triton`` (a split-KV Triton kernel,
:mod:`ram.bench.decode_kernel`) are the next candidates, not yet timed on a GPU.
The engines ignore EOS here and
emit exactly ``max_new_tokens`` tokens, so timings compare equal work; on the same weights
they produce the same ids.
"""

from __future__ import annotations

import inspect
import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from transformers import PreTrainedModel, StaticCache
from transformers.generation.streamers import BaseStreamer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from . import decode_kernel

Timings = dict[str, float]
logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> None:
    if inputs_embeds.ndim != 3:
        raise ValueError(f"inputs_embeds must be [B, T, H], got shape {tuple(inputs_embeds.shape)}")
    if attention_mask.shape != inputs_embeds.shape[:2]:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} does not match inputs_embeds {tuple(inputs_embeds.shape[:2])}"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not bool(attention_mask[:, -1].all()):
        raise ValueError("attention_mask must be left-padded (the last position of every row is real)")


def _timings(prefill_s: float, decode_s: float, max_new_tokens: int) -> Timings:
    steps = max_new_tokens - 1  # the first token comes from the prefill
    return {
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "decode_ms_per_token": 1000.0 * decode_s / steps if steps else 0.0,
    }


# ---------------------------------------------------------------------------- hf
class _TokenClock(BaseStreamer):
    """Records when each generated token reaches the host (``generate`` syncs there anyway)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        if value.ndim == 1:  # the prompt arrives first as [B, 0]; new tokens come as [B]
            self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def generate_hf(
    decoder: PreTrainedModel, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
) -> tuple[torch.Tensor, Timings]:
    """``decoder.generate`` (greedy, dynamic cache) with EOS disabled: exactly ``max_new_tokens`` ids.

    ``generate`` fills every unset (None) field from the model's own generation config, so EOS,
    penalties and the like are switched off by swapping in a plain config for the call.
    """
    from transformers import GenerationConfig

    pad = decoder.config.pad_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=0 if pad is None else pad,
    )
    clock = _TokenClock()
    saved = decoder.generation_config
    decoder.generation_config = GenerationConfig()
    try:
        _sync(inputs_embeds.device)
        start = time.perf_counter()
        out = decoder.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask.long(), generation_config=config,
            streamer=clock,
        )
        _sync(inputs_embeds.device)
        end = time.perf_counter()
    finally:
        decoder.generation_config = saved
    ids = out[:, -max_new_tokens:] if out.shape[1] > max_new_tokens else out
    if ids.shape[1] != max_new_tokens:
        raise RuntimeError(f"generate stopped after {ids.shape[1]} of {max_new_tokens} tokens")
    first = clock.times[0] if clock.times else end
    return ids, _timings(first - start, end - first, max_new_tokens)


# ---------------------------------------------------------------------------- fast
FAST_ATTENTION = "ram_fast_sdpa"


def _fast_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """SDPA, except one-token GQA steps: the query heads of each KV head become the query rows,
    so the whole static cache is read once instead of copied ``num_key_value_groups`` times
    (transformers' ``repeat_kv`` does that copy whenever a mask is given or under compile)."""
    groups = getattr(module, "num_key_value_groups", 1)
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    shared_mask = attention_mask is None or (attention_mask.ndim == 4 and attention_mask.shape[1] == 1)
    if query.shape[2] == 1 and groups > 1 and plain and shared_mask and query.shape[-1] == value.shape[-1]:
        batch, heads, _, dim = query.shape
        packed = query.reshape(batch, heads // groups, groups, dim)  # head j uses kv head j // groups
        out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
        return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


FLEX_ATTENTION = "ram_fast_flex"
SPLIT_ATTENTION = "ram_fast_split"
PREFIX_ATTENTION = "ram_fast_prefix"
TRITON_ATTENTION = "ram_fast_triton"
DECODE_ATTENTION = {"sdpa": FAST_ATTENTION, "flex": FLEX_ATTENTION, "split": SPLIT_ATTENTION,
                    "prefix": PREFIX_ATTENTION, "triton": TRITON_ATTENTION}
SPLIT_CHUNK = 1024  # cache positions per partial product in split-KV decoding (``split``)


def _split_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """:func:`_fast_attention`, except that one-token steps run as plain matmuls, with the
    probability-times-value product split along the cache into ``SPLIT_CHUNK``-long pieces that
    are summed after: flash decoding's split-KV, in torch ops. Each piece is its own small GEMM,
    so a long cache is spread over many thread blocks instead of one per KV head. The scores for
    one query token are tiny ([B, H, T] floats), so they are materialised and the softmax is
    exact (fp32); the probabilities meet V in V's dtype, as in flash attention."""
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    usable_mask = attention_mask is None or (attention_mask.ndim == 4 and attention_mask.shape[1] == 1
                                             and attention_mask.shape[2] == 1)
    batch, heads, q_len, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    if q_len != 1 or not plain or not usable_mask or heads % kv_heads or value.shape[-1] != dim:
        return _fast_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    groups = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    packed = query.reshape(batch, kv_heads, groups, dim)  # query head j reads kv head j // groups
    scores = torch.matmul(packed, key.transpose(-1, -2)).float() * scale  # [B, Hkv, G, T]
    if attention_mask is not None:
        mask = attention_mask[:, :, :1, :]  # [B, 1, 1, T], broadcast over KV heads and groups
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    pieces = length // SPLIT_CHUNK
    if pieces > 1 and length % SPLIT_CHUNK == 0:
        probs = probs.view(batch, kv_heads, groups, pieces, SPLIT_CHUNK).transpose(2, 3)  # [B, Hkv, C, G, S]
        parts = torch.matmul(probs, value.view(batch, kv_heads, pieces, SPLIT_CHUNK, dim))  # [B, Hkv, C, G, D]
        out = parts.float().sum(2).to(value.dtype)
    else:
        out = torch.matmul(probs, value)  # [B, Hkv, G, D]
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention of [B, H, Lq, D] over [B, H, Lk, D] -> (out [B, H, Lq, D], lse [B, H, Lq] fp32).

    On CUDA in fp16/bf16 this is the flash kernel, which splits a long ``Lk`` over thread blocks
    (split-KV) when ``B * H`` would leave SMs idle; on CPU, its CPU counterpart; otherwise math."""
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and query.shape[-1] % 8 == 0:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, 0.0, False, False,
                                                                      scale=scale)[:2]
        return out, lse
    if query.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, False, scale=scale)
    return _math_attention_with_lse(query, key, value, scale)


def _math_attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_attention_with_lse` in plain ops (fp32 scores), for devices and dtypes without a kernel."""
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scale
    lse = torch.logsumexp(scores, -1)
    return torch.matmul(torch.exp(scores - lse[..., None]).to(value.dtype), value), lse


def _prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """:func:`_fast_attention`, except one-token steps whose mask covers only the cache's *tail*
    (``[B, 1, 1, T]`` bool: the slots decoding writes; every slot before them holds the unpadded
    prompt). The prompt part runs the flash kernel without a mask (split-KV over the long cache)
    and returns its log-sum-exp; the tail (at most ``max_new_tokens`` slots) is a small masked
    product; the two partial softmaxes are merged exactly. No mask over the long cache means
    nothing forces SDPA's one-block-per-head masked kernel."""
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    batch, heads, q_len, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    tail_mask = attention_mask is not None and attention_mask.dtype == torch.bool and attention_mask.ndim == 4 \
        and attention_mask.shape[1] == 1 and attention_mask.shape[2] == 1 and attention_mask.shape[-1] < length
    if q_len != 1 or not tail_mask:
        return _fast_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    assert attention_mask is not None  # for type checkers: tail_mask implies it
    prefix = length - attention_mask.shape[-1]
    if not plain or heads % kv_heads or value.shape[-1] != dim:  # rebuild the whole mask: prompt slots are open
        full = torch.cat([attention_mask.new_ones(batch, 1, 1, prefix), attention_mask], -1)
        return _fast_attention(module, query, key, value, full, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    scale = dim**-0.5 if scaling is None else scaling
    packed = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # query head j reads kv head j // groups
    head_out, head_lse = _attention_with_lse(packed, key[:, :, :prefix], value[:, :, :prefix], scale)
    scores = torch.matmul(packed, key[:, :, prefix:].transpose(-1, -2)).float() * scale  # [B, Hkv, G, T]
    scores = scores.masked_fill(~attention_mask, float("-inf"))  # [B, 1, 1, T] broadcast
    top = torch.maximum(head_lse, scores.amax(-1))  # [B, Hkv, G], finite: the prompt part is never empty
    head_weight = torch.exp(head_lse - top)
    tail_probs = torch.exp(scores - top[..., None])  # masked slots -> 0
    total = head_out.float() * head_weight[..., None] + torch.matmul(tail_probs.to(value.dtype), value[:, :, prefix:]).float()
    out = (total / (head_weight + tail_probs.sum(-1))[..., None]).to(value.dtype)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _triton_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """:func:`_fast_attention`, except that one-token steps with a ``[B, 1, 1, T]`` bool mask run
    the split-KV Triton kernel (:mod:`ram.bench.decode_kernel`): the cache is spread over
    many programs, each reading its slice once for all query heads of a KV head."""
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    batch, heads, q_len, dim = query.shape
    usable_mask = attention_mask is not None and attention_mask.dtype == torch.bool and attention_mask.ndim == 4 \
        and attention_mask.shape[1] == 1 and attention_mask.shape[2] == 1 and attention_mask.shape[-1] == key.shape[2]
    if q_len != 1 or not plain or not usable_mask or heads % key.shape[1] or value.shape[-1] != dim:
        return _fast_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    assert attention_mask is not None  # for type checkers: usable_mask implies it
    scale = dim**-0.5 if scaling is None else scaling
    out = decode_kernel.decode_attention(query[:, :, 0], key, value, attention_mask[:, 0, 0], scale)  # [B, H, D]
    return out[:, None], None


def _flex_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """:func:`_fast_attention`, except that one-token steps with a boolean (or no) mask run
    FlexAttention, whose decoding kernel splits the cache length across thread blocks (flash
    decoding) instead of running one block per head. Compiled (the ``fast`` step is), it is a
    Triton kernel; eager, a slow reference (correct, for tests)."""
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    usable_mask = attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.ndim == 4
                                             and attention_mask.shape[1] == 1 and attention_mask.shape[2] == 1)
    if query.shape[2] != 1 or not plain or not usable_mask or query.shape[1] % key.shape[1]:
        return _fast_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    from torch.nn.attention.flex_attention import flex_attention

    score_mod = None
    if attention_mask is not None:
        valid = attention_mask[:, 0, 0]  # [B, L] bool

        def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q: torch.Tensor,
                      kv: torch.Tensor) -> torch.Tensor:
            return torch.where(valid[b, kv], score, -float("inf"))

    out = flex_attention(query, key, value, score_mod=score_mod, enable_gqa=key.shape[1] != query.shape[1],
                         scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers.modeling_utils import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FAST_ATTENTION, _fast_attention)
    AttentionMaskInterface.register(FAST_ATTENTION, sdpa_mask)
    AttentionInterface.register(FLEX_ATTENTION, _flex_attention)
    AttentionMaskInterface.register(FLEX_ATTENTION, sdpa_mask)
    AttentionInterface.register(SPLIT_ATTENTION, _split_attention)
    AttentionMaskInterface.register(SPLIT_ATTENTION, sdpa_mask)
    AttentionInterface.register(PREFIX_ATTENTION, _prefix_attention)
    AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)
    AttentionInterface.register(TRITON_ATTENTION, _triton_attention)
    AttentionMaskInterface.register(TRITON_ATTENTION, sdpa_mask)


@contextmanager
def _fast_attention_on(decoder: PreTrainedModel, attention: str = "sdpa") -> Iterator[None]:
    """Route an SDPA decoder through :func:`_fast_attention` (``sdpa``), :func:`_flex_attention`
    (``flex``), :func:`_split_attention` (``split``), :func:`_prefix_attention` (``prefix``) or
    :func:`_triton_attention` (``triton``) for the duration (restored after)."""
    config = decoder.config
    before = getattr(config, "_attn_implementation", None)
    if before not in ("sdpa", *DECODE_ATTENTION.values()):
        yield  # eager / flash / flex: left as they are
        return
    _register_attention()
    config._attn_implementation = DECODE_ATTENTION[attention]
    try:
        yield
    finally:
        config._attn_implementation = before


def _forward_params(decoder: PreTrainedModel) -> set[str]:
    return set(inspect.signature(decoder.forward).parameters)


def _cache_kwarg(decoder: PreTrainedModel) -> str:
    """transformers >= 5.2x names the cache argument ``cache``; earlier 5.x ``past_key_values``."""
    return "cache" if "cache" in _forward_params(decoder) else "past_key_values"


_STATE = "_ram_fast_engine"  # per-decoder state, kept on the decoder itself (freed with it)


def _state(decoder: PreTrainedModel) -> dict[str, Any]:
    state = decoder.__dict__.get(_STATE)
    if state is None:
        state = {"cache": None, "steps": {}}
        decoder.__dict__[_STATE] = state
    return state


def _static_cache(decoder: PreTrainedModel, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> Any:
    """One reusable StaticCache per decoder: the same tensors every repeat, so a captured CUDA
    graph stays valid; a different size frees the old cache before allocating the new one."""
    state = _state(decoder)
    key = (batch, length, dtype, str(device))
    if state["cache"] is not None and state["cache"][0] == key:
        state["cache"][1].reset()
        return state["cache"][1]
    state["cache"] = None
    cache = StaticCache(config=decoder.config, max_cache_len=length)
    state["cache"] = (key, cache)
    return cache


def _step_for(decoder: PreTrainedModel, compile: bool, attention: str = "sdpa") -> Callable:
    steps = _state(decoder)["steps"]
    if (compile, attention) not in steps:  # one compiled step per attention implementation
        steps[(compile, attention)] = _make_step(decoder, compile)
    return steps[(compile, attention)]


def release(decoder: PreTrainedModel) -> None:
    """Drop the fast engine's cache and compiled steps held for ``decoder``."""
    decoder.__dict__.pop(_STATE, None)


def _make_step(decoder: PreTrainedModel, compile: bool) -> Callable:
    cache_key = _cache_kwarg(decoder)
    with_cache_position = "cache_position" in _forward_params(decoder)

    def step(token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor, slot: torch.Tensor, cache: Any) -> torch.Tensor:
        """[B, 1] token written at cache ``slot`` -> [B] next greedy token."""
        kwargs: dict[str, Any] = {cache_key: cache}
        if with_cache_position:  # transformers versions that index the static cache explicitly
            kwargs["cache_position"] = slot
        out = decoder(input_ids=token, attention_mask=mask, position_ids=position, use_cache=True, **kwargs)
        return out.logits[:, -1].float().argmax(-1)

    if not compile:
        return step
    # Each new cache length recompiles once; automatic dynamic shapes make the second length
    # symbolic, so a sweep compiles about twice. CUDA graphs are recorded per shape.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    mode = "reduce-overhead" if decoder.device.type == "cuda" else None
    return torch.compile(step, mode=mode, fullgraph=False)


def generate_fast(
    decoder: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    compile: bool = True,
    eos_token_id: int | None = None,
    check_every: int = 8,
    attention: str = "sdpa",
) -> tuple[torch.Tensor, Timings]:
    """Eager prefill into a StaticCache, then a (compiled) one-token greedy step per new token.

    With ``eos_token_id`` the loop stops once every row has produced it (checked every
    ``check_every`` steps, to keep host syncs rare); ids after a row's EOS are whatever greedy
    decoding continued with, so callers cut each row at its first EOS. Without it, exactly
    ``max_new_tokens`` ids (the benchmark's equal-work setting). ``attention``: ``sdpa``,
    ``flex``, ``split``, ``prefix`` or ``triton`` for the one-token steps (see
    :func:`_flex_attention`, :func:`_split_attention`, :func:`_prefix_attention`,
    :func:`_triton_attention`; ``prefix`` needs an unpadded prompt and falls back to ``sdpa`` for
    a padded batch; ``triton`` needs Triton and a CUDA device)."""
    if attention not in DECODE_ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(DECODE_ATTENTION)}, got {attention!r}")
    device = inputs_embeds.device
    if attention == "triton":
        if not decode_kernel.available(device):
            raise RuntimeError(f"fast-triton needs the triton package and a CUDA device (got {device.type}); "
                               "on CPU use fast, or set TRITON_INTERPRET=1 to test it (very slow)")
    batch, length = attention_mask.shape
    mask = attention_mask.bool()
    if attention == "prefix" and not bool(mask.all()):
        logger.info("fast-prefix needs an unpadded prompt; this padded batch decodes with the sdpa step")
        attention = "sdpa"
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # as generate: count real tokens only
    capacity = length + max(1, max_new_tokens - 1)
    if attention == "split":  # whole chunks, so the split is a view; the extra slots stay masked
        capacity = -(-capacity // SPLIT_CHUNK) * SPLIT_CHUNK
    cache = _static_cache(decoder, batch, capacity, inputs_embeds.dtype, device)
    kwargs: dict[str, Any] = {_cache_kwarg(decoder): cache}
    if "cache_position" in _forward_params(decoder):
        kwargs["cache_position"] = torch.arange(length, device=device)
    step = _step_for(decoder, compile, attention)
    graphs = compile and device.type == "cuda"
    # Fixed-shape decode state: one mask row over every cache slot, opened a slot per step
    # ([B, 1, 1, capacity] is used as is by the model: no mask building inside the step).
    # ``prefix`` masks only the slots after the prompt ([B, 1, 1, capacity - length]).
    opened = 0 if attention == "prefix" else length  # mask index of the first decode slot
    step_mask = torch.zeros(batch, 1, 1, capacity - length + opened, dtype=torch.bool, device=device)
    step_mask[:, 0, 0, :opened] = mask[:, :opened]
    slots = torch.arange(length, capacity, device=device)
    last = positions[:, -1:]
    ids = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)

    with _fast_attention_on(decoder, attention):
        _sync(device)
        start = time.perf_counter()
        # The prompt's own 2D mask: a padding-free prompt takes SDPA's causal (flash) path.
        out = decoder(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1, **kwargs)
        ids[:, 0] = out.logits[:, -1].float().argmax(-1)
        del out
        _sync(device)
        prefill_end = time.perf_counter()
        produced = max_new_tokens
        finished = ids[:, 0] == eos_token_id if eos_token_id is not None else None
        for k in range(max_new_tokens - 1):
            if finished is not None and k % max(1, check_every) == 0 and bool(finished.all()):
                produced = k + 1
                break
            step_mask[:, 0, 0, opened + k] = True
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            ids[:, k + 1] = step(ids[:, k : k + 1], last + (k + 1), step_mask, slots[k : k + 1], cache)
            if finished is not None:
                finished |= ids[:, k + 1] == eos_token_id
        _sync(device)
        end = time.perf_counter()
    return ids[:, :produced], _timings(prefill_end - start, end - prefill_end, produced)


ENGINES: dict[str, Callable[..., tuple[torch.Tensor, Timings]]] = {
    "hf": lambda decoder, embeds, mask, n, compile=False: generate_hf(decoder, embeds, mask, n),
    "fast": lambda decoder, embeds, mask, n, compile=True: generate_fast(decoder, embeds, mask, n, compile=compile),
    # fast with FlexAttention's split-KV decoding kernel for the one-token steps (GPU experiment)
    "fast-flex": lambda decoder, embeds, mask, n, compile=True: generate_fast(decoder, embeds, mask, n,
                                                                             compile=compile, attention="flex"),
    # fast with split-KV decoding in plain matmuls for the one-token steps (GPU experiment)
    "fast-split": lambda decoder, embeds, mask, n, compile=True: generate_fast(decoder, embeds, mask, n,
                                                                               compile=compile, attention="split"),
    # fast with the prompt's cache read by the unmasked flash kernel (split-KV), merged with the
    # masked decode tail by log-sum-exp (GPU experiment)
    "fast-prefix": lambda decoder, embeds, mask, n, compile=True: generate_fast(decoder, embeds, mask, n,
                                                                                compile=compile, attention="prefix"),
    # fast with a split-KV Triton kernel for the one-token steps (any bool mask; GPU experiment)
    "fast-triton": lambda decoder, embeds, mask, n, compile=True: generate_fast(decoder, embeds, mask, n,
                                                                                compile=compile, attention="triton"),
}


@torch.inference_mode()
def generate(
    decoder: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    engine: str = "hf",
    compile: bool = True,
) -> tuple[torch.Tensor, Timings]:
    """Greedy ids ``[B, max_new_tokens]`` (EOS ignored) and ``{prefill_s, decode_s, decode_ms_per_token}``.

    ``inputs_embeds`` [B, T, H] and ``attention_mask`` [B, T] (bool, left-padded, as
    :func:`ram.assemble.left_pad` makes them). ``compile`` matters for ``fast`` only.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    _check(inputs_embeds, attention_mask, max_new_tokens)
    return ENGINES[engine](decoder, inputs_embeds, attention_mask, max_new_tokens, compile)
