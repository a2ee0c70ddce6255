"""Calibration and OOD-detection figures and the energy objective, as pure functions of predictions
(tensors in, numbers or tensors out), so each is tested against hand-computed values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# --- calibration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reliability:
    """Equal-width confidence bins over [0, 1]: each bin's example count, mean confidence and accuracy
    (NaN where empty); `ece` the count-weighted mean |accuracy - confidence| over bins."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Reliability:
    """Bins of the top-class confidence, right-closed as (lo, hi] (the first [0, hi]), as Guo et al.
    2017 bin them (torchmetrics closes them on the left: only a confidence on an edge differs)."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    confidence = confidence.double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.clamp(torch.bucketize(confidence, edges[1:-1], right=False), 0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    sum_conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    sum_correct = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    filled = counts > 0
    ece = ((sum_correct - sum_conf).abs()[filled].sum() / len(labels)).item()
    # Empty bins divide 0 by 0: NaN, as the docstring says (torch gives it without a warning).
    return Reliability(edges.numpy(), counts.numpy(), (sum_conf / counts).numpy(), (sum_correct / counts).numpy(), ece)


def nll(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class."""
    return F.nll_loss(log_probs.double(), labels).item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over examples of the squared distance between the predicted distribution and the one-hot
    label, summed over classes (Brier 1950; range [0, 2])."""
    one_hot = F.one_hot(labels, probs.shape[1]).double()
    return ((probs.double() - one_hot) ** 2).sum(dim=1).mean().item()


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 minimising the NLL of softmax(log_probs / T) (temperature scaling, Guo
    et al. 2017): L-BFGS on log T from T = 1. `log_probs` may be logits or log-probabilities; dividing
    either by T gives the same distribution up to normalisation."""
    scores = log_probs.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(scores / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.exp().item())


def scaled(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(log_probs / T)."""
    return torch.log_softmax(log_probs.double() / temperature, dim=1)


# --- OOD scores and detection ---------------------------------------------------------------------------

def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The free energy E(x) = -T logsumexp(f(x) / T) over the last (class) dimension: [N] of logits
    [N, C], [M, N] of [M, N, C] (lower on in-distribution inputs)."""
    return -temperature * torch.logsumexp(logits / temperature, dim=-1)


def energy_margin_loss(energy_in: torch.Tensor, energy_out: torch.Tensor, m_in: float, m_out: float) -> torch.Tensor:
    """Liu et al. 2020's regulariser: mean(max(0, E_in - m_in)^2) + mean(max(0, m_out - E_out)^2)."""
    return F.relu(energy_in - m_in).pow(2).mean() + F.relu(m_out - energy_out).pow(2).mean()


def detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """How well a score (higher = in-distribution) separates in-distribution (positive) from OOD:
    AUROC, AUPR with in-distribution as the positive class, and FPR95, the share of OOD examples
    scored at or above the highest threshold that keeps 95% of in-distribution ones."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    scores = np.concatenate([in_scores, out_scores]).astype(np.float64)
    positive = np.concatenate([np.ones(len(in_scores)), np.zeros(len(out_scores))])
    fpr, tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    return {"auroc": float(roc_auc_score(positive, scores)), "aupr": float(average_precision_score(positive, scores)),
            "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")])}
