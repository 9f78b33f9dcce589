"""Small float64 bilevel problems with exact answers, shared by the bilevel tests.

Ridge (per-feature weights):
    g(x, y) = ||X y - t||^2 / (2m) + sum_j exp(x_j) y_j^2 / 2,
    f(x, y) = ||X_v y - t_v||^2 / (2 m_v).
    H = X^T X / m + diag(e^x),  y*(x) = H^{-1} X^T t / m,
    grad h(x) = -diag(e^x * y*) H^{-1} grad_y f(y*)          (implicit function theorem).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import bilevel

DT = torch.float64


class Ridge:
    def __init__(self, n: int = 5, m: int = 40, mv: int = 30, seed: int = 0,
                 scale: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(m, n, generator=gen, dtype=DT) * scale
        w = torch.randn(n, generator=gen, dtype=DT)
        self.t = self.X @ w + 0.5 * torch.randn(m, generator=gen, dtype=DT)
        self.Xv = torch.randn(mv, n, generator=gen, dtype=DT) * scale
        self.tv = self.Xv @ w + 0.5 * torch.randn(mv, generator=gen, dtype=DT)
        self.x0 = 0.3 * torch.randn(n, generator=gen, dtype=DT)
        self.n = n

    def inner(self, x, y, batch=None):
        X, t = (self.X, self.t) if batch is None else batch
        return ((X @ y - t) ** 2).sum() / (2 * X.shape[0]) + (x.exp() * y * y).sum() / 2

    def outer(self, x, y, batch=None):
        Xv, tv = (self.Xv, self.tv) if batch is None else batch
        return ((Xv @ y - tv) ** 2).sum() / (2 * Xv.shape[0])

    def hessian(self, x):
        return self.X.T @ self.X / self.X.shape[0] + torch.diag(x.exp())

    def y_star(self, x):
        return torch.linalg.solve(self.hessian(x), self.X.T @ self.t / self.X.shape[0])

    def grad_f_y(self, y):
        return self.Xv.T @ (self.Xv @ y - self.tv) / self.Xv.shape[0]

    def hypergrad(self, x):
        y = self.y_star(x)
        v = torch.linalg.solve(self.hessian(x), self.grad_f_y(y))
        return -(x.exp() * y) * v

    def h(self, x):
        return self.outer(x, self.y_star(x))

    def problem(self, **kw):
        return bilevel.BilevelProblem(outer=self.outer, inner=self.inner, x0=self.x0,
                                      y0=torch.zeros(self.n, dtype=DT), **kw)


def rel(a, b) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


# aten ops that only make views (no kernel launch on a GPU)
VIEWS = frozenset({"reshape", "view", "t", "expand", "slice", "select", "as_strided", "detach",
                   "alias", "_unsafe_view", "unsqueeze", "squeeze", "transpose", "permute"})


class KernelCount(TorchDispatchMode):
    """Counts the dispatched aten ops that launch a kernel on a GPU (not ``views``): the
    kernel counts of the CPU tests that pin a GPU path's launches."""

    def __init__(self, views: frozenset = VIEWS):
        super().__init__()
        self.views, self.count = views, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in self.views:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_kernels(fn) -> int:
    """Kernels ``fn()`` launches (:class:`KernelCount`)."""
    with KernelCount() as counter:
        fn()
    return counter.count
