"""The options of :func:`l2o.solve_lp` and their checks.

:class:`SolverOptions` holds the advanced settings (keyword arguments of ``solve_lp``);
:data:`PREPARE_OPTIONS` names those that shape the preparation (:mod:`l2o.pdhg.prepare`), which
a :class:`~l2o.pdhg.prepare.PreparedLP` fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .restart import PrimalWeightParams, RestartParams

__all__ = ["CHECK_EVERY", "CHECK_EVERY_LARGE", "LARGE_LP_NNZ", "POLISH_TOL", "PREPARE_OPTIONS",
           "REPRODUCIBLE_PRODUCTS", "SolverOptions", "check_dtype", "check_polish_tol",
           "default_check_every", "parse_options", "reproducible_options"]

# Iterations between checks.  A check costs about 0.3-0.6 ms on a large LP (its ~50 kernels, the
# one host sync and the host's restart logic): on an H200, checking every 64 iterations put
# 6-9 us on each iteration of 0.26-1.1M-nonzero LPs (35-44 us per iteration; 28-37 us with 200),
# while small LPs stop sooner when checked more often (benchmarks/RESULTS.md, "LP per-iteration
# time on the H200").  cuPDLPx checks every 200.  192 is a multiple of the 16-iteration graph.
CHECK_EVERY = 64
CHECK_EVERY_LARGE = 192
LARGE_LP_NNZ = 100_000


def default_check_every(nnz: int) -> int:
    """Iterations between checks when ``check_every`` is not given: :data:`CHECK_EVERY`, or
    :data:`CHECK_EVERY_LARGE` for LPs with at least :data:`LARGE_LP_NNZ` nonzeros."""
    return CHECK_EVERY_LARGE if nnz >= LARGE_LP_NNZ else CHECK_EVERY


# The relative primal and dual residual feasibility polishing reaches by default
# (``solve_lp(..., polish=True)``, l2o.pdhg.polish).
POLISH_TOL = 1e-8


# torch.mv runs cuSPARSE's CSR_ALG1 with a partition kernel of the matrix on every call (3-4 us
# of 10-15); analysed once, the iteration took 0.75-0.88x the time on the large LPs measured on
# the H200 (benchmarks/lp_profile.py, RESULTS.md "Sparse products analysed once").
SPARSE_PRODUCTS_DEFAULT = "cusparse"
# sparse_products -> the cuSPARSE algorithm (bilevel.linalg.cusparse), None for torch.mv
SPARSE_PRODUCTS = {"torch": None, "cusparse": "alg1", "cusparse-alg2": "alg2"}
# The products of reproducible=True: CSR_ALG2 adds each row in a fixed order, ALG1 does not
REPRODUCIBLE_PRODUCTS = "cusparse-alg2"


@dataclass(frozen=True)
class SolverOptions:
    """Advanced settings of :func:`solve_lp` (pass them as keyword arguments).

    Attributes:
        check_every: iterations between termination checks (one CUDA graph replay); None:
            :func:`default_check_every` of the LP's size.
        ruiz_iterations, geometric_mean_passes, pock_chambolle, bound_objective_rescaling:
            preconditioning (see l2o.pdhg.scaling).
        step_safety: eta = step_safety / ||A~||_2.
        norm_estimate: "auto" (the bound ||A~||_2 <= 1 after Pock-Chambolle scaling, else the power
            iteration) or "power" (always the power iteration).
        power_iterations, power_tolerance: cap and relative tolerance of the power iteration
            for ||A~||_2.
        restart: the restart rule and its thresholds (:class:`~l2o.pdhg.restart.RestartParams`).
        primal_weight: the primal weight's start and its controller's gains
            (:class:`~l2o.pdhg.restart.PrimalWeightParams`).
        warm_start_trial: iterations that a warm start and the cold start both run past their
            first, when the warm start passed the first test, before the solve keeps one
            (:mod:`l2o.pdhg.start`); 0: the first iteration's test alone.  A dropped start
            costs 1 + warm_start_trial iterations, a kept one 1 + warm_start_trial more.
        infeasibility_tolerance: eps of the infeasibility certificates.
        cuda_graph: capture the iterations between checks, and the check, in one CUDA graph.
        cpu_setup_nnz: LPs with fewer nonzeros are scaled and their ||A~||_2 estimated on the
            CPU, then moved. On the H200 the setup on the GPU took 5-11 ms whatever the size
            (83-7e5 nonzeros), on its host (16 threads) ~3 ms plus ~0.3 ms per 1000
            nonzeros: 4.7 against 5.2 ms at 5,758 nonzeros, 15.7 against 6.9 at 49,058
            (benchmarks/RESULTS.md, "The setup of small LPs on the host").
        fused: the iteration's Triton kernels (l2o.pdhg.fused): "auto" (on CUDA when Triton
            imports, else the torch ops; the plan from the row lengths:
            :func:`l2o.pdhg.fused.auto_plan`), True / False (force on / off), or "elementwise" /
            "spmv" / "mixed" (that plan of the kernels; "mixed": A~^T y in the primal kernel,
            A~ x_bar by cuSPARSE, for long rows and short columns).
        sparse_products: how the "elementwise" plan multiplies by A~ and A~^T on CUDA:
            "cusparse" (default: cuSPARSE's CSR_ALG1, the algorithm of ``torch.mv``, analysed
            once per solve by ``cusparseSpMV_preprocess``: :mod:`bilevel.linalg.cusparse`),
            "cusparse-alg2" (its CSR_ALG2, as cuPDLPx without SpMVOp; slower here, but it adds
            in a fixed order: ``solve_lp(reproducible=True)`` uses it) or "torch"
            (``torch.mv``).  The cuSPARSE products fall back to ``torch.mv`` where they cannot
            run.
        profile: fill ``LPResult.timings`` with seconds per setup and solve phase
            (l2o.pdhg.profile; synchronizes the device at each phase boundary).
    """

    check_every: int | None = None
    ruiz_iterations: int = 10
    geometric_mean_passes: int = 0
    pock_chambolle: bool = True
    bound_objective_rescaling: bool = True
    step_safety: float = 0.998
    power_iterations: int = 1000
    power_tolerance: float = 1e-7
    norm_estimate: str = "auto"
    restart: RestartParams = field(default_factory=RestartParams)
    primal_weight: PrimalWeightParams = field(default_factory=PrimalWeightParams)
    warm_start_trial: int = 16
    infeasibility_tolerance: float = 1e-8
    cuda_graph: bool = True
    cpu_setup_nnz: int = 10_000
    fused: Any = "auto"
    sparse_products: str = SPARSE_PRODUCTS_DEFAULT
    profile: bool = False


# The SolverOptions that shape the preparation (scaling and ||A~||_2); a PreparedLP fixes them.
PREPARE_OPTIONS = ("ruiz_iterations", "geometric_mean_passes", "pock_chambolle",
                   "bound_objective_rescaling", "norm_estimate", "power_iterations",
                   "power_tolerance", "cpu_setup_nnz")


def parse_options(where: str, check_every: int | None,
                  advanced: dict[str, Any]) -> SolverOptions:
    """The :class:`SolverOptions` of ``advanced`` (keyword arguments), checked up front.

    Raises:
        TypeError: an unknown option.  ValueError: a bad value (named after ``where``).
    """
    unknown = set(advanced) - set(SolverOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {sorted(unknown)}; "
                        f"see l2o.pdhg.SolverOptions")
    opts = SolverOptions(check_every=check_every, **advanced)
    if opts.norm_estimate not in ("auto", "power"):
        raise ValueError(f"{where}: norm_estimate must be 'auto' or 'power', "
                         f"got {opts.norm_estimate!r}")
    if opts.sparse_products not in SPARSE_PRODUCTS:
        raise ValueError(f"{where}: sparse_products must be one of {tuple(SPARSE_PRODUCTS)}, "
                         f"got {opts.sparse_products!r}")
    if opts.check_every is not None and opts.check_every < 1:
        raise ValueError(f"{where}: check_every must be >= 1")
    if isinstance(opts.warm_start_trial, bool) or not isinstance(opts.warm_start_trial, int) \
            or opts.warm_start_trial < 0:
        raise ValueError(f"{where}: warm_start_trial must be an integer >= 0, "
                         f"got {opts.warm_start_trial!r}")
    if not isinstance(opts.restart, RestartParams):
        raise TypeError(f"{where}: restart must be a l2o.pdhg.restart.RestartParams, "
                         f"got {opts.restart!r}")
    if not isinstance(opts.primal_weight, PrimalWeightParams):
        raise TypeError(f"{where}: primal_weight must be a l2o.pdhg.restart.PrimalWeightParams, "
                        f"got {opts.primal_weight!r}")
    return opts


def check_polish_tol(where: str, polish_tol: Any) -> None:
    """ValueError unless ``polish_tol`` is a positive number (nan included)."""
    if isinstance(polish_tol, bool) or not isinstance(polish_tol, (int, float)) \
            or not polish_tol > 0:
        raise ValueError(f"{where}: polish_tol must be a positive number, got {polish_tol!r}")


def check_dtype(where: str, dtype: Any) -> None:
    """ValueError unless ``dtype`` is torch.float64 or torch.float32."""
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"{where}: dtype must be torch.float64 or torch.float32, got {dtype}")


def reproducible_options(where: str, reproducible: Any, distributed: bool,
                         advanced: dict[str, Any]) -> dict[str, Any]:
    """``advanced`` with the products of ``reproducible=True`` (:data:`REPRODUCIBLE_PRODUCTS`),
    for ``solve_lp`` and ``solve_lp_batch`` to run under
    :func:`l2o.device.fixed_order_algorithms`.

    Raises:
        TypeError: ``reproducible`` not a bool.
        ValueError: ``reproducible`` with ``distributed`` (the sharded products are torch.mv's)
            or with another ``sparse_products``.
    """
    if not isinstance(reproducible, bool):
        raise TypeError(f"{where}: reproducible must be True or False, got {reproducible!r}")
    if distributed:
        raise ValueError(f"{where}: reproducible=True does not combine with distributed (the "
                         f"sharded products are torch.mv's)")
    products = advanced.get("sparse_products", REPRODUCIBLE_PRODUCTS)
    if products != REPRODUCIBLE_PRODUCTS:
        raise ValueError(f"{where}: reproducible=True multiplies by cuSPARSE's fixed-order "
                         f"products (sparse_products={REPRODUCIBLE_PRODUCTS!r}), not "
                         f"{products!r}")
    return {**advanced, "sparse_products": REPRODUCIBLE_PRODUCTS}
