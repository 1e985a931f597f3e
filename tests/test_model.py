"""RAMModel end to end on tiny random Llama / Qwen3 backbones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ram import Answer, CompressedContext, RAMModel
from ram.assemble import left_pad
from ram.backbone import BackboneError, fingerprint
from ram.model import ADAPTER_NAME, CONFIG_NAME, ModelError
from ram.prompt import prompt_ids
from ram.segment import DOCUMENT_SEPARATOR, InputError
from ram.select import BudgetError

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)

CTX_LONG = (
    "Paris is the capital and most populous city of France, on the river Seine. "
    "Photosynthesis converts light energy into chemical energy stored in glucose. "
    "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen of Germany."
)
CTX_DOCS = [
    "Charles Darwin wrote the origin of species in 1859.",
    "Documents about history, science, sport, music and geography.",
    "Paris is on the river Seine.",
]
CTX_SHORT = "Photosynthesis converts light energy into chemical energy."
QUESTION = "Who wrote the origin of species?"


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def ram(request: pytest.FixtureRequest) -> RAMModel:
    path = request.getfixturevalue(f"tiny_{request.param}_dir")
    torch.manual_seed(0)
    return RAMModel.from_backbone(path, **SMALL)


@pytest.fixture(scope="module")
def ram_llama(tiny_llama_dir: Path) -> RAMModel:
    return RAMModel.from_backbone(tiny_llama_dir, **SMALL)


def _ids(model: RAMModel, text: str) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _context_ids(model: RAMModel, docs: list[str]) -> list[int]:
    sep = _ids(model, DOCUMENT_SEPARATOR)
    out: list[int] = []
    for i, doc in enumerate(docs):
        out += _ids(model, doc) + (sep if i < len(docs) - 1 else [])
    return out


def _embed(model: RAMModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.decoder.get_input_embeddings()(torch.tensor(ids))


# ----------------------------------------------------------------------------- encoder
def test_encoder_is_truncated_copy_without_lm_head(ram: RAMModel) -> None:
    enc = ram.encoder
    assert len(enc.layers) == 2 and enc.config.num_hidden_layers == 2
    assert not hasattr(enc, "lm_head")
    assert not any("lm_head" in k for k in enc.state_dict())
    base = ram.decoder.model.state_dict()
    wanted = {k for k in base if not (k.startswith("layers.") and int(k.split(".")[1]) >= 2)}
    assert set(enc.state_dict()) == wanted
    for key, value in enc.state_dict().items():
        assert torch.equal(value, base[key]), key
    # a copy, not a view: training the encoder cannot touch the frozen decoder
    enc_ptrs = {p.data_ptr() for p in enc.parameters()}
    assert not enc_ptrs & {p.data_ptr() for p in ram.decoder.parameters()}
    assert not any(p.requires_grad for p in ram.decoder.parameters())
    # functionally: the encoder's output is the decoder's state after 2 layers, normed
    ids = torch.tensor([_ids(ram, CTX_SHORT)])
    with torch.no_grad():
        enc_out = enc(input_ids=ids).last_hidden_state
        dec_hidden = ram.decoder(input_ids=ids, output_hidden_states=True).hidden_states[2]
        assert torch.allclose(enc_out, ram.decoder.model.norm(dec_hidden), atol=1e-5)


def test_encoder_layers_above_backbone_depth_rejected(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="encoder_layers"):
        RAMModel.from_backbone(tiny_llama_dir, encoder_layers=5, segment_tokens=8, word_snap_window=2)


# ----------------------------------------------------------------------------- compress
def test_compress_stats_and_budget(ram: RAMModel) -> None:
    ratio = 3.0
    cc = ram.compress(CTX_LONG, QUESTION, ratio=ratio)
    assert isinstance(cc, CompressedContext)
    length = len(_ids(ram, CTX_LONG))
    assert cc.stats["original_tokens"] == length
    assert sum(s.tokens for s in cc.segments) == length
    assert cc.compressed_length <= math.ceil(length / ratio)
    assert cc.stats["compressed_length"] == cc.compressed_length
    assert cc.stats["achieved_ratio"] == pytest.approx(length / cc.compressed_length)
    kept = [s for s in cc.segments if s.kept]
    skimmed = [s for s in cc.segments if not s.kept]
    assert kept and skimmed, "this context at 3x should both close-read and skim"
    assert cc.compressed_length == sum(s.tokens for s in kept) + len(skimmed)
    pre, post = prompt_ids(ram.tokenizer, QUESTION, ram.config.prompt_format, ram.config.instruction)
    assert cc.context_span == (len(pre), len(pre) + cc.compressed_length)
    assert cc.inputs_embeds.shape == (1, len(pre) + cc.compressed_length + len(post), ram.decoder.config.hidden_size)
    assert cc.attention_mask.shape == cc.inputs_embeds.shape[:2] and bool(cc.attention_mask.all())
    assert [s.index for s in cc.segments] == list(range(len(cc.segments)))
    assert all(-1.0 - 1e-5 <= s.score <= 1.0 + 1e-5 for s in cc.segments)
    assert cc.segment_map() == "".join("#" if s.kept else "." for s in cc.segments)
    # the kept tokens sit verbatim in inputs_embeds, skims elsewhere
    ids = _ids(ram, CTX_LONG)
    pos, offset = cc.context_span[0], 0
    for s in cc.segments:
        if s.kept:
            assert torch.equal(cc.inputs_embeds[0, pos : pos + s.tokens], _embed(ram, ids[offset : offset + s.tokens]))
            pos += s.tokens
        else:
            pos += 1
        offset += s.tokens
    assert pos == cc.context_span[1]


def test_to_text_and_to_json(ram_llama: RAMModel) -> None:
    cc = ram_llama.compress(CTX_DOCS, QUESTION, ratio=2.5)
    text = cc.to_text()
    assert any(not s.kept for s in cc.segments) and any(s.kept for s in cc.segments)
    for s in cc.segments:
        if s.kept:
            assert cc.documents[s.document][s.start : s.end].strip() in text
    assert ram_llama.config.skim_marker.strip() in text
    assert len(text) < len("\n\n".join(CTX_DOCS))
    assert "|" in cc.segment_map() and cc.segment_map().count("|") == 2
    data = cc.to_json()
    assert set(data) >= {
        "original_tokens", "compressed_length", "target_ratio", "achieved_ratio", "segments", "text", "timings",
    }
    assert data["target_ratio"] == 2.5 and data["text"] == text
    assert data["num_segments"] == len(cc.segments) and data["kept_segments"] == sum(s.kept for s in cc.segments)
    assert set(data["segments"][0]) == {"index", "document", "start", "end", "tokens", "score", "kept", "dropped"}
    assert data["dropped_segments"] == 0
    assert {s["document"] for s in data["segments"]} == {0, 1, 2}
    assert set(data["timings"]) >= {"segment", "encode", "select", "skim", "assemble"}
    json.dumps(data)  # serialisable


def test_full_mode_is_plain_prompt(ram: RAMModel) -> None:
    cc = ram.compress_batch([CTX_DOCS], [QUESTION], mode="full")[0]
    pre, post = prompt_ids(ram.tokenizer, QUESTION, ram.config.prompt_format, ram.config.instruction)
    expected = _embed(ram, pre + _context_ids(ram, CTX_DOCS) + post)
    assert torch.equal(cc.inputs_embeds[0], expected)
    assert all(s.kept for s in cc.segments)
    assert cc.stats["achieved_ratio"] == pytest.approx(1.0)


def test_ratio_one_equals_full(ram: RAMModel) -> None:
    full = ram.compress_batch([CTX_LONG], [QUESTION], mode="full")[0]
    same = ram.compress(CTX_LONG, QUESTION, ratio=1.0)
    assert all(s.kept for s in same.segments)
    assert torch.equal(same.inputs_embeds, full.inputs_embeds)


def test_all_skim_and_close_only(ram: RAMModel) -> None:
    all_skim = ram.compress_batch([CTX_LONG], [QUESTION], mode="all-skim")[0]
    n = len(all_skim.segments)
    assert not any(s.kept for s in all_skim.segments)
    assert all_skim.compressed_length == n
    assert all_skim.stats["achieved_ratio"] == pytest.approx(len(_ids(ram, CTX_LONG)) / n)
    ram_cc = ram.compress(CTX_LONG, QUESTION, ratio=3.0)
    close = ram.compress_batch([CTX_LONG], [QUESTION], ratio=3.0, mode="close-only")[0]
    assert [s.kept for s in close.segments] == [s.kept for s in ram_cc.segments]
    kept_ids: list[int] = []
    ids, offset = _ids(ram, CTX_LONG), 0
    for s in close.segments:
        if s.kept:
            kept_ids += ids[offset : offset + s.tokens]
        offset += s.tokens
    assert close.compressed_length == len(kept_ids)
    a, b = close.context_span
    assert torch.equal(close.inputs_embeds[0, a:b], _embed(ram, kept_ids))


def test_skim_cap_drops_least_relevant_and_reaches_any_ratio(ram: RAMModel) -> None:
    length = len(_ids(ram, CTX_LONG))
    paper = ram.compress(CTX_LONG, QUESTION, ratio=3.0)
    n = len(paper.segments)
    hb = ram.hybrid([CTX_LONG], [QUESTION], ratio=3.0, max_skim_share=1.0)
    assert torch.equal(hb.keep.cpu(), torch.tensor([s.kept for s in paper.segments]))
    with pytest.raises(BudgetError, match="max_skim_share"):  # the paper's rule stops at the all-skim ratio
        ram.compress(CTX_LONG, QUESTION, ratio=2.0 * length / n)
    ratio = 2.0 * length / n  # budget: half the segment count
    budget = math.ceil(length / ratio)
    ram.config.max_skim_share = 0.5
    try:
        cc = ram.compress(CTX_LONG, QUESTION, ratio=ratio)
    finally:
        ram.config.max_skim_share = 1.0
    dropped = [s for s in cc.segments if s.dropped]
    skimmed = [s for s in cc.segments if not s.kept and not s.dropped]
    kept = [s for s in cc.segments if s.kept]
    assert dropped and len(skimmed) <= budget // 2
    assert cc.compressed_length == sum(s.tokens for s in kept) + len(skimmed) <= budget
    assert max(s.score for s in dropped) <= min(s.score for s in skimmed + kept) + 1e-6
    assert "_" in cc.segment_map() and cc.to_json()["dropped_segments"] == len(dropped)
    # kept tokens verbatim, skims one position each, dropped segments nowhere
    ids, pos, offset = _ids(ram, CTX_LONG), cc.context_span[0], 0
    for s in cc.segments:
        if s.kept:
            assert torch.equal(cc.inputs_embeds[0, pos : pos + s.tokens], _embed(ram, ids[offset : offset + s.tokens]))
            pos += s.tokens
        elif not s.dropped:
            pos += 1
        offset += s.tokens
    assert pos == cc.context_span[1]


def test_keep_ratio_mode(ram_llama: RAMModel) -> None:
    cc = ram_llama.compress(CTX_LONG, QUESTION, ratio=None, keep_ratio=0.5)
    n = len(cc.segments)
    kept = [s for s in cc.segments if s.kept]
    assert len(kept) == n // 2
    assert min(s.score for s in kept) >= max(s.score for s in cc.segments if not s.kept)
    assert cc.stats["keep_ratio"] == 0.5 and cc.stats["target_ratio"] is None


def test_compress_input_errors(ram_llama: RAMModel) -> None:
    with pytest.raises(InputError, match="question"):
        ram_llama.compress(CTX_SHORT, "   ")
    with pytest.raises(InputError):
        ram_llama.compress("", QUESTION)
    with pytest.raises(InputError):
        ram_llama.compress(["ok", ""], QUESTION)
    with pytest.raises(InputError):
        ram_llama.compress_batch([CTX_SHORT, CTX_SHORT], [QUESTION])
    with pytest.raises(InputError, match="mode"):
        ram_llama.compress_batch([CTX_SHORT], [QUESTION], mode="half")


# ----------------------------------------------------------------------------- batch == single
def test_batch_equals_single(ram: RAMModel) -> None:
    contexts = [CTX_LONG, CTX_DOCS, CTX_SHORT]
    questions = [QUESTION, "What is the capital of France?", "What does photosynthesis store?"]
    batch = ram.compress_batch(contexts, questions, ratio=2.0)
    singles = [ram.compress(c, q, ratio=2.0) for c, q in zip(contexts, questions)]
    assert len({cc.inputs_embeds.shape[1] for cc in batch}) == 3, "the three prompts should differ in length"
    for b, s in zip(batch, singles):
        assert [(x.document, x.start, x.end, x.tokens, x.kept) for x in b.segments] == [
            (x.document, x.start, x.end, x.tokens, x.kept) for x in s.segments
        ]
        assert [x.score for x in b.segments] == pytest.approx([x.score for x in s.segments], abs=1e-5)
        assert b.inputs_embeds.shape == s.inputs_embeds.shape
        assert torch.allclose(b.inputs_embeds, s.inputs_embeds, atol=1e-5)
        assert b.stats["original_tokens"] == s.stats["original_tokens"]
    # the decoder sees the same thing in a left-padded batch as alone
    embeds, attn, positions = left_pad([cc.inputs_embeds[0] for cc in singles])
    with torch.no_grad():
        logits = ram.decoder(inputs_embeds=embeds, attention_mask=attn.long(), position_ids=positions).logits[:, -1]
        for i, cc in enumerate(singles):
            alone = ram.decoder(inputs_embeds=cc.inputs_embeds).logits[0, -1]
            assert torch.allclose(logits[i], alone, atol=1e-4)
    prompts = [cc.inputs_embeds[0] for cc in batch]
    batch_ids = ram.generate_ids(prompts, max_new_tokens=4, stop_at_eos=False)
    single_ids = [ram.generate_ids([p], max_new_tokens=4, stop_at_eos=False)[0] for p in prompts]
    assert batch_ids == single_ids
    assert all(len(row) == 4 for row in batch_ids)


def test_answer(ram_llama: RAMModel) -> None:
    ans = ram_llama.answer(CTX_DOCS, QUESTION, ratio=2.0, max_new_tokens=3)
    assert isinstance(ans, Answer) and isinstance(ans.text, str)
    assert ans.compressed is not None and ans.compressed.stats["target_ratio"] == 2.0
    assert set(ans.timings) >= {"compress", "generate", "total"}
    data = ans.to_json()
    assert data["answer"] == ans.text and "segments" in data
    ids = ram_llama.generate_ids([ans.compressed.inputs_embeds[0]], max_new_tokens=3)[0]
    assert ans.text == ram_llama.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_answer_beyond_window_fails_before_encoding(ram_llama: RAMModel, monkeypatch: pytest.MonkeyPatch) -> None:
    window = ram_llama.decoder.config.max_position_embeddings
    long_context = " ".join(f"word{i % 50}" for i in range(window))  # a few windows of tokens
    calls: list[int] = []
    monkeypatch.setattr(ram_llama, "_encode", lambda *a, **k: calls.append(1) or pytest.fail("encoder ran"))
    with pytest.raises(BudgetError, match="window leaves") as info:
        ram_llama.answer(long_context, QUESTION, ratio=1.5, max_new_tokens=8)
    assert not calls
    hint = float(str(info.value).split("a ratio of ")[1].split(" ")[0])
    monkeypatch.undo()  # the hinted ratio answers
    ans = ram_llama.answer(long_context, QUESTION, ratio=hint, max_new_tokens=2)
    assert ans.compressed.inputs_embeds.shape[1] + 2 <= window


def test_generate_rejects_prompt_beyond_window(ram_llama: RAMModel) -> None:
    window = ram_llama.decoder.config.max_position_embeddings
    hidden = ram_llama.decoder.config.hidden_size
    with pytest.raises(InputError, match="window"):
        ram_llama.generate_ids([torch.zeros(window - 2, hidden)], max_new_tokens=4)
    with pytest.raises(InputError):
        ram_llama.generate_ids([torch.zeros(3, hidden)], max_new_tokens=0)


# ----------------------------------------------------------------------------- save / load
def _adapter_keys(directory: Path) -> set[str]:
    return set(load_file(str(directory / ADAPTER_NAME)))


def test_save_load_round_trip(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model = RAMModel.from_backbone(tiny_llama_dir, **SMALL)
    parent = tmp_path / "models"
    first = model.save_pretrained(parent / "untrained")
    assert (first / CONFIG_NAME).is_file() and (first / ADAPTER_NAME).is_file()
    assert _adapter_keys(first) and all(k.startswith("skim.") for k in _adapter_keys(first))
    meta = json.loads((first / CONFIG_NAME).read_text())
    assert meta["backbone_fingerprint"] == model.backbone_fingerprint
    assert meta["config"]["segment_tokens"] == 8

    reloaded = RAMModel.from_pretrained(first)
    assert reloaded.config == model.config
    a = model.compress(CTX_LONG, QUESTION, ratio=3.0)
    b = reloaded.compress(CTX_LONG, QUESTION, ratio=3.0)
    assert torch.equal(a.inputs_embeds, b.inputs_embeds)
    assert [s.score for s in a.segments] == [s.score for s in b.segments]

    # change the encoder and the temperature: only the changed encoder tensor joins the adapter
    with torch.no_grad():
        model.encoder.layers[1].mlp.down_proj.weight.add_(0.05)
        model.skim.log_tau.fill_(math.log(0.3))
    second = model.save_pretrained(parent / "tuned")
    keys = _adapter_keys(second)
    assert {k for k in keys if k.startswith("encoder.")} == {"encoder.layers.1.mlp.down_proj.weight"}
    assert all(k.startswith(("encoder.", "skim.")) for k in keys)
    tuned = RAMModel.from_pretrained(second)
    assert torch.equal(tuned.encoder.layers[1].mlp.down_proj.weight, model.encoder.layers[1].mlp.down_proj.weight)
    assert tuned.skim.temperature == pytest.approx(0.3)
    c = model.compress(CTX_LONG, QUESTION, ratio=3.0)
    d = tuned.compress(CTX_LONG, QUESTION, ratio=3.0)
    assert torch.equal(c.inputs_embeds, d.inputs_embeds)
    assert [s.score for s in c.segments] == [s.score for s in d.segments]
    assert [s.score for s in c.segments] != [s.score for s in a.segments]
    # the decoder was never touched
    assert torch.equal(tuned.decoder.model.layers[1].mlp.down_proj.weight, reloaded.decoder.model.layers[1].mlp.down_proj.weight)

    # overwrite in place, atomically: no temp or old directories are left behind
    model.save_pretrained(parent / "untrained")
    assert sorted(p.name for p in parent.iterdir()) == ["tuned", "untrained"]
    assert {k for k in _adapter_keys(parent / "untrained") if k.startswith("encoder.")} == {
        "encoder.layers.1.mlp.down_proj.weight"
    }


def test_adapter_for_another_backbone_is_rejected(ram_llama: RAMModel, tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    saved = ram_llama.save_pretrained(tmp_path / "llama-ram")
    qwen_fp = fingerprint(RAMModel.from_backbone(tiny_qwen3_dir, **SMALL).decoder)
    assert qwen_fp != ram_llama.backbone_fingerprint
    with pytest.raises(ModelError) as info:
        RAMModel.from_pretrained(saved, backbone=str(tiny_qwen3_dir))
    assert ram_llama.backbone_fingerprint in str(info.value)
    assert qwen_fp in str(info.value)


def test_from_pretrained_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=CONFIG_NAME):
        RAMModel.from_pretrained(empty)
    with pytest.raises(ModelError):
        RAMModel.from_pretrained(tmp_path / "does-not-exist")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelError, match="malformed"):
        RAMModel.from_pretrained(broken)


def test_a_damaged_adapter_is_a_model_error(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    saved = RAMModel.from_backbone(tiny_llama_dir, **SMALL).save_pretrained(tmp_path / "m")
    adapter = saved / ADAPTER_NAME
    whole = adapter.read_bytes()
    adapter.write_bytes(whole[: len(whole) // 2])  # an interrupted copy
    with pytest.raises(ModelError, match="cannot be read .*truncated"):
        RAMModel.from_pretrained(saved)
    adapter.write_bytes(whole)
    tensors = load_file(str(adapter))
    key = next(k for k in tensors if k.startswith("skim.") and tensors[k].dim() == 2)
    tensors[key] = torch.zeros(*[n + 1 for n in tensors[key].shape])  # another model's shape
    save_file(tensors, str(adapter))
    with pytest.raises(ModelError, match="do not fit the skim"):
        RAMModel.from_pretrained(saved)


def test_missing_backbone_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="never downloads"):
        RAMModel.from_backbone(tmp_path / "no-such-model", **SMALL)
    with pytest.raises(BackboneError, match="never downloads"):
        RAMModel.from_backbone("some-org/some-hub-model", **SMALL)
    with pytest.raises(BackboneError, match="config.json"):
        RAMModel.from_backbone(tmp_path, **SMALL)


def test_wrong_or_broken_backbones_are_clear_errors(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from transformers import BertConfig, T5Config

    t5 = tmp_path / "t5"
    T5Config(num_layers=1, d_model=16, num_heads=2, d_ff=16, d_kv=8).save_pretrained(t5)
    with pytest.raises(BackboneError, match="holds a 't5' model, not a causal LM"):
        RAMModel.from_backbone(t5, **SMALL)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackboneError, match="config.json cannot be read"):
        RAMModel.from_backbone(broken, **SMALL)
    no_weights = tmp_path / "no-weights"  # a Llama config and tokenizer, but the weights were never copied
    no_weights.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_llama_dir / name).is_file():
            (no_weights / name).write_bytes((tiny_llama_dir / name).read_bytes())
    with pytest.raises(BackboneError, match="no-weights"):
        RAMModel.from_backbone(no_weights, **SMALL)
    bert = tmp_path / "bert"  # a causal LM head exists for BERT, but not RAM's layout
    BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=16,
               is_decoder=True).save_pretrained(bert)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tiny_llama_dir / name).is_file():
            (bert / name).write_bytes((tiny_llama_dir / name).read_bytes())
    from transformers import BertLMHeadModel

    BertLMHeadModel(BertConfig.from_pretrained(bert)).save_pretrained(bert)
    with pytest.raises(BackboneError, match="BertLMHeadModel is not supported: RAM needs a decoder-only"):
        RAMModel.from_backbone(bert, **SMALL)
