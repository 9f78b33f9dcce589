"""Hyperparameter tuning: one L2 regularization weight per feature of a logistic regression.

With training data (A, t) (n rows, d features, labels t_i in {-1, +1}) and validation data
(A', t'), the inner variable is theta = (w, b) in R^{d+1} (weights, then the bias), the
outer variable x in R^d is the log of the per-feature regularization weights, and

    g(x, theta) = 1/n sum_i log(1 + exp(-t_i (a_i^T w + b)))  +  1/2 sum_j exp(x_j) w_j^2
    f(x, theta) = 1/n' sum_i log(1 + exp(-t'_i (a'_i^T w + b)))

The bias is not regularized (the usual choice: shifting all scores should cost nothing);
g is still strictly convex in theta as long as the training labels are not all equal,
so y*(x) is unique. The exp parametrization keeps every weight positive without
constraints; a feature the validation set wants unregularized drives x_j to -inf, where
the hypergradient, exp(x_j) times a bounded factor, vanishes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ._common import IndexBatches, as_float_tensor, select

__all__ = ["LogisticRegressionTask", "as_pm1_labels", "hyperparameter_tuning", "logistic_loss"]


def as_pm1_labels(name: str, labels: Any, device=None, dtype=None) -> torch.Tensor:
    """Binary labels in {-1, +1} or {0, 1} (or bool) as a float tensor of -1 / +1."""
    t = as_float_tensor(name, labels, ndim=1, device=device, dtype=dtype)
    values = set(torch.unique(t).tolist())
    if values <= {-1.0, 1.0}:
        return t
    if values <= {0.0, 1.0}:
        return 2 * t - 1
    shown = sorted(values)[:5]
    raise ValueError(f"{name}: binary labels must be in {{-1, +1}} or {{0, 1}}, got values "
                     f"{shown}{' ...' if len(values) > 5 else ''}")


def logistic_loss(theta: torch.Tensor, X: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss 1/n sum_i log(1 + exp(-t_i (x_i^T w + b))), theta = (w, b).

    Shapes: theta (d+1,), X (n, d), t (n,) in {-1, +1}; returns a 0-dim tensor.
    """
    return _mean_logistic(X @ theta[:-1] + theta[-1], t)


def _mean_logistic(scores: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """1/n sum_i log(1 + exp(-t_i s_i)), as the binary cross-entropy of the logits s with
    targets (t + 1) / 2: the same number, exact and overflow-free for large margins, and
    the shortest Hessian product torch offers for it (5 kernels besides the two products
    with the data; softplus(-t s) takes 10)."""
    return F.binary_cross_entropy_with_logits(scores, (t + 1) / 2)


class LogisticRegressionTask:
    """The data and objectives of :func:`hyperparameter_tuning` (see the module docstring).

    ``inner(x, theta, batch)`` and ``outer(x, theta, batch)`` are the g and f of the
    module docstring; ``batch`` is None (all rows) or an int64 tensor of row indices into
    the training (for g) or validation (for f) set.

    Attributes:
        X_train, t_train, X_val, t_val: the data as tensors (labels in {-1, +1}).
        design_train, design_val: [X_train, 1] and [X_val, 1], so that the scores are
            one product with theta.
        n_features: d.
    """

    def __init__(self, X_train, y_train, X_val, y_val, device=None, dtype=None) -> None:
        self.X_train = as_float_tensor("X_train", X_train, 2, device, dtype)
        dtype = self.X_train.dtype
        device = self.X_train.device
        self.X_val = as_float_tensor("X_val", X_val, 2, device, dtype)
        self.t_train = as_pm1_labels("y_train", y_train, device, dtype)
        self.t_val = as_pm1_labels("y_val", y_val, device, dtype)
        self.n_features = self.X_train.shape[1]
        for name, X, t in (("train", self.X_train, self.t_train), ("val", self.X_val, self.t_val)):
            if X.shape[0] != t.shape[0]:
                raise ValueError(f"X_{name} has {X.shape[0]} rows but y_{name} has {t.shape[0]}")
            if X.shape[1] != self.n_features:
                raise ValueError(f"X_{name} has {X.shape[1]} features, X_train "
                                 f"{self.n_features}")
        if bool((self.t_train == self.t_train[0]).all()):
            raise ValueError("y_train has a single class: the unregularized bias has no "
                             "finite optimum")
        # [X, 1]: the scores are one product with theta.  X @ theta[:-1] + theta[-1] is the
        # same number, but a Hessian product through it (every CG iteration of a
        # hypergradient runs one) also pays for the slicing of theta, 4 more kernels.
        ones = torch.ones_like(self.X_train[:, :1])
        self.design_train = torch.cat([self.X_train, ones], dim=1)
        self.design_val = torch.cat([self.X_val, ones[:1].expand(self.X_val.shape[0], 1)],
                                    dim=1)

    def inner(self, x: torch.Tensor, theta: torch.Tensor, batch: Any = None) -> torch.Tensor:
        """g(x, theta) = mean training logistic loss + 1/2 sum_j exp(x_j) w_j^2.

        The penalty is 1/2 <[exp(x), 0], theta * theta> (the bias weighted 0): no slice of
        theta, and a dot product, whose second derivative is 2 kernels where that of
        (exp(x) * w * w).sum() is 6."""
        D, t = select(batch, self.design_train, self.t_train)
        weights = torch.cat([torch.exp(x), x.new_zeros(1)])
        return _mean_logistic(D @ theta, t) + 0.5 * torch.dot(weights, theta * theta)

    def outer(self, x: torch.Tensor, theta: torch.Tensor, batch: Any = None) -> torch.Tensor:
        """f(x, theta) = mean validation logistic loss (x enters only through theta*(x))."""
        D, t = select(batch, self.design_val, self.t_val)
        return _mean_logistic(D @ theta, t)

    def loss(self, theta: torch.Tensor, X, y) -> torch.Tensor:
        """Mean logistic loss of theta on any data (e.g. the test set)."""
        X = as_float_tensor("X", X, 2, self.X_train.device, self.X_train.dtype)
        t = as_pm1_labels("y", y, self.X_train.device, self.X_train.dtype)
        return logistic_loss(theta.to(X.dtype), X, t)

    def accuracy(self, theta: torch.Tensor, X, y) -> torch.Tensor:
        """Fraction of rows whose score sign matches the label (0-dim tensor)."""
        X = as_float_tensor("X", X, 2, self.X_train.device, self.X_train.dtype)
        t = as_pm1_labels("y", y, self.X_train.device, self.X_train.dtype)
        scores = X @ theta[:-1].to(X.dtype) + theta[-1].to(X.dtype)
        return ((scores > 0) == (t > 0)).to(X.dtype).mean()


def hyperparameter_tuning(X_train, y_train, X_val, y_val, *, log_reg0: float = 0.0,
                          batch_size: int | None = None, seed: int = 0, device=None,
                          dtype=None, return_task: bool = False):
    """Per-feature L2 regularization of logistic regression as a :class:`BilevelProblem`.

    x = log regularization weights (d,), y = theta = (w, b) (d+1,); g and f as in the
    module docstring (bias unregularized).

    Args:
        X_train, y_train: training features (n, d) and binary labels (n,) in {-1, +1}
            or {0, 1} (tensors or numpy arrays).
        X_val, y_val: validation features (n', d) and labels (n',).
        log_reg0: starting value of every x_j (default 0: weights exp(0) = 1).
        batch_size: None for full-batch objectives; otherwise both objectives get
            minibatches of row indices (:class:`IndexBatches`, reshuffled every pass).
        seed: seed of the minibatch permutations.
        device, dtype: where and in which precision to keep the data and variables
            (default: those of ``X_train``; integer arrays become the default dtype).
        return_task: also return the :class:`LogisticRegressionTask` (data, test loss).

    Returns:
        ``BilevelProblem`` (x0 = log_reg0 * ones(d), y0 = zeros(d+1)), or
        ``(problem, task)`` when ``return_task``.

    Raises:
        ValueError / TypeError: wrong shapes, NaN/inf, non-binary or single-class labels.
    """
    from ..problem import BilevelProblem

    task = LogisticRegressionTask(X_train, y_train, X_val, y_val, device=device, dtype=dtype)
    if not math.isfinite(log_reg0):
        raise ValueError(f"log_reg0 must be finite, got {log_reg0}")
    like = dict(device=task.X_train.device, dtype=task.X_train.dtype)
    x0 = torch.full((task.n_features,), float(log_reg0), **like)
    y0 = torch.zeros(task.n_features + 1, **like)
    inner_data = outer_data = None
    if batch_size is not None:
        inner_data = IndexBatches(task.X_train.shape[0], batch_size, seed, task.X_train.device)
        outer_data = IndexBatches(task.X_val.shape[0], batch_size, seed + 1, task.X_val.device)
    problem = BilevelProblem(outer=task.outer, inner=task.inner, x0=x0, y0=y0,
                             outer_data=outer_data, inner_data=inner_data)
    return (problem, task) if return_task else problem
