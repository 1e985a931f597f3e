"""Decode engines: ``hf`` (generate) and ``fast`` (StaticCache + step) emit the same greedy ids."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from ram.assemble import left_pad
import ram.bench.engine as engine_module
from ram.bench.engine import (
    ENGINES, FAST_ATTENTION, _attention_with_lse, _fast_attention, _flex_attention, _math_attention_with_lse,
    _prefix_attention, _split_attention, generate,
)
from ram.bench.shapes import build_random_model, tiny

TIMING_KEYS = {"prefill_s", "decode_s", "decode_ms_per_token"}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and the CI machine may be busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spread_model():
    """Tiny Qwen3 with large random weights, so greedy ids vary from step to step."""
    config = tiny()
    config.initializer_range = 0.3
    return build_random_model(config, dtype=torch.float32, device="cpu", seed=3)


def _prompts(model, lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        return [embed(torch.randint(0, model.config.vocab_size, (n,), generator=gen)) for n in lengths]


def test_engines_agree_on_a_left_padded_batch(spread_model):
    embeds, mask, _ = left_pad(_prompts(spread_model, (37, 20, 29)))
    hf_ids, hf_t = generate(spread_model, embeds, mask, 12, engine="hf")
    fast_ids, fast_t = generate(spread_model, embeds, mask, 12, engine="fast", compile=False)
    flex_ids, _ = generate(spread_model, embeds, mask, 12, engine="fast-flex", compile=False)
    assert hf_ids.shape == fast_ids.shape == (3, 12)
    assert torch.equal(hf_ids, fast_ids) and torch.equal(hf_ids, flex_ids)
    assert len(set(hf_ids[0].tolist())) > 3  # not a degenerate repetition
    for t in (hf_t, fast_t):
        assert set(t) == TIMING_KEYS
        assert t["prefill_s"] > 0 and t["decode_s"] > 0 and t["decode_ms_per_token"] > 0


def test_a_row_alone_matches_its_batch(spread_model):
    prompts = _prompts(spread_model, (31, 18))
    batch, mask, _ = left_pad(prompts)
    together, _ = generate(spread_model, batch, mask, 6, engine="fast", compile=False)
    for row, prompt in enumerate(prompts):
        alone, _ = generate(spread_model, prompt[None], torch.ones(1, prompt.shape[0], dtype=torch.bool), 6,
                            engine="fast", compile=False)
        assert torch.equal(alone[0], together[row])


def test_engines_agree_on_llama_and_ignore_eos(tiny_llama_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():  # spread the logits: varied greedy ids
            if p.ndim > 1:
                p.mul_(8.0)
    embeds, mask, _ = left_pad(_prompts(model, (25,), seed=1))
    fast_ids, _ = generate(model, embeds, mask, 8, engine="fast", compile=False)
    model.generation_config.eos_token_id = int(fast_ids[0, 0])  # would stop generate at once
    model.config.eos_token_id = int(fast_ids[0, 0])
    hf_ids, _ = generate(model, embeds, mask, 8, engine="hf")
    assert hf_ids.shape == (1, 8)
    assert torch.equal(hf_ids, fast_ids)


def test_fast_reuses_its_cache_and_restores_attention(spread_model):
    embeds, mask, _ = left_pad(_prompts(spread_model, (40,), seed=2))
    first, _ = generate(spread_model, embeds, mask, 5, engine="fast", compile=False)
    again, _ = generate(spread_model, embeds, mask, 5, engine="fast", compile=False)  # same cache, reset
    shorter, _ = generate(spread_model, embeds[:, 10:], mask[:, 10:], 5, engine="fast", compile=False)
    hf_short, _ = generate(spread_model, embeds[:, 10:], mask[:, 10:], 5, engine="hf")
    assert torch.equal(first, again)
    assert torch.equal(shorter, hf_short)
    assert spread_model.config._attn_implementation == "sdpa"


def test_one_new_token(spread_model):
    embeds, mask, _ = left_pad(_prompts(spread_model, (9,)))
    a, ta = generate(spread_model, embeds, mask, 1, engine="hf")
    b, tb = generate(spread_model, embeds, mask, 1, engine="fast", compile=False)
    assert a.shape == b.shape == (1, 1) and torch.equal(a, b)
    assert ta["decode_ms_per_token"] == tb["decode_ms_per_token"] == 0.0


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_one_token_step_matches_sdpa(spread_model, kv_heads, mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    attn = spread_model.model.layers[0].self_attn
    gen = torch.Generator().manual_seed(kv_heads)
    query = torch.randn(2, 4, 1, 16, generator=gen)
    key, value = torch.randn(2, kv_heads, 11, 16, generator=gen), torch.randn(2, kv_heads, 11, 16, generator=gen)
    mask = torch.rand(2, 1, 1, 11, generator=gen) > 0.3
    mask[:, ..., -1] = True
    if mask_kind == "float":
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    elif mask_kind == "none":
        mask = None
    attn = copy.copy(attn)  # the fixture's module stays as it is
    attn.num_key_value_groups = 4 // kv_heads  # what sdpa_attention_forward's repeat_kv reads
    ours, _ = _fast_attention(attn, query, key, value, mask, scaling=0.25)
    ref, _ = sdpa_attention_forward(attn, query, key, value, mask, scaling=0.25)
    flex, _ = _flex_attention(attn, query, key, value, mask, scaling=0.25)
    torch.testing.assert_close(flex, ref)
    split, _ = _split_attention(attn, query, key, value, mask, scaling=0.25)  # 11 slots: one piece
    torch.testing.assert_close(split, ref)
    assert ours.shape == ref.shape == (2, 1, 4, 16)
    torch.testing.assert_close(ours, ref)
    assert FAST_ATTENTION != "sdpa"


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_split_kv_step_sums_its_pieces_like_sdpa(spread_model, kv_heads, monkeypatch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    monkeypatch.setattr(engine_module, "SPLIT_CHUNK", 8)
    attn = copy.copy(spread_model.model.layers[0].self_attn)
    attn.num_key_value_groups = 4 // kv_heads
    gen = torch.Generator().manual_seed(10 + kv_heads)
    query = torch.randn(2, 4, 1, 16, generator=gen)
    key, value = torch.randn(2, kv_heads, 32, 16, generator=gen), torch.randn(2, kv_heads, 32, 16, generator=gen)
    mask = torch.rand(2, 1, 1, 32, generator=gen) > 0.5
    mask[:, ..., :3] = True
    ours, _ = _split_attention(attn, query, key, value, mask, scaling=0.25)  # 4 pieces of 8
    ref, _ = sdpa_attention_forward(attn, query, key, value, mask, scaling=0.25)
    torch.testing.assert_close(ours, ref)


def test_fast_split_engine_matches_hf_across_pieces(spread_model, monkeypatch):
    monkeypatch.setattr(engine_module, "SPLIT_CHUNK", 16)  # prompts of 37/20/29 + 11 steps: 3 pieces
    embeds, mask, _ = left_pad(_prompts(spread_model, (37, 20, 29)))
    hf_ids, _ = generate(spread_model, embeds, mask, 12, engine="hf")
    split_ids, timings = generate(spread_model, embeds, mask, 12, engine="fast-split", compile=False)
    assert torch.equal(hf_ids, split_ids) and set(timings) == TIMING_KEYS
    assert spread_model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_prefix_step_merges_prompt_and_tail_like_sdpa(spread_model, kv_heads):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    attn = copy.copy(spread_model.model.layers[0].self_attn)
    attn.num_key_value_groups = 4 // kv_heads
    gen = torch.Generator().manual_seed(20 + kv_heads)
    query = torch.randn(3, 4, 1, 16, generator=gen) * 3  # peaked softmax: the merge must weigh both parts
    key, value = torch.randn(3, kv_heads, 40, 16, generator=gen), torch.randn(3, kv_heads, 40, 16, generator=gen)
    tail = torch.rand(3, 1, 1, 9, generator=gen) > 0.5  # 31 prompt slots, 9 decode slots
    tail[0] = False  # the first step: no decode slot written yet
    tail[1] = True
    ours, _ = _prefix_attention(attn, query, key, value, tail, scaling=0.25)
    full = torch.cat([torch.ones(3, 1, 1, 31, dtype=torch.bool), tail], -1)
    ref, _ = sdpa_attention_forward(attn, query, key, value, full, scaling=0.25)
    assert ours.shape == ref.shape == (3, 1, 4, 16)
    torch.testing.assert_close(ours, ref)
    # a whole-cache mask (no tail convention) and prompts (several query tokens) go to the sdpa path
    whole, _ = _prefix_attention(attn, query, key, value, full, scaling=0.25)
    torch.testing.assert_close(whole, ref)


def test_log_sum_exp_attention_matches_its_math_form():
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 4, 16, generator=gen), torch.randn(2, 3, 50, 16, generator=gen),
               torch.randn(2, 3, 50, 16, generator=gen))
    out, lse = _attention_with_lse(q, k, v, 0.3)  # the CPU flash kernel
    math_out, math_lse = _math_attention_with_lse(q, k, v, 0.3)
    torch.testing.assert_close(lse, torch.logsumexp((q @ k.transpose(-1, -2)) * 0.3, -1))
    torch.testing.assert_close(out, math_out)
    torch.testing.assert_close(lse, math_lse)


def test_fast_prefix_engine_matches_hf(spread_model, caplog, monkeypatch):
    calls = []
    real = engine_module._attention_with_lse
    monkeypatch.setattr(engine_module, "_attention_with_lse", lambda *a: calls.append(1) or real(*a))
    for n, seed in ((37, 0), (9, 1)):  # unpadded prompts: the prefix path
        embeds = _prompts(spread_model, (n,), seed=seed)[0][None]
        mask = torch.ones(1, n, dtype=torch.bool)
        hf_ids, _ = generate(spread_model, embeds, mask, 12, engine="hf")
        ids, timings = generate(spread_model, embeds, mask, 12, engine="fast-prefix", compile=False)
        assert torch.equal(hf_ids, ids) and set(timings) == TIMING_KEYS
    assert len(calls) == 2 * 11 * spread_model.config.num_hidden_layers  # every step, every layer
    embeds, mask, _ = left_pad(_prompts(spread_model, (37, 20, 29)))  # padded: falls back to sdpa
    hf_ids, _ = generate(spread_model, embeds, mask, 12, engine="hf")
    with caplog.at_level("INFO", logger="ram.bench.engine"):
        ids, _ = generate(spread_model, embeds, mask, 12, engine="fast-prefix", compile=False)
    assert torch.equal(hf_ids, ids) and "unpadded prompt" in caplog.text
    assert spread_model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"engine": "vllm"}, "unknown engine"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"mask": torch.ones(1, 3, dtype=torch.bool)}, "does not match"),
        ({"mask": torch.tensor([[True] * 6 + [False]])}, "left-padded"),
    ],
)
def test_bad_inputs(spread_model, bad, message):
    embeds, mask, _ = left_pad(_prompts(spread_model, (7,)))
    args = {"engine": "fast", "max_new_tokens": 2, "mask": mask, **bad}
    with pytest.raises(ValueError, match=message):
        generate(spread_model, embeds, args["mask"], args["max_new_tokens"], engine=args["engine"], compile=False)
    assert set(ENGINES) >= {"hf", "fast"}


@pytest.mark.skipif(
    os.environ.get("RAM_TEST_COMPILE") != "1",
    reason="torch.compile (inductor) of the decode step takes ~30-60 s on a 2-core CPU; set RAM_TEST_COMPILE=1",
)
@pytest.mark.parametrize("engine", ["fast", "fast-flex", "fast-split", "fast-prefix", "fast-triton"])
def test_compiled_fast_matches_hf(spread_model, engine):
    lengths = (23,) if engine == "fast-prefix" else (23, 15)  # the prefix path needs an unpadded prompt
    embeds, mask, _ = left_pad(_prompts(spread_model, lengths))
    hf_ids, _ = generate(spread_model, embeds, mask, 6, engine="hf")
    start = time.perf_counter()
    fast_ids, _ = generate(spread_model, embeds, mask, 6, engine=engine, compile=True)
    assert torch.equal(hf_ids, fast_ids), f"compiled in {time.perf_counter() - start:.0f}s"
    again, _ = generate(spread_model, embeds, mask, 6, engine=engine, compile=True)  # cached graph
    assert torch.equal(again, hf_ids)


def test_gpu_check_script_passes_here_and_catches_a_wrong_log_sum_exp(monkeypatch, capsys):
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "check_decode_attention.py"
    main = runpy.run_path(str(script))["main"]
    assert main(["--device", "cpu", "--length", "300", "--prompt-tokens", "200", "--new-tokens", "6",
                 "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(" GB/s of K/V read") == 4 and "time triton (fast-triton): " in out
    assert out.count(" ok") == 4 and "ids fast-prefix: 100% equal to hf" in out
    assert "ids fast-triton: 100% equal to hf" in out  # Triton in its CPU interpreter (tests/conftest.py)
    # a kernel whose log-sum-exp were in base 2 (a plausible GPU difference) must be flagged
    real = engine_module._attention_with_lse
    monkeypatch.setattr(engine_module, "_attention_with_lse",
                        lambda *a: (lambda o, lse: (o, lse * 1.4426950408889634))(*real(*a)))
    main = runpy.run_path(str(script))["main"]
    assert main(["--device", "cpu", "--length", "300", "--prompt-tokens", "200", "--engines", "fast-prefix"]) == 1
    assert "prefix (fast-prefix): max abs error" in capsys.readouterr().out
