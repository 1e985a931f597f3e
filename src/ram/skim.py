"""Skimming: a dropped segment becomes one vector in the decoder's embedding space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[R, S, H], [R, S] bool -> [R, H] mean over real tokens."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SkimPooler(nn.Module):
    """Query-guided pooling ``sum_t softmax(cos(h_t, q) / tau) h_t`` plus a linear projector.

    tau is stored as a log so it stays positive when learned.
    """

    def __init__(self, enc_hidden: int, dec_hidden: int, temperature: float = 1.0, learn_temperature: bool = True) -> None:
        super().__init__()
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        self.projector = nn.Linear(enc_hidden, dec_hidden)

    @property
    def temperature(self) -> float:
        return float(self.log_tau.detach().exp())

    def init_projector(self, scale: float) -> None:
        """Scaled identity when sizes match (encoder states already live near the decoder's)."""
        with torch.no_grad():
            weight = self.projector.weight
            if weight.shape[0] == weight.shape[1]:
                weight.copy_(torch.eye(weight.shape[0], dtype=weight.dtype) * scale)
            else:
                nn.init.xavier_uniform_(weight)
            self.projector.bias.zero_()

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """[N, S, H] states, [N, S] bool mask, [N, H] query -> [N, H] pooled states."""
        sim = F.cosine_similarity(hidden, query.unsqueeze(1), dim=-1)  # [N, S]
        logits = (sim / self.log_tau.exp()).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # rows with no real token -> 0
        return torch.einsum("ns,nsh->nh", weights.to(hidden.dtype), hidden)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """[N, S, H_enc] -> [N, H_dec] skim vectors."""
        return self.projector(self.pool(hidden, mask, query))
