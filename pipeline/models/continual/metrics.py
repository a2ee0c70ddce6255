"""What an accuracy matrix says (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018; Díaz-Rodríguez
et al. 2018). R[i, j] is the accuracy on experience j's test examples after training on
experiences 0..i; `initial[j]` is the accuracy of the network before any training (b_j).

- average accuracy: mean_j R[T-1, j], after the last experience;
- forgetting: for each experience but the last, the best accuracy it ever had minus its final
  one, max_{l < T-1} R[l, j] - R[T-1, j], averaged;
- backward transfer: mean_{j < T-1} R[T-1, j] - R[j, j] (negative: forgetting);
- forward transfer: mean_{j > 0} R[j-1, j] - b_j (what training on the experiences before j did
  for j before it was seen).

A learner trained in one fit (joint training) has a matrix of one row: its average accuracy is
that row's mean and the other figures are not defined (NaN).
"""

from __future__ import annotations

import numpy as np


def summary(matrix: np.ndarray, initial: np.ndarray | None = None) -> dict[str, float]:
    matrix = np.asarray(matrix, dtype=float)
    rows, count = matrix.shape
    final = matrix[-1]
    out = {"average_accuracy": float(np.mean(final)), "forgetting": float("nan"),
           "backward_transfer": float("nan"), "forward_transfer": float("nan")}
    if rows != count or count < 2:
        return out
    earlier = range(count - 1)
    out["forgetting"] = float(np.mean([matrix[: count - 1, j].max() - final[j] for j in earlier]))
    out["backward_transfer"] = float(np.mean([final[j] - matrix[j, j] for j in earlier]))
    if initial is not None:
        out["forward_transfer"] = float(np.mean([matrix[j - 1, j] - initial[j] for j in range(1, count)]))
    return out


def average_accuracies(matrix: np.ndarray, seen: list[list[int]] | None = None) -> list[float]:
    """After each phase i, the mean accuracy over the experiences seen by then (`seen[i]`; default
    0..i): the curve a continual learner is drawn by."""
    matrix = np.asarray(matrix, dtype=float)
    seen = seen or [list(range(i + 1)) for i in range(len(matrix))]
    return [float(np.mean(matrix[i, seen[i]])) for i in range(len(matrix))]
