"""Split-KV decode attention in Triton (flash decoding), for one query token over a long cache.

The ``fast`` engine's one-token step reads the whole static KV cache. SDPA's masked kernels run
one thread block per (batch, head) for a single query, which leaves most SMs of a large GPU idle
over a long cache. This kernel splits the cache length over many programs: each reads its slice
of K/V once for all query heads that share the KV head (GQA), keeps an online softmax, and
writes a partial output and its log-sum-exp; a second kernel merges the partials exactly.

Any boolean key mask works (left padding, unopened decode slots), so unlike ``fast-prefix`` it
needs no unpadded prompt. Exposed as the custom op ``ram::decode_attention`` so that
``torch.compile`` and CUDA graphs treat it as one opaque call. Runs on CUDA, or anywhere under
Triton's interpreter (``TRITON_INTERPRET=1``, slow: for tests).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import torch

BLOCK_N = 64  # cache positions per tile
PROGRAMS_PER_SM = 4  # target (splits x batch x KV heads) per multiprocessor


def interpreting() -> bool:
    """True when Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def available(device: torch.device) -> bool:
    """Whether :func:`decode_attention` can run on ``device``: Triton installed, and CUDA or the interpreter."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or (interpreting() and device.type == "cpu")


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """Build the two Triton kernels on first use, so importing this module needs no Triton.
    (Triton reads ``TRITON_INTERPRET`` when it is first imported: set it before that.)"""
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, out_ptr, lse_ptr,
                       stride_qb, stride_qh,
                       stride_kb, stride_kh, stride_kn,
                       stride_vb, stride_vh, stride_vn,
                       stride_mb,
                       stride_ob, stride_oh, stride_os,
                       stride_lb, stride_lh,
                       length, split_len, scale_log2,
                       GROUPS: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_D: tl.constexpr, BLOCK: tl.constexpr, UPCAST: tl.constexpr,
                       PRECISION: tl.constexpr):
        # one program: one split of the cache, one batch row, one KV head and all its query heads
        split = tl.program_id(0)
        row = tl.program_id(1).to(tl.int64)  # 64-bit offsets: a long cache times a batch passes 2**31
        kv_head = tl.program_id(2).to(tl.int64)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        heads = kv_head * GROUPS + g
        g_ok = g < GROUPS
        d_ok = d < HEAD_DIM
        q = tl.load(q_ptr + row * stride_qb + heads[:, None] * stride_qh + d[None, :],
                    mask=g_ok[:, None] & d_ok[None, :], other=0.0)  # [BLOCK_G, BLOCK_D]
        if UPCAST:  # the interpreter's dot is wrong on bf16 operands
            q = q.to(tl.float32)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        start = split * split_len
        end = tl.minimum(start + split_len, length)
        k_base = k_ptr + row * stride_kb + kv_head * stride_kh
        v_base = v_ptr + row * stride_vb + kv_head * stride_vh
        for n0 in range(0, split_len, BLOCK):  # the last split's tiles past ``length`` are all masked
            n = start + n0 + tl.arange(0, BLOCK)
            n_ok = n < end
            keep = tl.load(mask_ptr + row * stride_mb + n, mask=n_ok, other=0) != 0  # [BLOCK]
            tile_ok = n_ok[:, None] & d_ok[None, :]
            k = tl.load(k_base + n[:, None] * stride_kn + d[None, :], mask=tile_ok, other=0.0)  # [BLOCK, BLOCK_D]
            v = tl.load(v_base + n[:, None] * stride_vn + d[None, :], mask=tile_ok, other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
                v = v.to(tl.float32)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2  # [BLOCK_G, BLOCK], log2 domain
            s = tl.where(keep[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no key yet: keep exp2 finite
            alpha = tl.exp2(m_i - m_safe)
            p = tl.exp2(s - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        l_safe = tl.where(l_i > 0, l_i, 1.0)
        lse = tl.where(l_i > 0, m_i + tl.log2(l_safe), float("-inf"))  # empty split: weight 0
        out_rows = out_ptr + row * stride_ob + heads[:, None] * stride_oh + split * stride_os + d[None, :]
        tl.store(out_rows, acc / l_safe[:, None], mask=g_ok[:, None] & d_ok[None, :])
        tl.store(lse_ptr + row * stride_lb + heads * stride_lh + split, lse, mask=g_ok)

    @triton.jit
    def combine_kernel(part_ptr, lse_ptr, res_ptr,
                       stride_pb, stride_ph, stride_ps,
                       stride_lb, stride_lh,
                       stride_rb, stride_rh,
                       SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_D: tl.constexpr):
        # one program: one (batch row, query head); merge the splits' softmaxes exactly
        row = tl.program_id(0).to(tl.int64)
        head = tl.program_id(1).to(tl.int64)
        s = tl.arange(0, BLOCK_S)
        d = tl.arange(0, BLOCK_D)
        s_ok = s < SPLITS
        d_ok = d < HEAD_DIM
        lse = tl.load(lse_ptr + row * stride_lb + head * stride_lh + s, mask=s_ok, other=float("-inf"))
        top = tl.max(lse, 0)
        weight = tl.exp2(lse - top)  # [BLOCK_S]; empty splits -> 0
        parts = tl.load(part_ptr + row * stride_pb + head * stride_ph + s[:, None] * stride_ps + d[None, :],
                        mask=s_ok[:, None] & d_ok[None, :], other=0.0)
        res = tl.sum(parts * weight[:, None], 0) / tl.sum(weight, 0)
        tl.store(res_ptr + row * stride_rb + head * stride_rh + d, res.to(res_ptr.dtype.element_ty), mask=d_ok)

    return partial_kernel, combine_kernel


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def num_splits(device: torch.device, batch: int, kv_heads: int, length: int) -> int:
    """Cache splits so that splits x batch x KV heads is about ``PROGRAMS_PER_SM`` per SM
    (never more than one tile per split). Fixed for a cache length, so CUDA graphs replay it."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    wanted = _cdiv(PROGRAMS_PER_SM * sms, batch * kv_heads)
    return max(1, min(wanted, _cdiv(length, BLOCK_N)))


@torch.library.custom_op("ram::decode_attention", mutates_args=())
def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                     scale: float, splits: int = 0) -> torch.Tensor:
    """Attention of one query token per row over a cache -> [B, H, D] in ``query``'s dtype.

    query [B, H, D]; key/value [B, Hkv, T, D] (last dim contiguous; H a multiple of Hkv, query
    head j reads KV head j // (H / Hkv)); mask [B, T] bool (True: attend). ``splits`` 0 picks
    :func:`num_splits`. A row whose mask is all False gives NaN, as SDPA does."""
    batch, heads, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    if key.shape != value.shape or key.shape[0] != batch or key.shape[-1] != dim or heads % kv_heads:
        raise ValueError(f"decode_attention: query {tuple(query.shape)}, key {tuple(key.shape)}, "
                         f"value {tuple(value.shape)} do not fit [B, H, D] / [B, Hkv, T, D]")
    if mask.shape != (batch, length) or mask.dtype != torch.bool:
        raise ValueError(f"decode_attention: mask must be bool [{batch}, {length}], got {mask.dtype} {tuple(mask.shape)}")
    if not available(query.device):
        raise RuntimeError("decode_attention needs Triton and a CUDA device (or TRITON_INTERPRET=1 on CPU)")
    query, key, value = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
    mask = mask.contiguous().view(torch.uint8)
    groups = heads // kv_heads
    splits = splits or num_splits(query.device, batch, kv_heads, length)
    split_len = _cdiv(_cdiv(length, splits), BLOCK_N) * BLOCK_N  # whole tiles per split
    splits = _cdiv(length, split_len)
    parts = torch.empty(batch, heads, splits, dim, dtype=torch.float32, device=query.device)
    lse = torch.empty(batch, heads, splits, dtype=torch.float32, device=query.device)
    result = torch.empty(batch, heads, dim, dtype=query.dtype, device=query.device)
    partial_kernel, combine_kernel = _kernels()
    block_d = _next_pow2(dim)
    partial_kernel[(splits, batch, kv_heads)](
        query, key, value, mask, parts, lse,
        query.stride(0), query.stride(1),
        key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2),
        mask.stride(0),
        parts.stride(0), parts.stride(1), parts.stride(2),
        lse.stride(0), lse.stride(1),
        length, split_len, scale * 1.4426950408889634,  # log2(e): the kernel works in base 2
        GROUPS=groups, BLOCK_G=max(16, _next_pow2(groups)), HEAD_DIM=dim, BLOCK_D=block_d, BLOCK=BLOCK_N,
        UPCAST=interpreting(),
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32",  # fp32 caches: no tf32 rounding
    )
    combine_kernel[(batch, heads)](
        parts, lse, result,
        parts.stride(0), parts.stride(1), parts.stride(2),
        lse.stride(0), lse.stride(1),
        result.stride(0), result.stride(1),
        SPLITS=splits, BLOCK_S=_next_pow2(splits), HEAD_DIM=dim, BLOCK_D=block_d,
    )
    return result


@decode_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
      scale: float, splits: int = 0) -> torch.Tensor:
    return torch.empty_like(query)
