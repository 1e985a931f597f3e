"""compile_encoder: inference goes through the compiled encoder, with the same results; training,
state_dict and a replaced encoder keep using the plain module."""

from __future__ import annotations

from pathlib import Path

import torch

from ram import RAMModel

SMALL = dict(encoder_layers=2, segment_tokens=8, word_snap_window=2)
DOCS = ["Charles Darwin wrote the origin of species in 1859.", "Paris is the capital of France, on the Seine."]
QUESTION = "Who wrote the origin of species?"


class _Counting(torch.nn.Module):
    """Stands in for a compiled module: calls the encoder and counts the calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_inference_uses_the_compiled_encoder(tiny_qwen3_dir: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    model = RAMModel.from_backbone(tiny_qwen3_dir, **SMALL).eval()
    eager = model.compress(DOCS, QUESTION, ratio=2.0)
    keys = set(model.state_dict())
    wrappers: list[_Counting] = []

    def fake_compile(module, **kwargs):
        assert kwargs["dynamic"] is True and kwargs["backend"] == "eager"
        wrappers.append(_Counting(module))
        return wrappers[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    model.compile_encoder(backend="eager")
    compiled = model.compress(DOCS, QUESTION, ratio=2.0)
    assert wrappers[0].calls >= 1
    torch.testing.assert_close(compiled.inputs_embeds, eager.inputs_embeds)
    assert set(model.state_dict()) == keys  # the compiled module is not a submodule

    calls = wrappers[0].calls
    with torch.enable_grad():  # training path: eager encoder
        model.hybrid([DOCS], [QUESTION], ratio=2.0)
    assert wrappers[0].calls == calls

    model.encoder = model.encoder  # noqa: PLW0127 - same object: still compiled
    model.compress(DOCS, QUESTION, ratio=2.0)
    assert wrappers[0].calls == calls + 1
    model.uncompile_encoder()
    assert "_compiled_encoder" not in model.__dict__


def test_real_compile_matches_eager(tiny_qwen3_dir: Path) -> None:
    """torch.compile with the eager backend (no inductor codegen: seconds, not a minute)."""
    torch.manual_seed(0)
    model = RAMModel.from_backbone(tiny_qwen3_dir, **SMALL).eval()
    eager = model.compress(DOCS, QUESTION, ratio=2.0)
    model.compile_encoder(backend="eager")
    torch.testing.assert_close(model.compress(DOCS, QUESTION, ratio=2.0).inputs_embeds, eager.inputs_embeds)
    # LoRA added after compiling changes the encoder in place: the compiled path must follow
    model.add_lora("encoder", rank=2, alpha=4.0)
    with torch.no_grad():
        for name, param in model.encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.eval()
    with_lora = model.compress(DOCS, QUESTION, ratio=2.0).inputs_embeds
    model.uncompile_encoder()
    plain = model.compress(DOCS, QUESTION, ratio=2.0).inputs_embeds
    torch.testing.assert_close(with_lora, plain)
    assert plain.shape != eager.inputs_embeds.shape or not torch.allclose(plain, eager.inputs_embeds)
