"""Data hyper-cleaning: learn one weight per training example to ignore corrupted labels.

Multinomial logistic regression with W in R^{(p+1) x K} (last row the bias), training
data (A, c) with possibly wrong labels, clean validation data (A', c'), and one
hyperparameter x_i per training example whose weight is sigmoid(x_i):

    g(x, W) = 1/n sum_i sigmoid(x_i) CE(W; a_i, c_i)  +  1e-3 ||W||_F^2
    f(x, W) = 1/n' sum_i CE(W; a'_i, c'_i)

with CE(W; a, c) = -log softmax(a^T W[:-1] + W[-1])_c. This is exactly the problem of
``shared/anchors/hypergrad_anchor.py`` (the regularization covers the bias too, and the
weighted loss is divided by n, not by the sum of the weights). Examples whose learned
weight falls below 1/2 (x_i < 0) are the ones flagged as corrupted.

``data_cleaning(..., hidden=128)`` replaces the linear model by a 2-layer tanh MLP
(p -> hidden -> K, parameters a dict {"W1", "b1", "W2", "b2"}, the same objectives with
the penalty on every parameter): the non-convex inner problem of a neural network.  Both
problems are also given split as a loss of the model output (``inner_output`` /
``inner_loss``), so the hypergradient engines can use Gauss-Newton products.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._common import IndexBatches, as_float_tensor, select

__all__ = ["DataCleaningTask", "MLPCleaningTask", "data_cleaning", "flag_scores",
           "softmax_cross_entropy"]

REG = 1e-3  # the L2 weight of the issue and the anchor script


def softmax_cross_entropy(W: torch.Tensor, X: torch.Tensor, labels: torch.Tensor,
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    """1/n sum_i w_i CE(W; x_i, c_i) (w_i = 1 when weights is None).

    Shapes: W (p+1, K) with the bias as last row, X (n, p), labels (n,) int64 in [0, K),
    weights (n,). Returns a 0-dim tensor.
    """
    return _cross_entropy(X @ W[:-1] + W[-1], labels, weights)


def _as_labels(name: str, labels: Any, n_classes: int | None, device) -> torch.Tensor:
    c = torch.as_tensor(labels)
    if c.is_floating_point():
        if not bool((c == c.round()).all()):
            raise ValueError(f"{name}: class labels must be integers")
    elif c.dtype == torch.bool or c.is_complex():
        raise TypeError(f"{name}: class labels must be integers, got dtype {c.dtype}")
    if c.ndim != 1:
        raise ValueError(f"{name}: expected shape (n,), got {tuple(c.shape)}")
    c = c.to(device=device, dtype=torch.int64)
    if c.numel() and int(c.min()) < 0:
        raise ValueError(f"{name}: negative class label {int(c.min())}")
    if n_classes is not None and c.numel() and int(c.max()) >= n_classes:
        raise ValueError(f"{name}: label {int(c.max())} >= n_classes={n_classes}")
    return c


class DataCleaningTask:
    """The data and objectives of :func:`data_cleaning` (see the module docstring).

    ``inner(x, W, batch)``: g with ``batch`` None (all n rows) or int64 training-row
    indices (then the mean runs over the batch, an unbiased estimate of g).
    ``outer(x, W, batch)``: f with ``batch`` None or validation-row indices.

    Attributes:
        X_train, labels_train (noisy), X_val, labels_val, n_classes, reg; design_train,
        design_val: the model's input rows (:meth:`design`) of X_train and X_val.
    """

    def __init__(self, X_train, y_noisy, X_val, y_val, n_classes: int | None = None,
                 reg: float = REG, device=None, dtype=None) -> None:
        self.X_train = as_float_tensor("X_train", X_train, 2, device, dtype)
        device, dtype = self.X_train.device, self.X_train.dtype
        self.X_val = as_float_tensor("X_val", X_val, 2, device, dtype)
        self.labels_train = _as_labels("y_noisy", y_noisy, n_classes, device)
        self.labels_val = _as_labels("y_val", y_val, n_classes, device)
        if n_classes is None:
            n_classes = 1 + max(int(self.labels_train.max()), int(self.labels_val.max()))
        self.n_classes = n_classes
        self.reg = reg
        for name, X, c in (("train", self.X_train, self.labels_train),
                           ("val", self.X_val, self.labels_val)):
            if X.shape[0] != c.shape[0]:
                raise ValueError(f"X_{name} has {X.shape[0]} rows but its labels {c.shape[0]}")
        if self.X_val.shape[1] != self.X_train.shape[1]:
            raise ValueError(f"X_val has {self.X_val.shape[1]} features, X_train "
                             f"{self.X_train.shape[1]}")
        # the model's input rows, built once (the objectives run on every product)
        self.design_train, self.design_val = self.design(self.X_train), self.design(self.X_val)

    @property
    def weight_shape(self) -> tuple[int, int]:
        """Shape of W: (features + 1, classes)."""
        return (self.X_train.shape[1] + 1, self.n_classes)

    # -- the model: the one place that knows its parameters ------------------------------
    def design(self, X: torch.Tensor) -> torch.Tensor:
        """The model's input rows for the rows of X: [X, 1] (n, p+1), so that the scores
        are one product D W.  X W[:-1] + W[-1] is the same number, but a Hessian product
        through it (every CG iteration of a hypergradient runs one) also pays for the
        slicing of W: its backward writes zeros and copies per slice, 5 more kernels."""
        return torch.cat([X, torch.ones_like(X[:, :1])], dim=1)

    def design_logits(self, W: Any, D: torch.Tensor) -> torch.Tensor:
        """Class scores (n, K) of design rows D (:meth:`design`): D W."""
        return D @ W

    def logits(self, W: Any, X: torch.Tensor) -> torch.Tensor:
        """Class scores (n, K) of the rows of X: X W[:-1] + W[-1]."""
        return self.design_logits(W, self.design(X))

    def penalty(self, W: Any) -> torch.Tensor:
        """reg * (sum of squares of every parameter).

        Each sum of squares is ``mse_loss(t, 0, reduction="sum")``: the same number as
        (t * t).sum(), but its second derivative is one fused kernel per Hessian product
        where (t * t).sum()'s is four (a product rule over two uses of t)."""
        squares = [F.mse_loss(t, torch.zeros_like(t), reduction="sum") for t in _leaves(W)]
        return self.reg * (squares[0] if len(squares) == 1 else torch.stack(squares).sum())

    def initial_params(self) -> Any:
        """The starting parameters: W = 0 (g is convex in W)."""
        return torch.zeros(self.weight_shape, device=self.X_train.device,
                           dtype=self.X_train.dtype)

    def weighted_loss(self, W: Any, weights: torch.Tensor | None,
                      batch: Any = None) -> torch.Tensor:
        """1/n sum_i w_i CE_i(W) + penalty(W) over the training rows ``batch``."""
        D, c = select(batch, self.design_train, self.labels_train)
        if weights is not None and batch is not None:
            weights = weights[batch]
        return _cross_entropy(self.design_logits(W, D), c, weights) + self.penalty(W)

    # -- the objectives --------------------------------------------------------------------
    def inner(self, x: torch.Tensor, W: Any, batch: Any = None) -> torch.Tensor:
        """g(x, W) = 1/n sum_i sigmoid(x_i) CE_i(W) + reg ||W||^2."""
        return self.weighted_loss(W, torch.sigmoid(x), batch)

    def output(self, x: torch.Tensor, W: Any, batch: Any = None) -> dict:
        """The model output z(x, W) of the split g = loss(x, z): the training logits, and W
        itself (so the penalty is part of the loss and Gauss-Newton keeps it exactly)."""
        D = select(batch, self.design_train)[0]
        return {"logits": self.design_logits(W, D), "params": W}

    def loss(self, x: torch.Tensor, z: dict, batch: Any = None) -> torch.Tensor:
        """l(x, z) with g(x, W) = l(x, output(x, W))."""
        c, xb = select(batch, self.labels_train, x)
        return _cross_entropy(z["logits"], c, torch.sigmoid(xb)) + self.penalty(z["params"])

    def outer(self, x: torch.Tensor, W: Any, batch: Any = None) -> torch.Tensor:
        """f(x, W) = mean validation cross-entropy."""
        D, c = select(batch, self.design_val, self.labels_val)
        return _cross_entropy(self.design_logits(W, D), c, None)

    def accuracy(self, W: Any, X, labels) -> torch.Tensor:
        """Fraction of rows of X classified as ``labels`` (0-dim tensor)."""
        X = as_float_tensor("X", X, 2, self.X_train.device, self.X_train.dtype)
        c = _as_labels("labels", labels, self.n_classes, self.X_train.device)
        W = _tree_to(W, X.dtype)
        return (self.logits(W, X).argmax(dim=1) == c).to(X.dtype).mean()


class MLPCleaningTask(DataCleaningTask):
    """:class:`DataCleaningTask` with a 2-layer tanh MLP instead of the linear model:
    logits = tanh(X W1 + b1) W2 + b2, parameters {"W1": (p, h), "b1": (h,), "W2": (h, K),
    "b2": (K,)}, started at a seeded Glorot-normal draw (zero would be a saddle).
    """

    def __init__(self, *args, hidden: int = 128, init_seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"MLPCleaningTask: hidden must be a positive integer, got {hidden!r}")
        self.hidden, self.init_seed = hidden, init_seed

    def design(self, X: torch.Tensor) -> torch.Tensor:
        """The MLP reads the rows of X as they are (no copy)."""
        return X

    def design_logits(self, W: dict, D: torch.Tensor) -> torch.Tensor:
        """tanh(D W1 + b1) W2 + b2."""
        return torch.tanh(D @ W["W1"] + W["b1"]) @ W["W2"] + W["b2"]

    def initial_params(self) -> dict:
        p, h, k = self.X_train.shape[1], self.hidden, self.n_classes
        gen = torch.Generator().manual_seed(self.init_seed)
        like = {"device": self.X_train.device, "dtype": self.X_train.dtype}

        def draw(rows: int, cols: int) -> torch.Tensor:
            scale = (2.0 / (rows + cols)) ** 0.5
            return (scale * torch.randn(rows, cols, generator=gen, dtype=torch.float64)).to(**like)

        return {"W1": draw(p, h), "b1": torch.zeros(h, **like), "W2": draw(h, k),
                "b2": torch.zeros(k, **like)}


def _leaves(W: Any) -> list[torch.Tensor]:
    return list(W.values()) if isinstance(W, dict) else [W]


def _tree_to(W: Any, dtype: torch.dtype) -> Any:
    return {k: t.to(dtype) for k, t in W.items()} if isinstance(W, dict) else W.to(dtype)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                   weights: torch.Tensor | None) -> torch.Tensor:
    """1/n sum_i w_i CE(logits_i, c_i) (w = 1 when None), CE(z, c) = logsumexp(z) - z_c.

    The value of ``F.cross_entropy``, written so that its Hessian products are short: the
    picked score z_c is linear in the logits and drops out of the second derivative, and
    logsumexp's double backward is 4 kernels fewer than that of log_softmax + nll_loss.
    """
    picked = logits.gather(1, labels[:, None])[:, 0]
    losses = torch.logsumexp(logits, dim=1) - picked
    return losses.mean() if weights is None else (weights * losses).mean()


def flag_scores(x: torch.Tensor, corrupted: torch.Tensor, threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of flagging examples with sigmoid(x_i) < threshold.

    Args:
        x: learned per-example hyperparameters (n,).
        corrupted: bool truth mask (n,), True where the label was replaced.

    Returns:
        dict of Python floats: precision, recall, f1, flagged (count), and
        weight_clean / weight_corrupted (mean sigmoid(x) over each group).
    """
    x = x.detach().reshape(-1).cpu()
    truth = torch.as_tensor(corrupted).reshape(-1).cpu().bool()
    if x.shape != truth.shape:
        raise ValueError(f"flag_scores: x has {x.numel()} entries, corrupted {truth.numel()}")
    weight = torch.sigmoid(x.double())
    flagged = weight < threshold
    tp = int((flagged & truth).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    mean = lambda m: float(weight[m].mean()) if bool(m.any()) else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(flagged.sum()),
            "weight_clean": mean(~truth), "weight_corrupted": mean(truth)}


def data_cleaning(X_train, y_noisy, X_val, y_val, *, n_classes: int | None = None,
                  reg: float = REG, batch_size: int | None = None, seed: int = 0,
                  device=None, dtype=None, return_task: bool = False,
                  hidden: int | None = None, init_seed: int = 0):
    """Data hyper-cleaning of a multinomial logistic regression as a :class:`BilevelProblem`.

    x = per-example logits (n,) with weights sigmoid(x), y = W ((p+1), K); g and f as in
    the module docstring, exactly the anchor script's objectives.

    Args:
        X_train, y_noisy: training features (n, p) and possibly corrupted int labels (n,).
        X_val, y_val: clean validation features (n', p) and labels (n',).
        n_classes: K (default: 1 + the largest label seen).
        reg: L2 weight on all of W, bias included (default 1e-3).
        batch_size: None for full-batch objectives; otherwise minibatches of row indices
            (:class:`IndexBatches`) for both objectives.
        seed: seed of the minibatch permutations.
        device, dtype: where and in which precision to keep data and variables.
        return_task: also return the :class:`DataCleaningTask` (accuracy on test data).
        hidden: None for the linear model; the hidden width of a 2-layer tanh MLP
            (:class:`MLPCleaningTask`, y a dict of its parameters).
        init_seed: seed of the MLP's initial parameters.

    Returns:
        ``BilevelProblem`` with x0 = zeros(n) (every weight 1/2) and y0 = zeros(p+1, K)
        (the MLP: its seeded initial parameters), also split as ``inner_loss`` of
        ``inner_output``; or ``(problem, task)`` when ``return_task``.
    """
    from ..problem import BilevelProblem

    common = dict(n_classes=n_classes, reg=reg, device=device, dtype=dtype)
    task = (DataCleaningTask(X_train, y_noisy, X_val, y_val, **common) if hidden is None else
            MLPCleaningTask(X_train, y_noisy, X_val, y_val, hidden=hidden,
                            init_seed=init_seed, **common))
    like = dict(device=task.X_train.device, dtype=task.X_train.dtype)
    x0 = torch.zeros(task.X_train.shape[0], **like)
    y0 = task.initial_params()
    inner_data = outer_data = None
    if batch_size is not None:
        inner_data = IndexBatches(task.X_train.shape[0], batch_size, seed, task.X_train.device)
        outer_data = IndexBatches(task.X_val.shape[0], batch_size, seed + 1, task.X_val.device)
    problem = BilevelProblem(outer=task.outer, inner=task.inner, x0=x0, y0=y0,
                             outer_data=outer_data, inner_data=inner_data,
                             inner_output=task.output, inner_loss=task.loss)
    return (problem, task) if return_task else problem
