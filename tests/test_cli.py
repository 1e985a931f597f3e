"""The `ram` command line: JSON/text contracts, stdin and JSON contexts, one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ram import RAMModel
from ram.cli import main

CONTEXT = (
    "Paris is the capital and most populous city of France, on the river Seine. "
    "Photosynthesis converts light energy into chemical energy stored in glucose. "
    "Charles Darwin wrote the origin of species in 1859."
)
DOCS = ["Charles Darwin wrote the origin of species in 1859.", "Paris is on the river Seine.", "Music and sport."]
QUESTION = "Who wrote the origin of species?"
SEGMENT_KEYS = {"index", "document", "start", "end", "tokens", "score", "kept", "dropped"}


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    model = RAMModel.from_backbone(tiny_llama_dir, encoder_layers=2, segment_tokens=8, word_snap_window=2)
    return str(model.save_pretrained(tmp_path_factory.mktemp("cli") / "ram-tiny"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli-inputs")
    made = {
        "context.txt": CONTEXT.encode(),
        "docs.json": json.dumps(DOCS).encode(),
        "wrapped.json": json.dumps({"documents": DOCS}).encode(),
        "empty.txt": b"",
        "blank.txt": b"  \n\t\n",
        "binary.bin": b"abc\x00def",
        "latin1.txt": "caf\u00e9 cr\u00e8me".encode("latin-1"),
        "malformed.json": b'["unterminated", ',
        "notlist.json": b'{"text": "x"}',
        "emptydoc.json": b'["ok", "  "]',
    }
    for name, data in made.items():
        (root / name).write_bytes(data)
    (root / "adir").mkdir()
    out = {name: str(root / name) for name in made}
    out["adir"] = str(root / "adir")
    out["missing"] = str(root / "missing.txt")
    return out


def _run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compress_json_contract(capsys, model_dir: str, files: dict[str, str]) -> None:
    code, out, err = _run(capsys, ["compress", "--context", files["context.txt"], "--question", QUESTION,
                                   "--ratio", "3", "--model", model_dir, "--format", "json"])
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"original_tokens", "compressed_length", "target_ratio", "achieved_ratio", "segments", "text", "timings"}
    assert "answer" not in data
    assert data["target_ratio"] == 3.0
    assert data["compressed_length"] <= -(-data["original_tokens"] // 3)
    assert data["achieved_ratio"] == pytest.approx(data["original_tokens"] / data["compressed_length"], rel=1e-6)
    assert data["segments"] and all(set(s) == SEGMENT_KEYS for s in data["segments"])
    assert "".join(CONTEXT[s["start"] : s["end"]] for s in data["segments"]) == CONTEXT
    assert sum(s["tokens"] for s in data["segments"]) == data["original_tokens"]
    for s in data["segments"]:
        if s["kept"]:
            assert CONTEXT[s["start"] : s["end"]].strip() in data["text"]
    assert isinstance(data["timings"], dict) and data["timings"]


def test_answer_json_and_text(capsys, model_dir: str, files: dict[str, str]) -> None:
    base = ["--context", files["context.txt"], "--question", QUESTION, "--ratio", "2", "--model", model_dir,
            "--max-new-tokens", "3"]
    code, out, err = _run(capsys, ["answer", *base, "--format", "json"])
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data["answer"], str)
    assert {"original_tokens", "achieved_ratio", "segments", "text"} <= set(data)
    assert {"compress", "generate", "total"} <= set(data["timings"])
    code, out, err = _run(capsys, ["answer", *base])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("answer:")
    assert any(line.startswith("map:") for line in lines)
    assert any(line.startswith("ratio:") for line in lines)
    code, fast_out, err = _run(capsys, ["answer", *base, "--format", "json", "--engine", "fast"])
    assert code == 0, err
    assert json.loads(fast_out)["answer"] == data["answer"]


def test_dtype_option_loads_that_precision(capsys, model_dir: str, files: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import ram.cli as cli

    loaded = []
    real = cli.load_model
    monkeypatch.setattr(cli, "load_model", lambda *a: loaded.append(real(*a)) or loaded[-1])
    code, out, err = _run(capsys, ["answer", "--context", files["context.txt"], "--question", QUESTION, "--ratio", "2",
                                   "--model", model_dir, "--max-new-tokens", "3", "--format", "json", "--dtype", "bfloat16"])
    assert code == 0, err
    assert isinstance(json.loads(out)["answer"], str)
    assert loaded[0].decoder.dtype == loaded[0].encoder.dtype == torch.bfloat16
    assert next(loaded[0].skim.parameters()).dtype == torch.bfloat16
    code, _, err = _run(capsys, ["compress", "--context", files["context.txt"], "--question", QUESTION,
                                 "--model", model_dir, "--dtype", "float8"])
    assert code == 2 and "invalid choice" in err


def test_device_option(capsys, model_dir: str, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    base = ["compress", "--context", files["context.txt"], "--question", QUESTION, "--model", model_dir,
            "--format", "json"]
    code, out, err = _run(capsys, [*base, "--device", "cpu"])
    assert code == 0, err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this machine and in CI
    code, _, err = _run(capsys, [*base, "--device", "cuda"])
    assert code == 2 and err.startswith("error: --device cuda: CUDA is not available") and err.count("\n") == 1
    code, auto_out, err = _run(capsys, base)  # auto: no GPU, so the CPU, with the same result
    assert code == 0, err
    assert json.loads(auto_out)["segments"] == json.loads(out)["segments"]


def test_skim_share_reaches_ratios_beyond_all_skim(capsys, model_dir: str, files: dict[str, str]) -> None:
    base = ["compress", "--context", files["context.txt"], "--question", QUESTION, "--ratio", "1000",
            "--model", model_dir, "--format", "json"]
    code, _, err = _run(capsys, base)
    assert code == 2 and "max_skim_share" in err
    code, out, err = _run(capsys, [*base, "--max-skim-share", "0.5"])
    assert code == 0, err
    data = json.loads(out)
    assert data["compressed_length"] <= -(-data["original_tokens"] // 1000)
    assert data["dropped_segments"] >= len(data["segments"]) - data["compressed_length"]


def test_compress_text_format(capsys, model_dir: str, files: dict[str, str]) -> None:
    code, out, err = _run(capsys, ["compress", "--context", files["docs.json"], "--question", QUESTION,
                                   "--ratio", "2", "--model", model_dir])
    assert code == 0, err
    assert "answer:" not in out
    map_line = next(line for line in out.splitlines() if line.startswith("map:"))
    assert map_line.split()[1].count("|") == 2


def test_context_from_stdin(capsys, monkeypatch, model_dir: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CONTEXT.encode())))
    code, out, err = _run(capsys, ["compress", "--context", "-", "--question", QUESTION, "--ratio", "2",
                                   "--model", model_dir, "--format", "json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["segments"][-1]["end"] == len(CONTEXT)
    assert {s["document"] for s in data["segments"]} == {0}


@pytest.mark.parametrize("name", ["docs.json", "wrapped.json"])
def test_context_from_json_documents(capsys, model_dir: str, files: dict[str, str], name: str) -> None:
    code, out, err = _run(capsys, ["compress", "--context", files[name], "--question", QUESTION, "--ratio", "2",
                                   "--model", model_dir, "--format", "json"])
    assert code == 0, err
    segments = json.loads(out)["segments"]
    assert {s["document"] for s in segments} == {0, 1, 2}
    for d, doc in enumerate(DOCS):
        mine = [s for s in segments if s["document"] == d]
        assert "".join(doc[s["start"] : s["end"]] for s in mine) == doc


@pytest.mark.parametrize(
    "context, question, extra, fragment",
    [
        ("missing", QUESTION, [], "does not exist"),
        ("adir", QUESTION, [], "not a file"),
        ("empty.txt", QUESTION, [], "empty"),
        ("blank.txt", QUESTION, [], "empty"),
        ("binary.bin", QUESTION, [], "binary"),
        ("latin1.txt", QUESTION, [], "UTF-8"),
        ("malformed.json", QUESTION, [], "JSON"),
        ("notlist.json", QUESTION, [], "list"),
        ("emptydoc.json", QUESTION, [], "list"),
        ("context.txt", "", [], "question"),
        ("context.txt", "   ", [], "question"),
        ("context.txt", QUESTION, ["--ratio", "0.5"], "ratio"),
        ("context.txt", QUESTION, ["--ratio", "nan"], "ratio"),
        ("context.txt", QUESTION, ["--ratio", "inf"], "ratio"),
        ("context.txt", QUESTION, ["--ratio", "1000"], "largest attainable"),
        ("context.txt", QUESTION, ["--ratio", "abc"], "ratio"),
        ("context.txt", QUESTION, ["--keep-ratio", "1.5"], "keep_ratio"),
        ("context.txt", QUESTION, ["--max-skim-share", "1.5"], "max_skim_share"),
        ("context.txt", QUESTION, ["--format", "yaml"], "format"),
    ],
)
def test_bad_input_is_one_error_line(capsys, model_dir: str, files: dict[str, str], context: str, question: str,
                                     extra: list[str], fragment: str) -> None:
    code, out, err = _run(capsys, ["compress", "--context", files[context], "--question", question,
                                   "--model", model_dir, *extra])
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert fragment.lower() in lines[0].lower()


def test_unknown_model_and_bad_command(capsys, files: dict[str, str], tmp_path: Path) -> None:
    for args in (
        ["answer", "--context", files["context.txt"], "--question", QUESTION, "--model", "no-such-model"],
        ["compress", "--context", files["context.txt"], "--question", QUESTION, "--model", str(tmp_path)],
        ["info", "--model", "no-such-model"],
        ["frobnicate"],
        ["compress", "--question", QUESTION],  # missing --context
    ):
        code, out, err = _run(capsys, args)
        assert code == 2, args
        assert out == "", args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, err)


def test_info_json(capsys, model_dir: str) -> None:
    code, out, err = _run(capsys, ["info", "--model", model_dir, "--format", "json"])
    assert code == 0, err
    info = json.loads(out)
    assert info["encoder_layers"] == 2 and info["segment_tokens"] == 8
    assert info["backbone_layers"] == 4 and info["backbone_class"] == "LlamaForCausalLM"
    assert info["trained"] is False


def test_console_entry_point() -> None:
    """The installed `ram` script (next to this interpreter) works; errors use exit code 2."""
    script = Path(sys.executable).with_name("ram")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "ram.cli"]
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for sub in ("compress", "answer", "info"):
        assert sub in done.stdout
    bad = subprocess.run([*cmd, "compress", "--context", "/no/such/file.txt", "--question", "q"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
