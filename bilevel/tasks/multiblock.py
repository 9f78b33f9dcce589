"""Multi-block hyperparameter tuning: m logistic regressions sharing per-feature L2 weights.

The training and validation rows are cut into m equal shards (one per block: a task, a
client); block i fits its own theta_i = (w_i, b_i) in R^{d+1} on its training shard, and
the shared outer variable x in R^d holds the log regularization weights of every block:

    g_i(x, theta_i) = 1/n sum_{r in shard i} log(1 + exp(-t_r (a_r^T w_i + b_i)))
                      + 1/2 sum_j exp(x_j) w_ij^2
    f_i(x, theta_i) = 1/n' sum_{r in validation shard i} log(1 + exp(-t_r (a_r^T w_i + b_i)))
    F(x) = 1/m sum_i f_i(x, theta_i*(x))       (the mean validation loss over the blocks)

With few rows per block (ijcnn1's 35,000 training rows in 256 shards: 136 rows for 23
parameters) the regularization matters, and one x serves all m problems.  The bias is not
regularized, as in :mod:`bilevel.tasks.hyperparameter_tuning`.
"""

from __future__ import annotations

import math

import torch

from ..multiblock import MultiBlockProblem
from ._common import as_float_tensor
from .hyperparameter_tuning import as_pm1_labels, logistic_loss

__all__ = ["block_logistic_inner", "block_logistic_outer", "multiblock_tuning"]


def block_logistic_inner(x: torch.Tensor, theta: torch.Tensor, batch: dict) -> torch.Tensor:
    """g_i: mean logistic loss of theta (d+1,) on batch {"X": (b, d), "t": (b,)} plus
    1/2 sum_j exp(x_j) w_j^2."""
    w = theta[:-1]
    return logistic_loss(theta, batch["X"], batch["t"]) + 0.5 * (torch.exp(x) * w * w).sum()


def block_logistic_outer(x: torch.Tensor, theta: torch.Tensor, batch: dict) -> torch.Tensor:
    """f_i: mean logistic loss of theta on the validation batch (x enters through theta*)."""
    return logistic_loss(theta, batch["X"], batch["t"])


def _shards(name: str, X: torch.Tensor, t: torch.Tensor, m: int) -> dict:
    rows = X.shape[0] // m
    if rows < 1:
        raise ValueError(f"multiblock_tuning: {name} has {X.shape[0]} rows, fewer than "
                         f"n_blocks={m}")
    if X.shape[0] != t.shape[0]:
        raise ValueError(f"multiblock_tuning: X_{name} has {X.shape[0]} rows but y_{name} "
                         f"{t.shape[0]}")
    return {"X": X[:m * rows].reshape(m, rows, X.shape[1]), "t": t[:m * rows].reshape(m, rows)}


def multiblock_tuning(X_train, y_train, X_val, y_val, *, n_blocks: int = 256,
                      log_reg0: float = 0.0, device=None, dtype=None) -> MultiBlockProblem:
    """m per-shard logistic regressions with shared per-feature L2 weights, as a
    :class:`~bilevel.MultiBlockProblem` (see the module docstring).

    Shard i holds rows i*n .. (i+1)*n - 1 of the training (validation) arrays, n =
    rows // n_blocks; the last rows % n_blocks rows are left out.  Shuffle the rows first
    if their order is not random (:func:`~bilevel.tasks.load_ijcnn1` returns them shuffled).

    Args:
        X_train, y_train: training features (n, d) and binary labels in {-1, +1} / {0, 1}.
        X_val, y_val: validation features (n', d) and labels.
        n_blocks: m.
        log_reg0: starting value of every x_j.
        device, dtype: where and in which precision (default: those of ``X_train``).

    Returns:
        ``MultiBlockProblem`` with x0 = log_reg0 * ones(d), y0 = zeros(m, d+1) and
        block data {"X": (m, n, d), "t": (m, n)} (inner: training, outer: validation).
    """
    X = as_float_tensor("X_train", X_train, 2, device, dtype)
    like = {"device": X.device, "dtype": X.dtype}
    Xv = as_float_tensor("X_val", X_val, 2, **like)
    t, tv = as_pm1_labels("y_train", y_train, **like), as_pm1_labels("y_val", y_val, **like)
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"multiblock_tuning: n_blocks must be a positive integer, got "
                         f"{n_blocks!r}")
    if Xv.shape[1] != X.shape[1]:
        raise ValueError(f"multiblock_tuning: X_val has {Xv.shape[1]} features, X_train "
                         f"{X.shape[1]}")
    if not math.isfinite(log_reg0):
        raise ValueError(f"log_reg0 must be finite, got {log_reg0}")
    train = _shards("train", X, t, n_blocks)
    single = (train["t"] == train["t"][:, :1]).all(dim=1)
    if bool(single.any()):
        raise ValueError(f"multiblock_tuning: the training shards of blocks "
                         f"{single.nonzero().flatten()[:5].tolist()} have a single class (the "
                         "unregularized bias has no finite optimum); use fewer blocks")
    d = X.shape[1]
    return MultiBlockProblem(block_logistic_outer, block_logistic_inner,
                             x0=torch.full((d,), float(log_reg0), **like),
                             y0=torch.zeros(n_blocks, d + 1, **like),
                             block_data={"inner": train,
                                         "outer": _shards("val", Xv, tv, n_blocks)})
