"""The split-KV Triton decode kernel (run here through Triton's CPU interpreter) against fp64."""

from __future__ import annotations

import os

import pytest
import torch

from ram.assemble import left_pad
from ram.bench import decode_kernel
from ram.bench.decode_kernel import BLOCK_N, decode_attention, num_splits
from ram.bench.engine import generate
from ram.bench.shapes import build_random_model, tiny

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(not decode_kernel.interpreting() and not torch.cuda.is_available(),
                                reason="Triton kernels need CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it)")


def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
              scale: float) -> torch.Tensor:
    """Masked softmax attention in fp64, query head j reading KV head j // groups."""
    groups = query.shape[1] // key.shape[1]
    k, v = (t.double().repeat_interleave(groups, 1) for t in (key, value))
    scores = torch.einsum("bhd,bhtd->bht", query.double(), k) * scale
    return torch.einsum("bht,bhtd->bhd", scores.masked_fill(~mask[:, None], float("-inf")).softmax(-1), v)


@pytest.mark.parametrize(
    "dtype, batch, heads, kv_heads, length, dim, splits",
    [
        (torch.float32, 2, 8, 2, 300, 64, 0),  # GQA 4, a partial last tile
        (torch.bfloat16, 1, 9, 3, 777, 64, 5),  # SmolLM2's 3 query heads per KV head
        (torch.float32, 3, 4, 4, 65, 80, 0),  # no GQA, head dim not a power of 2
        (torch.float32, 1, 4, 1, 200, 32, 50),  # more splits asked for than there are tiles
    ],
)
def test_kernel_matches_fp64(dtype, batch, heads, kv_heads, length, dim, splits):
    gen = torch.Generator().manual_seed(length)
    query = torch.randn(batch, heads, dim, generator=gen).to(dtype) * 2  # peaked: merging must weigh splits
    key, value = (torch.randn(batch, kv_heads, length, dim, generator=gen).to(dtype) for _ in range(2))
    mask = torch.rand(batch, length, generator=gen) > 0.3
    mask[0, : length // 3] = False  # left padding over whole tiles: empty splits
    mask[:, -5:] = False  # unopened decode slots
    out = decode_attention(query, key, value, mask, dim**-0.5, splits)
    ref = reference(query, key, value, mask, dim**-0.5)
    assert out.shape == (batch, heads, dim) and out.dtype == dtype
    error = ((out.double() - ref).norm() / ref.norm()).item()
    assert error < (5e-3 if dtype == torch.bfloat16 else 1e-5)  # bf16: the output's rounding


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy
def test_a_row_with_no_open_key_is_nan_like_sdpa():
    query, key, value = torch.randn(2, 4, 16), torch.randn(2, 2, 70, 16), torch.randn(2, 2, 70, 16)
    mask = torch.ones(2, 70, dtype=torch.bool)
    mask[1] = False
    out = decode_attention(query, key, value, mask, 0.25)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[0]).all()


def test_splits_fill_the_device_without_empty_tiles():
    cpu = torch.device("cpu")  # 4 "SMs" off CUDA
    assert num_splits(cpu, 1, 8, 32768) == 2  # 4 programs per SM over 8 KV heads
    assert num_splits(cpu, 1, 1, 100) == 2  # capped at the number of tiles
    assert num_splits(cpu, 64, 8, 32768) == 1
    assert BLOCK_N & (BLOCK_N - 1) == 0


def test_bad_inputs_are_refused():
    q, k = torch.randn(1, 4, 16), torch.randn(1, 2, 10, 16)
    with pytest.raises(ValueError, match="mask must be bool"):
        decode_attention(q, k, k, torch.ones(1, 10), 0.25)
    with pytest.raises(ValueError, match="do not fit"):
        decode_attention(torch.randn(1, 3, 16), k, k, torch.ones(1, 10, dtype=torch.bool), 0.25)


def test_custom_op_registration_is_consistent():
    """Fake (meta) and real implementations agree: what torch.compile traces is what runs."""
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 2, 40, 16), torch.randn(2, 2, 40, 16)
    mask = torch.rand(2, 40) > 0.2
    mask[:, 0] = True
    torch.library.opcheck(decode_attention, (q, k, v, mask, 0.25, 0),
                          test_utils=("test_schema", "test_faketensor"))


def test_fast_triton_engine_matches_hf_on_padded_and_unpadded_prompts(monkeypatch):
    calls = []
    monkeypatch.setattr(decode_kernel, "decode_attention", lambda *a: calls.append(1) or decode_attention(*a))
    config = tiny()
    config.initializer_range = 0.3
    model = build_random_model(config, dtype=torch.float32, device="cpu", seed=3)
    gen = torch.Generator().manual_seed(0)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        prompts = [embed(torch.randint(0, config.vocab_size, (n,), generator=gen)) for n in (37, 20, 29)]
    for rows in (prompts, prompts[:1]):  # left-padded batch, then one unpadded prompt
        embeds, mask, _ = left_pad(rows)
        hf_ids, _ = generate(model, embeds, mask, 6, engine="hf")
        ids, _ = generate(model, embeds, mask, 6, engine="fast-triton", compile=False)
        assert torch.equal(ids, hf_ids) and len(set(hf_ids[0].tolist())) > 2
    assert len(calls) == 2 * 5 * config.num_hidden_layers  # every one-token step, every layer
    assert model.config._attn_implementation == "sdpa"


def test_fast_triton_refuses_a_device_without_triton(monkeypatch):
    model = build_random_model(tiny(), dtype=torch.float32, device="cpu", seed=1)
    embeds, mask, _ = left_pad([torch.randn(5, model.config.hidden_size)])
    monkeypatch.setattr(decode_kernel, "interpreting", lambda: False)
    with pytest.raises(RuntimeError, match="needs the triton package and a CUDA device"):
        generate(model, embeds, mask, 3, engine="fast-triton", compile=False)


AOT_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from ram.bench.decode_kernel import _kernels

def build(fn, pointers, consts):
    signature = {name: pointers.get(name, "i32") for name in fn.arg_names}
    signature.update({name: "constexpr" for name in consts})
    constexprs = {(fn.arg_names.index(name),): value for name, value in consts.items()}
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=GPUTarget("cuda", 90, 32))

partial, combine = _kernels()
kernel = build(partial, {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "mask_ptr": "*u8", "out_ptr": "*fp32",
                         "lse_ptr": "*fp32", "scale_log2": "fp32"},
               {"GROUPS": 4, "BLOCK_G": 16, "HEAD_DIM": 128, "BLOCK_D": 128, "BLOCK": 64, "UPCAST": False,
                "PRECISION": "tf32"})
build(partial, {"q_ptr": "*fp32", "k_ptr": "*fp32", "v_ptr": "*fp32", "mask_ptr": "*u8", "out_ptr": "*fp32",
                "lse_ptr": "*fp32", "scale_log2": "fp32"},
      {"GROUPS": 3, "BLOCK_G": 16, "HEAD_DIM": 64, "BLOCK_D": 64, "BLOCK": 64, "UPCAST": False, "PRECISION": "ieee"})
build(combine, {"part_ptr": "*fp32", "lse_ptr": "*fp32", "res_ptr": "*bf16"},
      {"SPLITS": 33, "BLOCK_S": 64, "HEAD_DIM": 128, "BLOCK_D": 128})
print("mma" in kernel.asm["ptx"], len(kernel.asm["cubin"]) > 0)
"""


def test_kernels_compile_for_hopper_with_tritons_own_compiler():
    """The interpreter is lenient; the real compiler (PTX, then ptxas to an sm_90 cubin, both in the
    triton wheel) must accept the kernels at Qwen3-4B's decode shapes in bf16, with tensor-core dots,
    and at SmolLM2's in fp32."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(decode_kernel.__file__).parents[2])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, "-c", AOT_COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
