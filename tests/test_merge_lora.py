"""merge_lora: same outputs as the unmerged LoRA model, plain layers afterwards, saves correctly."""

from __future__ import annotations

from pathlib import Path

import torch

from ram import RAMModel

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = ["Charles Darwin wrote the origin of species in 1859.", "Paris is the capital of France, on the Seine."]
QUESTION = "Who wrote the origin of species?"


def _lora_model(path: Path) -> RAMModel:
    torch.manual_seed(0)
    model = RAMModel.from_backbone(path, **SMALL)
    model.add_lora("decoder", rank=2, alpha=4.0)
    model.add_lora("encoder", rank=2, alpha=4.0)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters actually change something
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.decoder_trained = {n for n, _ in model.decoder.named_parameters() if "lora_" in n}
    return model.eval()


def _logits(model: RAMModel) -> torch.Tensor:
    cc = model.compress(DOCS, QUESTION, ratio=2.0)
    with torch.inference_mode():
        return model.decoder(inputs_embeds=cc.inputs_embeds).logits


def test_merged_model_matches_and_has_no_lora_layers(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from peft.tuners.lora import LoraLayer

    model = _lora_model(tiny_llama_dir)
    before = _logits(model)
    plain = RAMModel.from_backbone(tiny_llama_dir, **SMALL).eval()
    assert not torch.allclose(before, _logits(plain), atol=1e-3)  # the adapters matter
    model.merge_lora()
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert model.lora == {} and model.decoder_trained and all("lora_" not in n for n in model.decoder_trained)
    torch.testing.assert_close(_logits(model), before, atol=1e-4, rtol=1e-4)
    loaded = RAMModel.from_pretrained(model.save_pretrained(tmp_path / "merged"))
    torch.testing.assert_close(_logits(loaded), before, atol=1e-4, rtol=1e-4)


def test_merge_without_lora_is_a_no_op(tiny_llama_dir: Path) -> None:
    torch.manual_seed(0)
    model = RAMModel.from_backbone(tiny_llama_dir, **SMALL).eval()
    before = _logits(model)
    model.merge_lora()
    torch.testing.assert_close(_logits(model), before)
