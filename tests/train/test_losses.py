"""Losses: the contrastive loss against a hand computation, NLL masking."""

from __future__ import annotations

import math

import torch
from torch import nn

from ram.train.losses import answer_nll, contrastive_loss


def test_contrastive_matches_hand_computation() -> None:
    # example 0: segments 0-2, positives {0, 2}; example 1: segments 3-4, no positive;
    # example 2: segments 5-7, positive {6}
    scores = torch.tensor([0.5, -0.2, 0.1, 0.9, 0.3, 0.0, 0.4, -0.5], dtype=torch.float64)
    positive = torch.tensor([True, False, True, False, False, False, True, False])
    example = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    tau = 0.3

    def lse(xs: list[float]) -> float:
        return math.log(sum(math.exp(x / tau) for x in xs))

    ex0 = lse([0.5, -0.2, 0.1]) - lse([0.5, 0.1])
    ex2 = lse([0.0, 0.4, -0.5]) - lse([0.4])
    expected = (ex0 + ex2) / 2  # example 1 has no positive and contributes nothing
    got = contrastive_loss(scores, positive, example, 3, tau)
    assert math.isclose(float(got), expected, rel_tol=1e-5)


def test_contrastive_zero_without_positives_and_has_gradient() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
    none = contrastive_loss(scores, torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long), 1)
    assert float(none) == 0.0
    loss = contrastive_loss(scores, torch.tensor([False, True, False]), torch.zeros(3, dtype=torch.long), 1)
    loss.backward()
    assert scores.grad is not None and scores.grad[1] < 0 < scores.grad[0]  # pulls the positive up


def test_answer_nll_counts_only_answer_tokens(tiny_llama_dir) -> None:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    decoder = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    embed = decoder.get_input_embeddings()
    prompts = [embed(torch.tensor([5, 6, 7, 8])), embed(torch.tensor([9, 10]))]
    answers = [[11, 12], [13, 14, 15]]
    loss, count = answer_nll(decoder, prompts, answers, embed)
    assert count == 5
    # reference: sum of per-token NLL over answer tokens, each sequence run alone
    total = 0.0
    for prompt, ans in zip(prompts, answers):
        ids = torch.cat([prompt, embed(torch.tensor(ans))])[None]
        logits = decoder(inputs_embeds=ids).logits[0]
        logp = torch.log_softmax(logits[prompt.shape[0] - 1 : -1], -1)
        total += -float(logp[torch.arange(len(ans)), torch.tensor(ans)].sum())
    assert math.isclose(float(loss), total / 5, rel_tol=1e-4)
    assert isinstance(decoder, nn.Module)
