"""Trainer: learning happens, ratios respect budgets, resume is exact, checkpoints are atomic, DDP agrees."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ram.data.example import Example
from ram.data.readers import write_examples
from ram.train import trainer as trainer_mod
from ram.train.config import TrainConfig
from ram.train.trainer import TrainingError, checkpoints, step_indices, step_ratio, train

FACTS = [
    ("Paris", "capital", "The capital of France is Paris, a city on the river Seine."),
    ("Darwin", "origin", "Charles Darwin wrote the Origin of Species in 1859."),
    ("1901", "nobel", "The first Nobel Prize in Physics was awarded in 1901."),
    ("glucose", "photosynthesis", "Photosynthesis stores chemical energy in glucose."),
]
FILLER = "Documents about history, science, sport, music and geography are here."


def make_examples(n: int) -> list[Example]:
    out = []
    for i in range(n):
        answer, topic, fact = FACTS[i % len(FACTS)]
        docs = [FILLER] * 3
        docs.insert(i % 4, fact)
        out.append(Example(id=str(i), question=f"Question about {topic}?", answers=[answer], documents=docs))
    return out


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    write_examples(make_examples(8), path)
    return path


def tiny_cfg(tmp_path: Path, backbone: Path, data: Path, **kw: object) -> TrainConfig:
    base = dict(
        out=str(tmp_path / "run"), train_data=str(data), dev_data="", backbone=str(backbone), encoder_layers=2,
        segment_tokens=8, word_snap_window=2, encoder_policy="full", encoder_trainable_layers=1,
        decoder_policy="qkv", steps=4, batch_size=2, lr=3e-3, projector_lr=3e-3, warmup_steps=1,
        save_every=2, keep_last=5, ratio_min=2.0, ratio_max=4.0, eval_every=0, adapter_dtype="float32",
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_config_validation_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoder_policy"):
        TrainConfig(encoder_policy="lots")
    with pytest.raises(ValueError, match="ratio_min"):
        TrainConfig(ratio_min=8, ratio_max=4)
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nlr: 0.5\n")
    cfg = TrainConfig.load(path, ["batch_size=3", "eval_ratios=[2, 16]"])
    assert (cfg.steps, cfg.lr, cfg.batch_size, cfg.eval_ratios) == (7, 0.5, 3, [2, 16])
    with pytest.raises(ValueError, match="unknown training settings: nope"):
        TrainConfig.load(None, ["nope=1"])


@pytest.mark.parametrize("override, message", [
    ("lr=abc", "lr must be a number, got 'abc'"),
    ("steps=1.5", "steps must be an integer, got 1.5"),
    ("steps=true", "steps must be an integer, got True"),
    ("eval_generate=3", "eval_generate must be true or false"),
    ("eval_ratios=[4, x]", r"eval_ratios\[1\] must be a number"),
    ("lora_targets=q_proj", "lora_targets must be a list"),
    ("backbone=null", "backbone must be a string, got None"),
    ("lr=[1", "override 'lr=\\[1': the value is not valid YAML"),
])
def test_settings_of_the_wrong_kind_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.load(None, [override])


def test_numbers_yaml_reads_as_strings_are_converted(tmp_path: Path) -> None:
    cfg = TrainConfig.load(None, ["lr=1e-4", "steps='12'", "init_from=null"])  # YAML: 1e-4 is a string
    assert (cfg.lr, cfg.steps, cfg.init_from) == (1e-4, 12, None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1\n")
    with pytest.raises(ValueError, match="bad.yaml is not valid YAML/JSON"):
        TrainConfig.load(bad)


def test_step_schedule_is_a_pure_function_of_seed_and_step() -> None:
    assert step_indices(0, 5, 4, 10) == step_indices(0, 5, 4, 10)
    assert step_indices(0, 5, 4, 10) != step_indices(1, 5, 4, 10)
    epoch = [i for s in range(5) for i in step_indices(3, s, 2, 10)]
    assert sorted(epoch) == list(range(10))  # one epoch visits every example once
    ratios = [step_ratio(0, s, 2.0, 32.0) for s in range(200)]
    assert all(2.0 <= r <= 32.0 for r in ratios)
    assert min(ratios) < 3 and max(ratios) > 20  # spread over the log-uniform range


def test_loss_falls_and_budget_holds(tmp_path: Path, tiny_llama_dir: Path, data_file: Path) -> None:
    cfg = tiny_cfg(tmp_path, tiny_llama_dir, data_file, steps=30, save_every=30, batch_size=4)
    final = train(cfg, progress=False)
    rows = [json.loads(l) for l in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert len(rows) == 30
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    # the sampled (and clipped) ratio of every step is honoured exactly: cost <= ceil(L / r)
    from ram.model import RAMModel

    model = RAMModel.from_pretrained(final)
    batch = make_examples(4)
    for step in range(5):
        ratio = trainer_mod._attainable(model, batch, step_ratio(0, step, cfg.ratio_min, cfg.ratio_max))
        hb = model.hybrid([e.documents for e in batch], [e.question for e in batch], ratio=ratio)
        original = hb.segments.original_tokens().tolist()
        for (start, end), total in zip(hb.context_spans, original):
            assert end - start <= math.ceil(total / ratio)
    meta = json.loads((final / "ram_config.json").read_text())
    assert meta["trained"] and meta["training"]["steps"] == 30
    tensors = load_file(str(final / "adapter.safetensors"))
    assert any(k.startswith("decoder.") and "q_proj" in k for k in tensors)
    assert not any(k.startswith("decoder.") and "mlp" in k for k in tensors)  # only q/k/v trained


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter.safetensors"))


def test_resume_equals_straight_run(tmp_path: Path, tiny_llama_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tiny_cfg(tmp_path / "a", tiny_llama_dir, data_file, steps=6, save_every=3)
    ref = _weights(train(straight, progress=False))

    killed = tiny_cfg(tmp_path / "b", tiny_llama_dir, data_file, steps=6, save_every=3)
    real_forward = trainer_mod.TrainingStep.forward
    calls = {"n": 0}

    def dying_forward(self, examples, ratio):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:  # the process dies during step 5, after the step-3 checkpoint
            raise RuntimeError("killed")
        return real_forward(self, examples, ratio)

    monkeypatch.setattr(trainer_mod.TrainingStep, "forward", dying_forward)
    with pytest.raises(RuntimeError, match="killed"):
        train(killed, progress=False)
    monkeypatch.setattr(trainer_mod.TrainingStep, "forward", real_forward)
    assert [p.name for p in checkpoints(Path(killed.out))] == ["step-00000003"]
    # a checkpoint cut mid-write (no state file) must be ignored
    (Path(killed.out) / "checkpoints" / "step-00000005").mkdir()
    with pytest.raises(ValueError, match="--resume"):
        train(killed, progress=False)
    resumed = _weights(train(killed, resume=True, progress=False))
    assert ref.keys() == resumed.keys()
    for key in ref:
        torch.testing.assert_close(resumed[key], ref[key], atol=1e-5, rtol=1e-4)


def test_nonfinite_loss_names_step_and_examples(tmp_path: Path, tiny_llama_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_nll(*args, **kwargs):  # type: ignore[no-untyped-def]
        return torch.tensor(float("nan"), requires_grad=True), 1

    monkeypatch.setattr(trainer_mod, "answer_nll", nan_nll)
    with pytest.raises(TrainingError, match=r"step 0, examples \["):
        train(tiny_cfg(tmp_path, tiny_llama_dir, data_file), progress=False)


def test_sigterm_saves_and_stops(tmp_path: Path, tiny_llama_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    real_forward = trainer_mod.TrainingStep.forward
    calls = {"n": 0}

    def signalling_forward(self, examples, ratio):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_forward(self, examples, ratio)

    monkeypatch.setattr(trainer_mod.TrainingStep, "forward", signalling_forward)
    cfg = tiny_cfg(tmp_path, tiny_llama_dir, data_file, steps=10, save_every=100)
    train(cfg, progress=False)
    assert [p.name for p in checkpoints(Path(cfg.out))] == ["step-00000002"]
    assert not (Path(cfg.out) / "final").exists()


DDP_SCRIPT = """
import json, sys, torch
import torch.distributed as dist
from pathlib import Path
import ram.train.trainer as T
from ram.train.config import TrainConfig
cfg = TrainConfig(**json.loads(sys.argv[1]))
held = {}
build = T.build_model
def capture(c):
    held["model"] = build(c)
    return held["model"]
T.build_model = capture
T.train(cfg, progress=False)
weights = torch.cat([p.detach().flatten().double() for p in held["model"].parameters() if p.requires_grad])
rank, world = dist.get_rank(), dist.get_world_size()
Path(cfg.out, f"rank{rank}.json").write_text(json.dumps({"world": world, "sum": float(weights.sum()), "sq": float((weights ** 2).sum())}))
"""


def test_two_process_ddp_on_cpu(tmp_path: Path, tiny_llama_dir: Path, data_file: Path) -> None:
    cfg = tiny_cfg(tmp_path, tiny_llama_dir, data_file, steps=3, save_every=3, batch_size=1)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", str(script), json.dumps(cfg.to_dict())],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(l) for l in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert len([m for m in metrics if "loss" in m]) == 3  # only rank 0 logs
    ranks = [json.loads((Path(cfg.out) / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # each rank saw different examples, yet DDP's gradient averaging keeps the replicas identical
    assert ranks[0]["sum"] == pytest.approx(ranks[1]["sum"], rel=1e-6)
    assert ranks[0]["sq"] == pytest.approx(ranks[1]["sq"], rel=1e-6)


def test_lora_policies_save_only_low_rank_tensors(tmp_path: Path, tiny_llama_dir: Path, data_file: Path) -> None:
    from ram.model import RAMModel

    held = {}
    build = trainer_mod.build_model

    def capture(c: TrainConfig):  # type: ignore[no-untyped-def]
        held["model"] = build(c)
        return held["model"]

    cfg = tiny_cfg(tmp_path, tiny_llama_dir, data_file, encoder_policy="lora", decoder_policy="lora", lora_rank=2, steps=3)
    trainer_mod.build_model = capture
    try:
        final = train(cfg, progress=False)
    finally:
        trainer_mod.build_model = build
    tensors = load_file(str(final / "adapter.safetensors"))
    model_keys = [k for k in tensors if not k.startswith("skim.")]
    assert model_keys and all("lora_" in k for k in model_keys)
    assert any(k.startswith("encoder.") for k in model_keys) and any(k.startswith("decoder.") for k in model_keys)
    # the reloaded model (LoRA re-injected, then loaded) compresses and decodes like the trained one
    trained = held["model"]
    loaded = RAMModel.from_pretrained(final)
    ex = make_examples(1)[0]
    a = trained.compress(ex.documents, ex.question, ratio=2.0)
    b = loaded.compress(ex.documents, ex.question, ratio=2.0)
    assert a.segment_map() == b.segment_map()
    torch.testing.assert_close(a.inputs_embeds, b.inputs_embeds, atol=1e-5, rtol=1e-4)  # fp32 adapter
    assert trained.generate_ids([a.inputs_embeds[0]], 4, stop_at_eos=False) == loaded.generate_ids([b.inputs_embeds[0]], 4, stop_at_eos=False)
