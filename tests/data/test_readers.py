"""Tests for ram.data.example and ram.data.readers: formats, gz, detection, file:line errors."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ram.data.example import Example
from ram.data.readers import (
    READERS,
    DataError,
    detect_format,
    format_document,
    load_examples,
    read_dpr,
    read_examples,
    read_hotpot,
    read_kv,
    read_leval,
    read_ram,
    write_examples,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Write JSON-encodable items (or raw strings) one per line; gzip if the name ends in .gz."""
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_example(**overrides: Any) -> Example:
    fields: dict[str, Any] = {
        "id": "q1",
        "question": "Who wrote Hamlet?",
        "answers": ["Shakespeare", "William Shakespeare"],
        "documents": ["Hamlet is a tragedy by William Shakespeare.", "Unrelated text."],
        "gold_spans": [(0, 23, 42)],
        "meta": {"gold_document": 0, "source": "test"},
    }
    fields.update(overrides)
    return Example(**fields)


# Sample records of every format, used by the gz, detection and registry tests.
HOTPOT_RECORD = {
    "question": "Which city is home to both Acme and Zed?",
    "answer": "Springfield",
    "type": "bridge",
    "level": "easy",
    "supporting_facts": {"title": ["Acme", "Zed"], "sent_id": [1, 0]},
    "context": {
        "title": ["Acme", "Other", "Zed"],
        "sentences": [
            ["Acme is a company.", " It is based in Springfield.", " It makes anvils."],
            ["Other is unrelated."],
            ["  Zed lives in Springfield. ", " Zed likes anvils."],
        ],
    },
}
SAMPLES: dict[str, list[dict[str, Any]]] = {
    "examples": [make_example().to_dict()],
    "ram": [{"prompt": "Who wrote Hamlet?", "answer": "Shakespeare", "input": "Hamlet ... Shakespeare."}],
    "dpr": [{
        "question": "who wrote hamlet",
        "answers": ["Shakespeare"],
        "ctxs": [
            {"title": "Macbeth", "text": "Macbeth is a play.", "hasanswer": False, "isgold": False},
            {"title": "Hamlet", "text": "Hamlet was written by Shakespeare.", "hasanswer": True, "isgold": True},
        ],
    }],
    "hotpot": [HOTPOT_RECORD],
    "leval": [{
        "input": "  A long document about Hamlet and Shakespeare.\n",
        "instructions": ["Who wrote Hamlet?", "What is Hamlet?"],
        "outputs": ["Shakespeare", "A tragedy"],
        "source": "natural_question",
        "evaluation": "f1",
    }],
    "kv": [{
        "ordered_kv_records": [["k-a", "v-a"], ["k-b", "v-b"], ["k-c", "v-c"]],
        "key": "k-b",
        "value": "v-b",
    }],
}


# ---------------------------------------------------------------------------------------------
# Example


def test_example_round_trip_through_json() -> None:
    ex = make_example()
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["gold_spans"] == [[0, 23, 42]]
    back = Example.from_dict(d)
    assert back == ex
    assert back.gold_spans == [(0, 23, 42)]
    assert isinstance(back.gold_spans[0], tuple)


def test_example_from_dict_defaults_optional_fields() -> None:
    ex = Example.from_dict({"id": "x", "question": "q?", "documents": ["d"]})
    assert ex.answers == [] and ex.gold_spans == [] and ex.meta == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"question": "   "}, "question must be a non-empty"),
        ({"documents": []}, "at least one document"),
        ({"documents": ["ok", " \n"], "gold_spans": []}, "document 1 is empty"),
        ({"documents": ["ok", 3], "gold_spans": []}, "document 1 must be a string"),
        ({"answers": ["ok", None]}, "answers must be a list of strings"),
        ({"answers": "Shakespeare"}, "answers must be a list of strings"),
        ({"gold_spans": [(2, 0, 1)]}, "document index 2 out of range"),
        ({"gold_spans": [(0, 5, 500)]}, "need 0 <= start < end"),
        ({"gold_spans": [(0, 5, 5)]}, "need 0 <= start < end"),
        ({"gold_spans": [(0, -1, 5)]}, "need 0 <= start < end"),
        ({"gold_spans": [(0, 1)]}, "must be three integers"),
        ({"gold_spans": [(0, True, 5)]}, "must be three integers"),
        ({"id": 7}, "id must be a string"),
        ({"meta": []}, "meta must be a dict"),
    ],
)
def test_example_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_example(**overrides)


def test_example_from_dict_missing_field() -> None:
    with pytest.raises(ValueError, match="missing field 'question'"):
        Example.from_dict({"id": "x", "documents": ["d"]})


# ---------------------------------------------------------------------------------------------
# Readers, one by one


def test_examples_reader_round_trip_plain_and_gz(tmp_path: Path) -> None:
    examples = [make_example(), make_example(id="q2", gold_spans=[], meta={})]
    for name in ("out.jsonl", "out.jsonl.gz"):
        path = tmp_path / name
        assert write_examples(examples, path) == 2
        assert read_examples(path) == examples
    with gzip.open(tmp_path / "out.jsonl.gz", "rt", encoding="utf-8") as f:
        assert json.loads(f.readline())["id"] == "q1"


def test_ram_reader_answer_str_or_list(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ram.jsonl", [
        {"prompt": "Q1?", "answer": "A1", "input": "context one"},
        "",
        {"prompt": "Q2?", "answer": ["A2", "B2"], "input": "context two", "id": "own-id"},
    ])
    ex = read_ram(path)
    assert [e.answers for e in ex] == [["A1"], ["A2", "B2"]]
    assert [e.documents for e in ex] == [["context one"], ["context two"]]
    assert [e.id for e in ex] == ["1", "own-id"]
    assert ex[0].question == "Q1?" and ex[0].meta["source"] == "ram"


def test_dpr_reader_formats_documents_and_gold(tmp_path: Path) -> None:
    rec = SAMPLES["dpr"][0]
    no_flag = {**rec, "ctxs": [{**c, "isgold": False} for c in rec["ctxs"]]}
    nothing = {**rec, "ctxs": [{"title": "T", "text": "x"}]}
    path = write_lines(tmp_path / "dpr.jsonl", [rec, no_flag, nothing])
    a, b, c = read_dpr(path)
    assert a.documents == [
        "Document [1](Title: Macbeth) Macbeth is a play.",
        "Document [2](Title: Hamlet) Hamlet was written by Shakespeare.",
    ]
    assert a.documents[1] == format_document(2, "Hamlet", "Hamlet was written by Shakespeare.")
    assert a.meta["gold_document"] == 1
    assert b.meta["gold_document"] == 1  # falls back to hasanswer
    assert "gold_document" not in c.meta
    assert a.answers == ["Shakespeare"] and a.question == "who wrote hamlet"


def test_dpr_reader_prefers_isgold_over_earlier_hasanswer(tmp_path: Path) -> None:
    rec = {"question": "q", "answers": ["x"], "ctxs": [
        {"title": "A", "text": "x here", "hasanswer": True, "isgold": False},
        {"title": "B", "text": "x gold", "hasanswer": True, "isgold": True},
    ]}
    (ex,) = read_dpr(write_lines(tmp_path / "d.jsonl", [rec]))
    assert ex.meta["gold_document"] == 1


def _check_hotpot(ex: Example) -> None:
    assert ex.answers == ["Springfield"]
    assert ex.documents == [
        "Acme: Acme is a company. It is based in Springfield. It makes anvils.",
        "Other: Other is unrelated.",
        "Zed: Zed lives in Springfield. Zed likes anvils.",
    ]
    texts = [ex.documents[d][s:e] for d, s, e in ex.gold_spans]
    assert texts == ["It is based in Springfield.", "Zed lives in Springfield."]
    assert [d for d, _, _ in ex.gold_spans] == [0, 2]
    assert ex.meta["gold_documents"] == [0, 2] and ex.meta["type"] == "bridge"


def test_hotpot_reader_json_list_spans_exact(tmp_path: Path) -> None:
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps([HOTPOT_RECORD, HOTPOT_RECORD]), encoding="utf-8")
    examples = read_hotpot(path)
    assert [e.id for e in examples] == ["1", "2"]
    _check_hotpot(examples[0])


def test_hotpot_reader_original_layout_jsonl(tmp_path: Path) -> None:
    rec = dict(HOTPOT_RECORD)
    rec["context"] = [[t, s] for t, s in zip(rec["context"]["title"], rec["context"]["sentences"])]
    rec["supporting_facts"] = [["Acme", 1], ["Zed", 0]]
    rec["_id"] = "abc"
    (ex,) = read_hotpot(write_lines(tmp_path / "hotpot.jsonl", [rec]))
    _check_hotpot(ex)
    assert ex.id == "abc"


def test_hotpot_reader_skips_dangling_fact(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = {**HOTPOT_RECORD, "supporting_facts": {"title": ["Acme", "Nope", "Zed"], "sent_id": [9, 0, 1]}}
    (ex,) = read_hotpot(write_lines(tmp_path / "h.jsonl", [rec]))
    assert [ex.documents[d][s:e] for d, s, e in ex.gold_spans] == ["Zed likes anvils."]
    assert "not in context" in caplog.text


def test_leval_reader_one_example_per_instruction(tmp_path: Path) -> None:
    rec = SAMPLES["leval"][0]
    path = write_lines(tmp_path / "leval.jsonl", [rec, rec])
    ex = read_leval(path)
    assert [e.id for e in ex] == ["1-0", "1-1", "2-0", "2-1"]
    assert ex[1].question == "What is Hamlet?" and ex[1].answers == ["A tragedy"]
    assert ex[0].documents == ["A long document about Hamlet and Shakespeare."]
    assert ex[0].meta == {"source": "leval", "subset": "natural_question", "evaluation": "f1"}


def test_kv_reader_document_and_gold_span(tmp_path: Path) -> None:
    (ex,) = read_kv(write_lines(tmp_path / "kv.jsonl", SAMPLES["kv"]))
    doc = ex.documents[0]
    assert doc == 'JSON data:\n{"k-a": "v-a",\n "k-b": "v-b",\n "k-c": "v-c"}'
    assert json.loads(doc.removeprefix("JSON data:\n")) == {"k-a": "v-a", "k-b": "v-b", "k-c": "v-c"}
    ((d, s, e),) = ex.gold_spans
    assert doc[s:e] == '"k-b": "v-b"'
    assert ex.question == 'What is the value associated with key "k-b"?'
    assert ex.answers == ["v-b"] and ex.meta["gold_position"] == 1


# ---------------------------------------------------------------------------------------------
# Registry, detection, gz, limit


def test_registry_names() -> None:
    assert set(READERS) == {"examples", "ram", "dpr", "hotpot", "leval", "kv"}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_detect_and_load_every_format(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = write_lines(tmp_path / f"data{suffix}", SAMPLES[fmt])
    assert detect_format(path) == fmt
    auto = load_examples(path)
    assert auto == READERS[fmt](path) == load_examples(str(path), format=fmt)
    assert len(auto) >= 1


def test_detect_hotpot_json_list_gz(tmp_path: Path) -> None:
    path = tmp_path / "h.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump([HOTPOT_RECORD], f)
    assert detect_format(path) == "hotpot"
    _check_hotpot(load_examples(path)[0])


def test_detect_skips_leading_blank_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "k.jsonl", ["", "   ", *SAMPLES["kv"]])
    assert detect_format(path) == "kv"


def test_load_examples_limit(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "leval.jsonl", SAMPLES["leval"] * 3)
    assert [e.id for e in load_examples(path, limit=3)] == ["1-0", "1-1", "2-0"]
    assert load_examples(path, limit=0) == []
    assert len(load_examples(path)) == 6


def test_load_examples_unknown_format(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", SAMPLES["ram"])
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        load_examples(path, format="csv")


def test_limit_stops_before_a_later_bad_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [*SAMPLES["ram"], "{not json"])
    assert len(load_examples(path, limit=1)) == 1
    with pytest.raises(DataError):
        load_examples(path)


# ---------------------------------------------------------------------------------------------
# Errors name the file and line


RAM_OK = {"prompt": "Q?", "answer": "A", "input": "ctx"}
DPR_OK = SAMPLES["dpr"][0]
KV_OK = SAMPLES["kv"][0]
LEVAL_OK = SAMPLES["leval"][0]


@pytest.mark.parametrize(
    ("fmt", "bad", "message"),
    [
        ("ram", "{not json", "invalid JSON"),
        ("ram", "[1, 2]", "expected a JSON object, got list"),
        ("ram", {"answer": "A", "input": "ctx"}, "missing field 'prompt'"),
        ("ram", {"prompt": "Q?", "input": "ctx"}, "missing field 'answer'"),
        ("ram", {**RAM_OK, "prompt": "  "}, "empty question"),
        ("ram", {**RAM_OK, "input": ""}, "empty context"),
        ("ram", {**RAM_OK, "prompt": 5}, "field 'prompt' must be a string, got integer"),
        ("ram", {**RAM_OK, "answer": ["A", 1]}, r"field 'answer'\[1\] must be a string"),
        ("dpr", {k: v for k, v in DPR_OK.items() if k != "question"}, "missing field 'question'"),
        ("dpr", {**DPR_OK, "answers": "Shakespeare"}, "field 'answers' must be a list, got string"),
        ("dpr", {**DPR_OK, "ctxs": []}, "empty context"),
        ("dpr", {**DPR_OK, "ctxs": ["text"]}, r"ctxs\[0\] must be an object"),
        ("dpr", {**DPR_OK, "ctxs": [{"title": "T"}]}, r"ctxs\[0\]: missing field 'text'"),
        ("dpr", {**DPR_OK, "ctxs": [{"title": 1, "text": "t"}]}, "field 'title' must be a string"),
        ("examples", {"id": "x", "documents": ["d"]}, "missing field 'question'"),
        ("examples", {"id": "x", "question": "q", "documents": "d"}, "field 'documents' must be a list"),
        ("examples", {"id": "x", "question": "q", "documents": ["d"], "gold_spans": [[0, 0, 9]]},
         "need 0 <= start < end"),
        ("leval", {**LEVAL_OK, "outputs": ["one"]}, "2 instructions but 1 outputs"),
        ("leval", {**LEVAL_OK, "input": " "}, "empty context"),
        ("leval", {**LEVAL_OK, "instructions": ["Q?", ""]}, r"empty question \(field 'instructions'\[1\]\)"),
        ("kv", {**KV_OK, "key": "k-zzz"}, "key 'k-zzz' not found"),
        ("kv", {**KV_OK, "value": "wrong"}, "has value 'v-b', but field 'value' is 'wrong'"),
        ("kv", {**KV_OK, "ordered_kv_records": [["k-b"]]}, r"ordered_kv_records\[0\] must be"),
        ("kv", {k: v for k, v in KV_OK.items() if k != "value"}, "missing field 'value'"),
        ("hotpot", {k: v for k, v in HOTPOT_RECORD.items() if k != "context"}, "missing field 'context'"),
        ("hotpot", {**HOTPOT_RECORD, "answer": ["x"]}, "field 'answer' must be a string"),
        ("hotpot", {**HOTPOT_RECORD, "supporting_facts": [["Acme"]]}, "must be \\[title, sentence id\\]"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, fmt: str, bad: Any, message: str) -> None:
    good = SAMPLES[fmt][0]
    path = write_lines(tmp_path / "bad.jsonl", [good, "", bad, good])  # bad record on line 3
    with pytest.raises(DataError, match=message) as info:
        READERS[fmt](path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_error_line_numbers_in_gz(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl.gz", [RAM_OK, RAM_OK, {"prompt": "Q"}])
    with pytest.raises(DataError, match=rf"^{path}:3: missing field 'input'$"):
        load_examples(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    for call in (lambda: load_examples(path), lambda: detect_format(path), lambda: read_kv(path)):
        with pytest.raises(DataError, match=rf"^{path}: no such file$"):
            call()


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a regular file"):
        load_examples(tmp_path, format="ram")


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match=rf"^{path}:1: cannot read file"):
        read_ram(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(RAM_OK).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=rf"^{path}:\d+: cannot read file"):
        read_ram(path)


def test_hotpot_list_errors_name_record(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps([HOTPOT_RECORD, {**HOTPOT_RECORD, "question": ""}]), encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:record 2: empty question"):
        read_hotpot(path)
    path.write_text('[\n  {"question": "q",\n  oops]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: invalid JSON"):
        read_hotpot(path)


def test_detect_format_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{empty}: empty file"):
        detect_format(empty)
    assert read_ram(empty) == []
    odd = write_lines(tmp_path / "odd.jsonl", ["", {"foo": 1, "bar": 2}])
    with pytest.raises(DataError, match=rf"^{odd}:2: cannot detect the format from keys \['bar', 'foo'\]"):
        load_examples(odd)
    bad = write_lines(tmp_path / "bad.jsonl", ["{oops"])
    with pytest.raises(DataError, match=rf"^{bad}:1: invalid JSON") as info:
        detect_format(bad)
    assert "JSON Lines" not in str(info.value)  # not a whole JSON document either: no hint
    pretty = tmp_path / "pretty.json"  # one object over several lines, as json.dump(indent=2) writes it
    pretty.write_text(json.dumps({"prompt": "q", "answer": ["a"], "input": "c"}, indent=2), encoding="utf-8")
    for read in (detect_format, read_ram):
        with pytest.raises(DataError, match=rf"^{pretty}:1: invalid JSON .*needs JSON Lines \(one object per line\)"):
            read(pretty)


# ---------------------------------------------------------------------------------------------
# write_examples


def test_write_examples_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    write_examples([make_example()], path)
    before = path.read_bytes()

    def broken():
        yield make_example(id="new")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_examples(broken(), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(path.parent) == ["out.jsonl"]  # and no temporary file is left
    assert write_examples([make_example(id="a"), make_example(id="b")], path) == 2
    assert [e.id for e in read_examples(path)] == ["a", "b"]
    assert os.listdir(path.parent) == ["out.jsonl"]


# ---------------------------------------------------------------------------------------------
# Real shared data (skipped when ../shared/data is absent)


@pytest.mark.parametrize(
    ("rel", "fmt"),
    [
        ("nq-open/nq-open-oracle.dev.jsonl.gz", "dpr"),
        ("kv-retrieval/kv-retrieval-75_keys.jsonl.gz", "kv"),
        ("hotpotqa/hotpot_dev_distractor_first100.json", "hotpot"),
        ("leval/natural_question.jsonl", "leval"),
        ("leval/multidoc_qa.jsonl", "leval"),
    ],
)
def test_real_files(rel: str, fmt: str) -> None:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not available")
    assert detect_format(path) == fmt
    examples = load_examples(path, limit=20)
    assert len(examples) == 20
    for ex in examples:
        assert Example.from_dict(json.loads(json.dumps(ex.to_dict()))) == ex
    if fmt == "hotpot":
        for ex in examples:
            assert ex.gold_spans, "every HotpotQA question has supporting facts"
            for d, s, e in ex.gold_spans:
                sentence = ex.documents[d][s:e]
                assert sentence == sentence.strip() and sentence
    if fmt == "kv":
        for ex in examples:
            ((d, s, e),) = ex.gold_spans
            assert ex.answers[0] in ex.documents[d][s:e]
            assert ex.question.split('"')[1] in ex.documents[d][s:e]
    if fmt == "dpr":
        assert all(ex.meta["gold_document"] == 0 for ex in examples)
