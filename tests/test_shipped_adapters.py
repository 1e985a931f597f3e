"""The adapters shipped in the package are well-formed and match their names (no backbone needed)."""

from __future__ import annotations

import json
import re

import pytest
from safetensors import safe_open

from ram.model import ADAPTER_NAME, CONFIG_NAME, SHIPPED_ADAPTERS

EXPECTED_ENCODER_LAYERS = {"default": 8, "default-fast": 4}


@pytest.mark.parametrize("name", sorted(SHIPPED_ADAPTERS))
def test_shipped_adapter_is_complete_and_consistent(name: str) -> None:
    folder = SHIPPED_ADAPTERS[name]
    meta = json.loads((folder / CONFIG_NAME).read_text())
    layers = meta["config"]["encoder_layers"]
    assert meta["config"]["backbone"] == "smollm2-135m" and meta["trained"] is True
    assert layers == EXPECTED_ENCODER_LAYERS[name]
    with safe_open(str(folder / ADAPTER_NAME), "pt") as tensors:
        keys = list(tensors.keys())
    trained_layers = {int(m.group(1)) for k in keys if k.startswith("encoder.") for m in [re.search(r"layers\.(\d+)\.", k)] if m}
    assert trained_layers and max(trained_layers) == layers - 1  # the top encoder layers were trained
    assert {"skim.projector.weight", "skim.projector.bias"} <= set(keys)
    assert meta["decoder_trained"] and {f"decoder.{k}" for k in meta["decoder_trained"]} <= set(keys)  # all stored
    card = (folder / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# RAM adapter for SmolLM2-135M-Instruct (`{name}`")
    assert (folder / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_shipped_adapters_share_one_backbone() -> None:
    prints = {json.loads((f / CONFIG_NAME).read_text())["backbone_fingerprint"] for f in SHIPPED_ADAPTERS.values()}
    assert len(prints) == 1
