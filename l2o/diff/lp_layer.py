"""``LPLayer``: a batch of LPs of one sparsity pattern as a differentiable PyTorch layer.

Each instance b of a batch is the LP

    minimize (or maximize)  c_b^T x   s.t.   row_lower_b <= A_b x <= row_upper_b,
                                             col_lower_b <= x <= col_upper_b,

with A_b the (m, n) CSR matrix of the layer's pattern (crow, col) holding the values
A_values_b.  The forward solves the whole batch in one batched solve (the GPU PDHG solver,
:func:`l2o.solve_lp_batch`) and returns the solutions and the optimal values; ``mode`` chooses
what the backward differentiates:

* ``"value"`` (:mod:`l2o.diff.value`): the optimal value c^T x*, exactly, with respect to every
  input (dV/dc = x*, dV/dbounds = the duals' parts, dV/dA = -y* x*^T); x* has no gradient.
* ``"perturbed"`` (:mod:`l2o.diff.perturbed`): the perturbed optimizer of Berthet et al.
  (2020): x_eps(c) = E[x*(c + eps Z)] and F_eps(c) = E[(c + eps Z)^T x*(c + eps Z)] from
  ``samples`` draws of Z ~ N(0, I) per instance, all B * samples LPs solved as one batch, both
  differentiable with respect to c only.

An LP of the batch that does not end OPTIMAL (infeasible, unbounded, out of iterations) raises
:class:`LPNotOptimalError` naming it: neither its value nor its gradient would mean anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bilevel.linalg.operators import csr_tensor
from l2o.lp.model import MAXIMIZE, MINIMIZE, LinearProgram
from l2o.lp.result import LPResult, LPStatus
from l2o.lp.validate import BOUND_PROBLEMS, InvalidLPError

from .perturbed import PerturbedOptimizer
from .value import BatchSolution, BatchSolve, OptimalValue

__all__ = ["LPLayer", "LPNotOptimalError"]

_MODES = ("value", "perturbed")
# forward's arguments after c, in order
_DATA = ("A_values", "row_lower", "row_upper", "col_lower", "col_upper")


class LPNotOptimalError(RuntimeError):
    """An LP of an :class:`LPLayer` batch did not end OPTIMAL.

    Attributes:
        index: its position in the batch.
        sample: its perturbation sample (``mode="perturbed"``), else None.
        result: its :class:`l2o.LPResult` (``status``, ``message``, ``kkt``).
    """

    def __init__(self, index: int, sample: int | None, result: LPResult):
        self.index, self.sample, self.result = index, sample, result
        which = f"LP {index} of the batch" + (
            f" (perturbation sample {sample})" if sample is not None else "")
        super().__init__(
            f"LPLayer: {which} ended {result.status.value}, not optimal ({result.message}); the "
            f"gradient of a non-optimal LP means nothing. Check its data, or raise "
            f"iteration_limit / time_limit if it ran out")


def _solve_batch(lps: Sequence[LinearProgram], **options: Any) -> list[LPResult]:
    """The one batched solve of the layer: all of ``lps`` in one block-diagonal PDHG run
    (:func:`l2o.solve_lp_batch`)."""
    from l2o.pdhg import solve_lp_batch  # here: the layer's module stays light to import

    return solve_lp_batch(lps, **options)


class LPLayer(nn.Module):
    r"""Differentiable solutions and optimal values of a batch of LPs of one sparsity pattern.

    Args:
        crow: (m + 1,) CSR row pointers of A's pattern.
        col: (nnz,) CSR column indices (within each row, any order without repeats).
        shape: (m, n).
        tol: relative KKT tolerance of each solve (:func:`l2o.solve_lp`'s ``tol``); the
            gradients are as accurate as the solutions and duals (default 1e-8).
        mode: "value" (exact gradients of the optimal value) or "perturbed" (the perturbed
            optimizer; gradients of the smoothed solution and value with respect to c).
        eps: the perturbation's scale (``mode="perturbed"``), in units of c.
        samples: perturbations per instance (``mode="perturbed"``); the B * samples LPs are
            solved in one batch.
        sense: "minimize" or "maximize", for every LP of the batch.
        device: where the LPs are solved ("auto": CUDA when available).  Inputs and outputs
            stay on their own device.
        seed: None draws the perturbations from torch's global generator (``torch.manual_seed``
            makes a run reproducible); an int draws them from a generator seeded with it at
            every call, so calls with the same batch size share the same Z (common random
            numbers).
        iteration_limit, time_limit: limits of each batched solve (None: none); an LP that hits
            one raises :class:`LPNotOptimalError`.

    Shapes (forward):
        c, col_lower, col_upper: (B, n);  A_values: (B, nnz);  row_lower, row_upper: (B, m).
        Any of them may be 1-D, shared by the whole batch (its gradient is then the sum over
        the batch); if all are 1-D, B = 1 and the outputs are 1-D too.  Infinite bounds are
        allowed; NaN anywhere, an infinite c or A value, lower > upper raise ValueError.
        Returns x (B, n) and the objective (B,) in the LP's own sense, without a constant.

    Gradients:
        ``mode="value"``: the objective c^T x* with respect to every input, exactly
        (:mod:`l2o.diff.value`): x* for c; y*^+, -y*^- for the row bounds; r*^+, -r*^- for the
        column bounds; -y*_i x*_j for A's entry (i, j); all negated except c's for a
        maximization; 0 for an infinite bound.  x* carries no gradient (it is piecewise
        constant in the data).
        ``mode="perturbed"``: x = x_eps(c), the sample mean of x*(c + eps Z_s), and the
        objective F_eps(c), the sample mean of (c + eps Z_s)^T x*(c + eps Z_s), differentiable
        with respect to c only (:mod:`l2o.diff.perturbed`); passing another input that requires
        grad raises ValueError rather than leave its gradient silently 0.

    Raises (forward):
        ValueError (:class:`l2o.lp.InvalidLPError`): shapes that do not fit the pattern, NaN,
            infinite c or A values, invalid bounds, naming the argument and batch index.
        LPNotOptimalError: an LP of the batch that did not end OPTIMAL (index, sample, status).

    Example::

        layer = LPLayer.from_lp(lp, mode="perturbed", eps=0.5, samples=16)
        x, value = layer(c_hat, *LPLayer.lp_inputs(lp)[1:])   # c_hat (B, n) from a model

    References:
        Q. Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020.
    """

    def __init__(self, crow, col, shape, tol: float = 1e-8, mode: str = "value", eps: float = 1.0,
                 samples: int = 32, sense: str = MINIMIZE, device: Any = "auto",
                 seed: int | None = None, iteration_limit: int | None = None,
                 time_limit: float | None = None):
        super().__init__()
        crow, col, shape = _check_pattern(crow, col, shape)
        if mode not in _MODES:
            raise ValueError(f"LPLayer: mode must be one of {_MODES}, got {mode!r}")
        if sense not in (MINIMIZE, MAXIMIZE):
            raise ValueError(f"LPLayer: sense must be 'minimize' or 'maximize', got {sense!r}")
        if not (isinstance(eps, (int, float)) and eps > 0 and eps < float("inf")):
            raise ValueError(f"LPLayer: eps must be a positive finite number, got {eps!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"LPLayer: samples must be a positive int, got {samples!r}")
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"LPLayer: tol must be a positive number, got {tol!r}")
        self.register_buffer("crow", crow, persistent=False)
        self.register_buffer("col", col, persistent=False)
        # the row of each pattern entry, for dV/dA = -y_i x_j
        self.register_buffer("rows", torch.repeat_interleave(
            torch.arange(shape[0]), crow.diff()), persistent=False)
        self.shape = shape
        self.tol, self.mode, self.eps, self.samples = float(tol), mode, float(eps), samples
        self.sense, self.device, self.seed = sense, device, seed
        self.iteration_limit, self.time_limit = iteration_limit, time_limit

    @classmethod
    def from_lp(cls, lp: LinearProgram, **options: Any) -> LPLayer:
        """The layer of ``lp``'s sparsity pattern and sense (``options``: the constructor's)."""
        A = lp.A.to_sparse_csr() if lp.A.layout != torch.sparse_csr else lp.A
        return cls(A.crow_indices(), A.col_indices(), tuple(A.shape),
                   **{"sense": lp.sense, **options})

    @staticmethod
    def lp_inputs(lp: LinearProgram) -> tuple[torch.Tensor, ...]:
        """(c, A_values, row_lower, row_upper, col_lower, col_upper) of ``lp``, 1-D: the
        forward's arguments for this one LP (c in its own sense; its constant c0 is dropped)."""
        A = lp.A.to_sparse_csr() if lp.A.layout != torch.sparse_csr else lp.A
        return (lp.c, A.values(), lp.row_lower, lp.row_upper, lp.col_lower, lp.col_upper)

    def extra_repr(self) -> str:
        m, n = self.shape
        perturbation = f", eps={self.eps:g}, samples={self.samples}" * (self.mode == "perturbed")
        return (f"rows={m}, cols={n}, nnz={self.col.numel()}, mode={self.mode!r}{perturbation}, "
                f"sense={self.sense!r}, tol={self.tol:g}")

    def noise(self, batch: int) -> torch.Tensor:
        """The perturbations Z (batch, samples, n) of a forward with batch size ``batch``
        (float64, CPU): from the generator seeded with ``seed`` at each call, or from torch's
        global generator when ``seed`` is None."""
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        return torch.randn(batch, self.samples, self.shape[1], dtype=torch.float64,
                           generator=generator)

    def forward(self, c, A_values, row_lower, row_upper, col_lower, col_upper
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve the batch; returns (x (B, n), objective (B,)) (class docstring)."""
        inputs, unbatched = self._batch_inputs((c, A_values, row_lower, row_upper, col_lower,
                                                col_upper))
        c, *data = inputs
        if self.mode == "value":
            sign = -1.0 if self.sense == MAXIMIZE else 1.0
            x, value = OptimalValue.apply(self._solver(data, repeats=1), self.rows.to(c.device),
                                          self.col.to(c.device), sign, c, *data)
        else:
            for name, tensor in zip(_DATA, data):
                if tensor.requires_grad:
                    raise ValueError(
                        f"LPLayer(mode='perturbed') differentiates with respect to c only, but "
                        f"{name} requires grad: detach it, or use mode='value' for the "
                        f"optimal value's gradient with respect to it")
            noise = self.noise(c.shape[0]).to(c.device, c.dtype)
            x, value = PerturbedOptimizer.apply(self._solver(data, repeats=self.samples),
                                                self.eps, c, noise)
        return (x[0], value[0]) if unbatched else (x, value)

    # -- inputs -------------------------------------------------------------------------------
    def _batch_inputs(self, args) -> tuple[list[torch.Tensor], bool]:
        """The forward's arguments checked and expanded to (B, size); whether all were 1-D."""
        m, n = self.shape
        names = ("c", *_DATA)
        sizes = (n, self.col.numel(), m, m, n, n)
        tensors = []
        for name, value, size in zip(names, args, sizes):
            t = value if isinstance(value, torch.Tensor) else torch.as_tensor(
                value, dtype=torch.float64)
            if not t.is_floating_point():
                raise InvalidLPError(f"LPLayer: {name} must be a floating-point tensor, got "
                                     f"dtype {t.dtype}")
            if t.dim() not in (1, 2) or t.shape[-1] != size:
                raise InvalidLPError(
                    f"LPLayer: {name} has shape {tuple(t.shape)}, expected ({size},) or "
                    f"(B, {size}) for the pattern's {m} x {n} matrix with "
                    f"{self.col.numel()} nonzeros")
            tensors.append(t)
        batch_sizes = {t.shape[0] for t in tensors if t.dim() == 2}
        if len(batch_sizes) > 1:
            given = ", ".join(f"{name} {tuple(t.shape)}" for name, t in zip(names, tensors))
            raise InvalidLPError(f"LPLayer: the batched inputs disagree on the batch size: "
                                 f"{given}")
        if batch_sizes == {0}:
            raise InvalidLPError("LPLayer: the batch is empty (B = 0)")
        unbatched = not batch_sizes
        batch = batch_sizes.pop() if batch_sizes else 1
        tensors = [t if t.dim() == 2 else t.expand(batch, -1) for t in tensors]
        _check_values(dict(zip(names, tensors)))
        return tensors, unbatched

    # -- the batched solve ----------------------------------------------------------------
    def _solver(self, data: list[torch.Tensor], repeats: int) -> BatchSolve:
        """The batch's :data:`BatchSolve`: row k of its c is an LP with instance k // repeats's
        A values and bounds (``repeats`` perturbation samples per instance)."""
        A_values, row_lower, row_upper, col_lower, col_upper = (
            t.detach().to("cpu", torch.float64) for t in data)
        crow, col = self.crow.cpu(), self.col.cpu()

        def solve(c: torch.Tensor) -> BatchSolution:
            costs = c.detach().to("cpu", torch.float64)
            lps = [LinearProgram(
                c=costs[k], A=csr_tensor(crow, col, A_values[k // repeats], self.shape),
                row_lower=row_lower[k // repeats], row_upper=row_upper[k // repeats],
                col_lower=col_lower[k // repeats], col_upper=col_upper[k // repeats],
                sense=self.sense, name=f"LPLayer[{k // repeats}]") for k in range(len(costs))]
            results = _solve_batch(lps, tol=self.tol, device=self.device,
                                   iteration_limit=self.iteration_limit,
                                   time_limit=self.time_limit)
            for k, result in enumerate(results):
                if result.status != LPStatus.OPTIMAL:
                    raise LPNotOptimalError(k // repeats, k % repeats if repeats > 1 else None,
                                            result)
            stack = lambda field: torch.stack(
                [getattr(result, field) for result in results]).to(c.device, c.dtype)
            return BatchSolution(x=stack("x"), y=stack("y"), reduced_costs=stack("reduced_costs"))

        return solve


def _check_pattern(crow, col, shape) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(crow, col) as int64 CPU tensors and shape as (m, n), checked to form a CSR pattern."""
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"LPLayer: shape must be (rows, cols), got {shape!r}") from None
    if m < 0 or n < 1:
        raise ValueError(f"LPLayer: shape must have rows >= 0 and cols >= 1, got {(m, n)}")
    crow = torch.as_tensor(crow).detach().to("cpu", torch.int64).reshape(-1)
    col = torch.as_tensor(col).detach().to("cpu", torch.int64).reshape(-1)
    if crow.numel() != m + 1 or int(crow[0]) != 0 or int(crow[-1]) != col.numel():
        raise ValueError(f"LPLayer: crow must have m + 1 = {m + 1} entries from 0 to "
                         f"nnz = len(col) = {col.numel()}, got {crow.numel()} entries"
                         + (f" from {int(crow[0])} to {int(crow[-1])}" if crow.numel() else ""))
    if bool((crow.diff() < 0).any()):
        raise ValueError("LPLayer: crow must be non-decreasing")
    if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n):
        raise ValueError(f"LPLayer: col has indices outside [0, {n}): {int(col.min())} to "
                         f"{int(col.max())}")
    rows = torch.repeat_interleave(torch.arange(m), crow.diff())
    if torch.unique(rows * n + col).numel() != col.numel():
        raise ValueError("LPLayer: the pattern repeats an entry (i, j)")
    return crow, col, (m, n)


def _check_values(inputs: dict[str, torch.Tensor]) -> None:
    """NaN anywhere, infinite c or A values, invalid bound pairs: InvalidLPError naming the
    argument, the batch index and the position of the first offender."""
    def first(mask: torch.Tensor) -> tuple[int, int, int]:
        bad = torch.nonzero(mask)
        return bad.shape[0], int(bad[0, 0]), int(bad[0, 1])

    for name in ("c", "A_values"):
        bad = ~torch.isfinite(inputs[name].detach())
        if bool(bad.any()):
            count, b, j = first(bad)
            raise InvalidLPError(f"LPLayer: {name}[{b}, {j}] is {float(inputs[name][b, j])}: "
                                 f"{name} must be finite ({count} entries are not)")
    for kind in ("row", "col"):
        lower, upper = inputs[f"{kind}_lower"].detach(), inputs[f"{kind}_upper"].detach()
        for problem, test in BOUND_PROBLEMS:
            bad = test(lower, upper)
            if bool(bad.any()):
                count, b, j = first(bad)
                raise InvalidLPError(
                    f"LPLayer: {kind} bound [{b}, {j}] has {problem}: [{kind}_lower, "
                    f"{kind}_upper] = [{float(lower[b, j])}, {float(upper[b, j])}] "
                    f"({count} such bounds)")
