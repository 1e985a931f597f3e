"""Readers that turn each benchmark's file format into a list of :class:`Example`.

One reader per format, all registered in :data:`READERS`; ``.gz`` files are decompressed
transparently. Every problem with the input raises :class:`DataError` whose message starts with
``"{path}:{line}:"`` (``"{path}:record {n}:"`` inside a JSON list), so a bad record in a large
file can be found at once. :func:`write_examples` writes the native format atomically.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ram.atomic import atomic_file
from ram.data.example import Example

logger = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "READERS",
    "format_document",
    "read_examples",
    "read_ram",
    "read_dpr",
    "read_hotpot",
    "read_leval",
    "read_kv",
    "detect_format",
    "load_examples",
    "write_examples",
]

PathLike = str | os.PathLike[str]


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


def format_document(index: int, title: str, text: str) -> str:
    """A passage as in "Lost in the Middle" prompts: ``Document [index](Title: title) text``.

    ``index`` is 1-based, as in the prompt shown to the model.
    """
    return f"Document [{index}](Title: {title}) {text}"


# ---------------------------------------------------------------------------------------------
# Low-level file access


def _check_file(path: Path) -> None:
    """Raise DataError unless ``path`` is an existing regular file."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")


def _open_text(path: Path) -> IO[str]:
    """Open for reading as UTF-8 text, through gzip when the suffix is ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for non-blank lines; read errors become DataError."""
    _check_file(path)
    lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield lineno, line
    except _READ_ERRORS as e:
        raise DataError(f"{path}:{lineno + 1}: cannot read file ({e})") from e


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(location, object)`` for each JSON object line; location is ``"path:line"``."""
    first = True
    for lineno, line in _iter_lines(path):
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            hint = ("; the file is one JSON document spread over lines, but this format needs JSON Lines "
                    "(one object per line)") if first and _is_one_json_object(path) else ""
            raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno}){hint}") from e
        first = False
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        yield where, obj


def _is_one_json_object(path: Path) -> bool:
    """Whether the whole file parses as a single JSON object (a pretty-printed file, not JSON Lines)."""
    try:
        with _open_text(path) as f:
            return isinstance(json.load(f), dict)
    except (ValueError, *_READ_ERRORS):
        return False


def _first_char(path: Path) -> str:
    """The first non-whitespace character of the file ('' if there is none)."""
    try:
        with _open_text(path) as f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    return ""
                stripped = chunk.lstrip()
                if stripped:
                    return stripped[0]
    except _READ_ERRORS as e:
        raise DataError(f"{path}:1: cannot read file ({e})") from e


def _iter_json_list(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(location, object)`` for each element of a file holding one JSON list."""
    try:
        with _open_text(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
    except _READ_ERRORS as e:
        raise DataError(f"{path}:1: cannot read file ({e})") from e
    if not isinstance(data, list):
        raise DataError(f"{path}:1: expected a JSON list, got {_type_name(data)}")
    for i, obj in enumerate(data, start=1):
        where = f"{path}:record {i}"
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        yield where, obj


def _iter_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON list or JSONL, decided by the first non-blank character."""
    _check_file(path)
    if _first_char(path) == "[":
        return _iter_json_list(path)
    return _iter_jsonl(path)


# ---------------------------------------------------------------------------------------------
# Field access with file:line errors

_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def _type_name(x: Any) -> str:
    """JSON-ish name of a value's type, for error messages."""
    if x is None:
        return "null"
    return {str: "string", list: "list", dict: "object", bool: "boolean", int: "integer",
            float: "number"}.get(type(x), type(x).__name__)


def _field(rec: dict[str, Any], name: str, typ: type, where: str) -> Any:
    """``rec[name]``, checked to exist and to be of type ``typ``."""
    if name not in rec:
        raise DataError(f"{where}: missing field '{name}'")
    value = rec[name]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise DataError(
            f"{where}: field '{name}' must be {_TYPE_NAMES.get(typ, typ.__name__)}, "
            f"got {_type_name(value)}"
        )
    return value


def _nonempty_str(rec: dict[str, Any], name: str, where: str, what: str | None = None) -> str:
    """A string field that must contain non-whitespace text."""
    value = _field(rec, name, str, where)
    if not value.strip():
        raise DataError(f"{where}: empty {what or name} (field '{name}')")
    return value


def _str_list(rec: dict[str, Any], name: str, where: str) -> list[str]:
    """A field holding a list of strings."""
    value = _field(rec, name, list, where)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(f"{where}: field '{name}'[{i}] must be a string, got {_type_name(item)}")
    return value


def _record_id(rec: dict[str, Any], default: str) -> str:
    """The record's own ``id``/``_id`` if it has one, else ``default``."""
    for key in ("id", "_id"):
        if key in rec and isinstance(rec[key], (str, int)) and not isinstance(rec[key], bool):
            return str(rec[key])
    return default


def _line_of(where: str) -> str:
    """The line (or record) part of a ``path:line`` location, used for default ids."""
    return where.rsplit(":", 1)[1].replace("record ", "")


def _make(where: str, **kwargs: Any) -> Example:
    """Construct an Example, turning validation errors into DataError at ``where``."""
    try:
        return Example(**kwargs)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Format readers (generators; the public read_* functions return lists)


def _gen_examples(path: Path) -> Iterator[Example]:
    """Native JSONL: one ``Example.to_dict()`` per line."""
    for where, rec in _iter_jsonl(path):
        for name, typ in (("id", str), ("question", str), ("documents", list)):
            _field(rec, name, typ, where)
        try:
            yield Example.from_dict(rec)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from e


def _gen_ram(path: Path) -> Iterator[Example]:
    """Official RAM JSONL: ``{"prompt": question, "answer": str | [str], "input": context}``."""
    for where, rec in _iter_jsonl(path):
        question = _nonempty_str(rec, "prompt", where, "question")
        context = _nonempty_str(rec, "input", where, "context")
        if "answer" not in rec:
            raise DataError(f"{where}: missing field 'answer'")
        answers = [rec["answer"]] if isinstance(rec["answer"], str) else _str_list(rec, "answer", where)
        yield _make(where, id=_record_id(rec, _line_of(where)), question=question,
                    answers=answers, documents=[context], meta={"source": "ram"})


def _gen_dpr(path: Path) -> Iterator[Example]:
    """Lost-in-the-middle / DPR JSONL: ``question``, ``answers[]``, ``ctxs[{title, text, ...}]``."""
    for where, rec in _iter_jsonl(path):
        question = _nonempty_str(rec, "question", where)
        answers = _str_list(rec, "answers", where)
        ctxs = _field(rec, "ctxs", list, where)
        if not ctxs:
            raise DataError(f"{where}: empty context (field 'ctxs' has no passages)")
        documents: list[str] = []
        gold: int | None = None
        answer_doc: int | None = None
        for i, ctx in enumerate(ctxs):
            cwhere = f"{where}: ctxs[{i}]"
            if not isinstance(ctx, dict):
                raise DataError(f"{cwhere} must be an object, got {_type_name(ctx)}")
            text = _nonempty_str(ctx, "text", cwhere, "passage text")
            title = _field(ctx, "title", str, cwhere) if "title" in ctx else ""
            documents.append(format_document(i + 1, title, text))
            if gold is None and ctx.get("isgold") is True:
                gold = i
            if answer_doc is None and ctx.get("hasanswer") is True:
                answer_doc = i
        meta: dict[str, Any] = {"source": "dpr"}
        if gold is not None or answer_doc is not None:
            meta["gold_document"] = gold if gold is not None else answer_doc
        yield _make(where, id=_record_id(rec, _line_of(where)), question=question,
                    answers=answers, documents=documents, meta=meta)


def _hotpot_paragraphs(rec: dict[str, Any], where: str) -> list[tuple[str, list[str]]]:
    """``(title, sentences)`` pairs from either the HF dict layout or the original list layout."""
    context = rec.get("context")
    if context is None:
        raise DataError(f"{where}: missing field 'context'")
    if isinstance(context, dict):  # {"title": [...], "sentences": [[...], ...]}
        titles = _str_list(context, "title", f"{where}: context")
        sentences = _field(context, "sentences", list, f"{where}: context")
        if len(titles) != len(sentences):
            raise DataError(f"{where}: context has {len(titles)} titles but {len(sentences)} "
                            "sentence lists")
        pairs = list(zip(titles, sentences))
    elif isinstance(context, list):  # [[title, [sentences]], ...]
        pairs = []
        for i, item in enumerate(context):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise DataError(f"{where}: context[{i}] must be [title, [sentences]]")
            pairs.append((item[0], item[1]))
    else:
        raise DataError(f"{where}: field 'context' must be an object or a list, "
                        f"got {_type_name(context)}")
    if not pairs:
        raise DataError(f"{where}: empty context (no paragraphs)")
    for i, (_, sents) in enumerate(pairs):
        if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
            raise DataError(f"{where}: sentences of paragraph {i} must be a list of strings")
    return pairs


def _hotpot_facts(rec: dict[str, Any], where: str) -> list[tuple[str, int]]:
    """Supporting facts as ``(title, sentence id)`` from either layout."""
    facts = rec.get("supporting_facts")
    if facts is None:
        raise DataError(f"{where}: missing field 'supporting_facts'")
    if isinstance(facts, dict):
        titles = _str_list(facts, "title", f"{where}: supporting_facts")
        ids = _field(facts, "sent_id", list, f"{where}: supporting_facts")
        pairs = list(zip(titles, ids))
        if len(titles) != len(ids):
            raise DataError(f"{where}: supporting_facts has {len(titles)} titles but "
                            f"{len(ids)} sent_ids")
    elif isinstance(facts, list):
        pairs = []
        for fact in facts:
            if not (isinstance(fact, list) and len(fact) == 2):
                raise DataError(f"{where}: supporting fact {fact!r} must be [title, sentence id]")
            pairs.append((fact[0], fact[1]))
    else:
        raise DataError(f"{where}: field 'supporting_facts' must be an object or a list, "
                        f"got {_type_name(facts)}")
    out: list[tuple[str, int]] = []
    for title, sid in pairs:
        if not isinstance(title, str) or not isinstance(sid, int) or isinstance(sid, bool):
            raise DataError(f"{where}: supporting fact {[title, sid]!r} must be [title, sentence id]")
        out.append((title, sid))
    return out


def _gen_hotpot(path: Path) -> Iterator[Example]:
    """HotpotQA distractor setting: each paragraph one document ``"title: s1 s2 ..."``.

    Each sentence's character span inside its document is tracked so supporting facts become
    exact ``gold_spans``. Facts pointing at a missing title or sentence (a known HotpotQA
    quirk) are skipped with a warning.
    """
    for where, rec in _iter_records(path):
        question = _nonempty_str(rec, "question", where)
        answer = _field(rec, "answer", str, where)
        paragraphs = _hotpot_paragraphs(rec, where)
        documents: list[str] = []
        sentence_spans: list[list[tuple[int, int]]] = []
        for title, sentences in paragraphs:
            doc = f"{title}: "
            spans: list[tuple[int, int]] = []
            for j, sentence in enumerate(sentences):
                if j:
                    doc += " "
                text = sentence.strip()
                spans.append((len(doc), len(doc) + len(text)))
                doc += text
            documents.append(doc)
            sentence_spans.append(spans)
        first_doc = {}
        for d, (title, _) in enumerate(paragraphs):
            first_doc.setdefault(title, d)
        gold_spans: list[tuple[int, int, int]] = []
        for title, sid in _hotpot_facts(rec, where):
            d = first_doc.get(title)
            if d is None or not 0 <= sid < len(sentence_spans[d]):
                logger.warning("%s: supporting fact (%r, %d) not in context; skipped", where, title, sid)
                continue
            start, end = sentence_spans[d][sid]
            if start == end:
                logger.warning("%s: supporting fact (%r, %d) is an empty sentence; skipped",
                               where, title, sid)
                continue
            if (d, start, end) not in gold_spans:
                gold_spans.append((d, start, end))
        meta: dict[str, Any] = {"source": "hotpot",
                                "gold_documents": sorted({d for d, _, _ in gold_spans})}
        for key in ("type", "level"):
            if isinstance(rec.get(key), str):
                meta[key] = rec[key]
        yield _make(where, id=_record_id(rec, _line_of(where)), question=question,
                    answers=[answer], documents=documents, gold_spans=gold_spans, meta=meta)


def _gen_leval(path: Path) -> Iterator[Example]:
    """L-Eval JSONL: one document ``input``; one example per ``instructions[i]``/``outputs[i]``."""
    for where, rec in _iter_jsonl(path):
        document = _nonempty_str(rec, "input", where, "context").strip()
        instructions = _str_list(rec, "instructions", where)
        outputs = _str_list(rec, "outputs", where)
        if len(instructions) != len(outputs):
            raise DataError(f"{where}: {len(instructions)} instructions but {len(outputs)} outputs")
        meta: dict[str, Any] = {"source": "leval"}
        if isinstance(rec.get("source"), str):
            meta["subset"] = rec["source"]
        if isinstance(rec.get("evaluation"), str):
            meta["evaluation"] = rec["evaluation"]
        line = _line_of(where)
        for i, (question, output) in enumerate(zip(instructions, outputs)):
            if not question.strip():
                raise DataError(f"{where}: empty question (field 'instructions'[{i}])")
            yield _make(where, id=f"{line}-{i}", question=question, answers=[output],
                        documents=[document], meta=dict(meta))


def _gen_kv(path: Path) -> Iterator[Example]:
    """Key-value retrieval: the records as one "JSON data:" document, as in "Lost in the Middle".

    The gold span is the ``"key": "value"`` pair of the queried key.
    """
    for where, rec in _iter_jsonl(path):
        records = _field(rec, "ordered_kv_records", list, where)
        key = _nonempty_str(rec, "key", where)
        value = _field(rec, "value", str, where)
        if not records:
            raise DataError(f"{where}: empty context (field 'ordered_kv_records' is empty)")
        doc = "JSON data:\n"
        gold: tuple[int, int] | None = None
        position: int | None = None
        for i, pair in enumerate(records):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise DataError(f"{where}: ordered_kv_records[{i}] must be a [key, value] pair of strings")
            k, v = pair
            doc += "{" if i == 0 else " "
            start = len(doc)
            doc += f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
            if k == key and gold is None:
                if v != value:
                    raise DataError(f"{where}: record for key {key!r} has value {v!r}, "
                                    f"but field 'value' is {value!r}")
                gold, position = (start, len(doc)), i
            doc += ",\n" if i < len(records) - 1 else "}"
        if gold is None:
            raise DataError(f"{where}: key {key!r} not found in ordered_kv_records")
        yield _make(where, id=_record_id(rec, _line_of(where)),
                    question=f'What is the value associated with key "{key}"?',
                    answers=[value], documents=[doc], gold_spans=[(0, gold[0], gold[1])],
                    meta={"source": "kv", "gold_position": position, "num_records": len(records)})


_GENERATORS: dict[str, Callable[[Path], Iterator[Example]]] = {
    "examples": _gen_examples,
    "ram": _gen_ram,
    "dpr": _gen_dpr,
    "hotpot": _gen_hotpot,
    "leval": _gen_leval,
    "kv": _gen_kv,
}


def _read_all(fmt: str, path: PathLike) -> list[Example]:
    """All examples of ``path`` read as format ``fmt``."""
    return list(_GENERATORS[fmt](Path(path)))


def read_examples(path: PathLike) -> list[Example]:
    """Native JSONL (one ``Example.to_dict()`` per line)."""
    return _read_all("examples", path)


def read_ram(path: PathLike) -> list[Example]:
    """Official RAM JSONL ``{"prompt", "answer", "input"}``; the context is one document."""
    return _read_all("ram", path)


def read_dpr(path: PathLike) -> list[Example]:
    """DPR / "Lost in the Middle" JSONL; each ctx becomes ``Document [i](Title: t) text``."""
    return _read_all("dpr", path)


def read_hotpot(path: PathLike) -> list[Example]:
    """HotpotQA (JSON list or JSONL); supporting-fact sentences become ``gold_spans``."""
    return _read_all("hotpot", path)


def read_leval(path: PathLike) -> list[Example]:
    """L-Eval JSONL; one example per instruction, ids ``"{line}-{i}"``."""
    return _read_all("leval", path)


def read_kv(path: PathLike) -> list[Example]:
    """Key-value retrieval JSONL; gold span is the queried ``"key": "value"`` pair."""
    return _read_all("kv", path)


READERS: dict[str, Callable[[Path], list[Example]]] = {
    "examples": read_examples,
    "ram": read_ram,
    "dpr": read_dpr,
    "hotpot": read_hotpot,
    "leval": read_leval,
    "kv": read_kv,
}


def detect_format(path: PathLike) -> str:
    """Guess the reader name from the first record: a JSON list is HotpotQA, else by JSONL keys."""
    path = Path(path)
    _check_file(path)
    if _first_char(path) == "[":
        return "hotpot"
    for where, rec in _iter_jsonl(path):  # the first record decides
        keys = set(rec)
        if "ordered_kv_records" in keys:
            return "kv"
        if "ctxs" in keys:
            return "dpr"
        if {"instructions", "outputs"} <= keys:
            return "leval"
        if {"question", "documents"} <= keys:
            return "examples"
        if {"supporting_facts", "context"} <= keys:
            return "hotpot"
        if {"prompt", "input"} <= keys:
            return "ram"
        raise DataError(f"{where}: cannot detect the format from keys {sorted(keys)}")
    raise DataError(f"{path}: empty file, cannot detect the format")


def load_examples(path: PathLike, format: str = "auto", limit: int | None = None) -> list[Example]:
    """Read ``path`` with the named reader (``"auto"``: :func:`detect_format`), at most ``limit``."""
    path = Path(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in _GENERATORS:
        raise ValueError(f"unknown format {format!r}; choose from auto, {', '.join(READERS)}")
    with contextlib.closing(_GENERATORS[fmt](path)) as gen:
        examples = list(itertools.islice(gen, limit))
    logger.info("read %d examples from %s (format %s)", len(examples), path, fmt)
    return examples


def write_examples(examples: Iterable[Example], out_path: PathLike) -> int:
    """Write native JSONL (gzipped if the name ends in ``.gz``) atomically; return the count.

    The data go to a temporary file in the same directory that replaces ``out_path`` only
    once complete, so an interrupted run never leaves a truncated dataset behind.
    """
    out_path = Path(out_path)
    count = 0
    with atomic_file(out_path) as tmp, open(tmp, "wb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if out_path.suffix == ".gz" else raw
        try:
            for example in examples:
                stream.write((json.dumps(example.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
                count += 1
        finally:
            if stream is not raw:
                stream.close()
    logger.info("wrote %d examples to %s", count, out_path)
    return count
