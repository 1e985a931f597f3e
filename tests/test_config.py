"""RAMConfig: validation, JSON round trip, unknown fields."""

from __future__ import annotations

import json

import pytest

from ram.config import RAMConfig


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"encoder_layers": 0}, "encoder_layers"),
        ({"encoder_layers": -3}, "encoder_layers"),
        ({"segment_tokens": 1}, "segment_tokens"),
        ({"prompt_format": "markdown"}, "prompt_format"),
        ({"segment_tokens": 8, "word_snap_window": 4}, "word_snap_window"),
        ({"segment_tokens": 8, "word_snap_window": 9}, "word_snap_window"),
        ({"word_snap_window": -1}, "word_snap_window"),
        ({"segment_tokens": 64, "max_batch_tokens": 63}, "max_batch_tokens"),
        ({"skim_temperature": 0.0}, "skim_temperature"),
        ({"backbone": ""}, "backbone"),
    ],
)
def test_invalid_values_raise(changes: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        RAMConfig(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"encoder_layers": 1},
        {"segment_tokens": 2, "word_snap_window": 0},
        {"segment_tokens": 8, "word_snap_window": 3},  # largest window < 8 // 2
        {"segment_tokens": 64, "max_batch_tokens": 64},
        {"prompt_format": "plain"},
    ],
)
def test_boundary_values_accepted(changes: dict) -> None:
    cfg = RAMConfig(**changes)
    for key, value in changes.items():
        assert getattr(cfg, key) == value


def test_replace_validates() -> None:
    cfg = RAMConfig(segment_tokens=8, word_snap_window=2)
    with pytest.raises(ValueError, match="word_snap_window"):
        cfg.replace(word_snap_window=5)


def test_json_round_trip(tmp_path) -> None:
    cfg = RAMConfig(
        backbone="/some/dir", encoder_layers=3, segment_tokens=12, skim_temperature=0.25, learn_temperature=False,
        max_batch_tokens=100, prompt_format="plain", instruction="Read — carefully: 日本", skim_marker=" … ",
        word_snap_window=5,
    )
    text = cfg.to_json()
    assert json.loads(text)["encoder_layers"] == 3
    assert RAMConfig.from_json(text) == cfg
    path = tmp_path / "cfg.json"
    path.write_text(text)
    assert RAMConfig.from_json(path) == cfg
    assert RAMConfig.from_json(str(path)) == cfg
    assert RAMConfig.from_dict(cfg.to_dict()) == cfg
    assert RAMConfig.from_json(text) != RAMConfig()


def test_from_dict_unknown_field() -> None:
    data = RAMConfig().to_dict()
    data["segment_size"] = 10
    data["zzz"] = 1
    with pytest.raises(ValueError, match="segment_size") as info:
        RAMConfig.from_dict(data)
    assert "zzz" in str(info.value)


def test_from_dict_validates_values() -> None:
    data = RAMConfig().to_dict()
    data["encoder_layers"] = 0
    with pytest.raises(ValueError, match="encoder_layers"):
        RAMConfig.from_dict(data)
