"""Regenerate examples/demo.json from the shared NaturalQuestions-Open oracle file.

The demo context is 20 gold Wikipedia passages (one per question, in the fixed order
below) from the "Lost in the Middle" NQ-Open release; five of them carry demo questions
whose gold passages sit at the beginning, middle and end of the context. The choice
is a fixed list of question strings, so the output is reproducible byte for byte.

Usage: python examples/make_demo.py [--data PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import string
from pathlib import Path
from typing import Any

logger = logging.getLogger("make_demo")

DEFAULT_DATA = Path("/work/shared/data/nq-open/nq-open-oracle.dev.jsonl.gz")
DEFAULT_OUT = Path(__file__).resolve().parent / "demo.json"

# Source questions, in document order (document index = list index).
SOURCE_QUESTIONS: list[str] = [
    "who came up with the first working periodic table",
    "who got the first nobel prize in physics",
    "when did united states enter world war i",
    "who sings the song you'll never find another love like mine",
    "who wrote the book the origin of species",
    "where does the eurostar train arrives in london",
    "when did britain set up east indian trading company",
    "where do the phaeacians live in the odyssey",
    "who sings the original windmills of your mind",
    "where is the capital city of alabama located",
    "who is often associated with printing the first book using moveable type in germany",
    "who plays the beast on the new beauty and the beast",
    "where did the rulers of the qing dynasty originate",
    "who scored the most points in a single game in the nba",
    "who is the director of nightmare before christmas",
    "when was rosencrantz and guildenstern are dead written",
    "who created the pieta and also painted the ceiling of the sistine chapel",
    "where did the beer hall putsch take place",
    "who invented the cornell method of note taking",
    "who performed the halftime show at super bowl 51",
]

# Demo questions: gold documents at positions 1, 5, 10, 15 and 20 of 20.
DEMO_QUESTIONS: list[str] = [
    "who came up with the first working periodic table",
    "who wrote the book the origin of species",
    "where is the capital city of alabama located",
    "who is the director of nightmare before christmas",
    "who performed the halftime show at super bowl 51",
]


def _norm(s: str) -> str:
    """Lowercase, drop ASCII punctuation and collapse whitespace (answer-in-passage check)."""
    s = "".join(ch for ch in s.lower() if ch not in string.punctuation)
    return " ".join(s.split())


def load_records(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Read the wanted questions from the gzipped JSONL file; each must occur exactly once."""
    found: dict[str, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            q = rec["question"]
            if q in wanted:
                if q in found:
                    raise ValueError(f"question occurs more than once in {path}: {q!r}")
                found[q] = rec
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"questions not found in {path}: {sorted(missing)}")
    return found


def build_demo(data: Path) -> dict[str, Any]:
    """Assemble the demo dict: documents, demo questions, and every document's source question."""
    if len(set(SOURCE_QUESTIONS)) != len(SOURCE_QUESTIONS):
        raise ValueError("SOURCE_QUESTIONS has duplicates")
    records = load_records(data, set(SOURCE_QUESTIONS))
    documents: list[str] = []
    sources: list[dict[str, Any]] = []
    for idx, q in enumerate(SOURCE_QUESTIONS):
        rec = records[q]
        gold = rec["ctxs"][0]
        title = gold["title"].strip()
        text = re.sub(r"\s+", " ", gold["text"]).strip()
        answers = list(rec["answers"])
        if not any(_norm(a) in _norm(text) for a in answers):
            raise ValueError(f"no gold answer of {q!r} appears in its passage {title!r}")
        documents.append(f"Document [{idx + 1}](Title: {title}) {text}")
        sources.append({"document": idx, "title": title, "question": q, "answers": answers})
    questions = [
        {"question": q, "answers": sources[SOURCE_QUESTIONS.index(q)]["answers"], "document": SOURCE_QUESTIONS.index(q)}
        for q in DEMO_QUESTIONS
    ]
    return {
        "description": (
            "Demo for `ram demo`: 20 Wikipedia passages (NaturalQuestions-Open gold passages from the "
            "'Lost in the Middle' release) and 5 questions whose gold documents sit at different positions. "
            "'document' is a 0-based index into 'documents'. Regenerate with examples/make_demo.py; "
            "see examples/ATTRIBUTION.md (CC BY-SA 3.0)."
        ),
        "documents": documents,
        "questions": questions,
        "sources": sources,
    }


def main() -> None:
    """Write demo.json and log its size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="nq-open-oracle.dev.jsonl.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    demo = build_demo(args.data)
    args.out.write_text(json.dumps(demo, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    words = sum(len(d.split()) for d in demo["documents"])
    logger.info("wrote %s: %d documents, %d words, %d demo questions", args.out, len(demo["documents"]), words, len(demo["questions"]))
    for src in demo["sources"]:
        logger.info("  [%d] %s", src["document"] + 1, src["title"])


if __name__ == "__main__":
    main()
