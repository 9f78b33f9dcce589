"""cuPDLPx's presolver (PSLP) on the CPU next to :mod:`l2o.lp.gpu_presolve`'s rules: what each
removes, what the reduced LP looks like, and what it costs PDHG.

PSLP is C; build it as a shared library first (it is not a dependency of this project):

    tar xzf ../shared/peer/PSLP-v0.0.8.tar.gz -C /tmp && cd /tmp/PSLP && mkdir build && cd build
    cmake .. -DCMAKE_BUILD_TYPE=Release && make

then, for every ``*.mps.gz`` / ``*.mps`` in the folders, each of ``--variants`` reduces the LP:

* ``all``: PSLP with its default settings (cuPDLPx's); ``none``: every PSLP rule off (only its
  trivial reductions); ``no_<rule>``: one rule off; ``only_<rule>+<rule>...``: only those on;
* ``ours``: :func:`l2o.lp.gpu_presolve.gpu_presolve_lp` with its default rules;
  ``ours-<rule>...``: without those rules (``ours-dual_fix-singleton_columns``);
* ``orig``: the LP itself.

It prints the reduced LP's size and PSLP's (or our) seconds; ``--describe`` adds its shape (row
types, column bound types, singletons, ||c||, ||b||; PSLP's nonzeros removed and milliseconds
per rule), and ``--pdhg TOL [TOL ...]`` PDHG's iterations on the reduced LP to each TOL
(``l2o.solve_lp``, CPU, float64, the reduced LP's own criterion, at most ``--limit``
iterations) with the final relative KKT errors and the objective's relative error against
``optimal_values.csv`` (a measure no criterion artifact moves: a reduction that moves costs
around changes ||c|| and so the relative dual criterion). ``--postsolve`` maps that point back
by the variant's own postsolve (PSLP's ``postsolve`` with the solver's reduced costs, as
cuPDLPx calls it, or ours) and prints its relative KKT errors on the original LP: whether the
reduced LP's tolerance holds on the LP that was given.

    python benchmarks/pslp_reduce.py ../shared/data/lp/large --lib /tmp/PSLP/build/libPSLP.so \\
        --only nsct2 --variants all ours none no_ston_cols no_dual_fix --pdhg 1e-4 --describe \\
        --postsolve
"""

from __future__ import annotations

import argparse
import csv
import ctypes as C
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o

RULES = ("ston_cols", "dton_eq", "parallel_rows", "parallel_cols", "primal_propagation",
         "dual_fix")


class _Settings(C.Structure):   # PSLP_API.h, v0.0.8
    _fields_ = [*((name, C.c_bool) for name in (
        "ston_cols", "dton_eq", "parallel_rows", "parallel_cols", "primal_propagation",
        "finite_bound_tightening", "dual_fix", "relax_bounds")),
        ("max_shift", C.c_int), ("max_time", C.c_double), ("verbose", C.c_bool)]


class _Reduced(C.Structure):
    _double = C.POINTER(C.c_double)
    _fields_ = [("Ax", _double), ("Ai", C.POINTER(C.c_int)), ("Ap", C.POINTER(C.c_int)),
                ("m", C.c_size_t), ("n", C.c_size_t), ("nnz", C.c_size_t), ("lhs", _double),
                ("rhs", _double), ("c", _double), ("lbs", _double), ("ubs", _double),
                ("obj_offset", C.c_double)]


class _Stats(C.Structure):   # PSLP_stats.h, v0.0.8
    _fields_ = [*((name, C.c_size_t) for name in (
        "n_rows_original", "n_cols_original", "nnz_original", "n_rows_reduced",
        "n_cols_reduced", "nnz_reduced", "nnz_removed_trivial", "nnz_removed_fast",
        "nnz_removed_primal_propagation", "nnz_removed_parallel_rows",
        "nnz_removed_parallel_cols")),
        *((name, C.c_double) for name in (
            "time_init", "time_fast_reductions", "time_medium_reductions", "time_ston_cols",
            "time_dton_rows", "time_primal_propagation", "time_parallel_rows",
            "time_parallel_cols", "time_presolve", "time_postsolve"))]


class _Solution(C.Structure):   # PSLP_sol.h
    _double = C.POINTER(C.c_double)
    _fields_ = [("x", _double), ("y", _double), ("z", _double), ("dim_x", C.c_size_t),
                ("dim_y", C.c_size_t)]


class _Presolver(C.Structure):
    _fields_ = [("stats", C.POINTER(_Stats)), ("stgs", C.c_void_p), ("prob", C.c_void_p),
                ("reduced_prob", C.POINTER(_Reduced)), ("sol", C.POINTER(_Solution))]


def load(path: str) -> C.CDLL:
    lib = C.CDLL(path)
    lib.default_settings.restype = C.POINTER(_Settings)
    lib.new_presolver.restype = C.POINTER(_Presolver)
    lib.run_presolver.restype = C.c_uint8
    lib.postsolve.argtypes = [C.POINTER(_Presolver), *[C.POINTER(C.c_double)] * 3]
    lib.postsolve.restype = None
    lib.free_presolver.argtypes = [C.POINTER(_Presolver)]
    lib.free_presolver.restype = None
    return lib


def _doubles(v) -> np.ndarray:
    return np.ascontiguousarray(torch.as_tensor(v).detach().to("cpu", torch.float64).numpy())


class PslpReduced:
    """PSLP's presolver after ``run_presolver``: its seconds and per-rule statistics, and
    :meth:`postsolve` (once: PSLP's postsolve consumes its record). Freed with the object."""

    def __init__(self, lib: C.CDLL, presolver, seconds: float):
        self._lib, self._presolver, self.seconds = lib, presolver, seconds
        st = presolver.contents.stats.contents
        self.stats = {name: getattr(st, name) for name, _ in _Stats._fields_}

    def rule_summary(self) -> str:
        s = self.stats
        removed = ", ".join(f"{rule} {s['nnz_removed_' + rule]}" for rule in (
            "trivial", "fast", "primal_propagation", "parallel_rows", "parallel_cols"))
        times = ", ".join(f"{rule} {s['time_' + rule] * 1e3:.1f}" for rule in (
            "fast_reductions", "ston_cols", "dton_rows", "primal_propagation",
            "parallel_rows", "parallel_cols"))
        return f"    PSLP nnz removed by: {removed}\n    PSLP ms: {times}"

    def postsolve(self, x, y, z) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, z) of the original LP from a point of the reduced one (z: its reduced costs
        c - A^T y, the minimization-form convention: PSLP's and ours)."""
        arrays = [_doubles(v) for v in (x, y, z)]
        pointer = lambda a: a.ctypes.data_as(C.POINTER(C.c_double))
        self._lib.postsolve(self._presolver, *map(pointer, arrays))
        sol = self._presolver.contents.sol.contents
        copy = lambda p, k: torch.from_numpy(np.ctypeslib.as_array(p, shape=(k,)).copy())
        return (copy(sol.x, sol.dim_x), copy(sol.y, sol.dim_y), copy(sol.z, sol.dim_x))

    def __del__(self):
        self._lib.free_presolver(self._presolver)


def pslp_reduce(lib: C.CDLL, lp, off: tuple[str, ...] = ()):
    """(reduced LinearProgram, :class:`PslpReduced`) of PSLP with the rules ``off``."""
    l2o = import_l2o()
    settings = lib.default_settings()
    settings.contents.verbose = False
    for rule in off:
        setattr(settings.contents, rule, False)
    A = lp.scipy_matrix().tocsr()
    c, c0 = lp.minimize_c
    arrays = [np.ascontiguousarray(a) for a in (
        A.data.astype(np.float64), A.indices.astype(np.int32), A.indptr.astype(np.int32),
        lp.row_lower.numpy(), lp.row_upper.numpy(), lp.col_lower.numpy(), lp.col_upper.numpy(),
        c.numpy())]
    pointer = lambda a: a.ctypes.data_as(C.POINTER(C.c_int if a.dtype == np.int32
                                                   else C.c_double))
    presolver = lib.new_presolver(*map(pointer, arrays[:3]), C.c_size_t(lp.num_rows),
                                  C.c_size_t(lp.num_cols), C.c_size_t(A.nnz),
                                  *map(pointer, arrays[3:]), settings)
    start = time.perf_counter()
    lib.run_presolver(presolver)
    seconds = time.perf_counter() - start
    r = presolver.contents.reduced_prob.contents
    copy = lambda p, k, dtype: np.ctypeslib.as_array(p, shape=(k,)).astype(dtype)
    import scipy.sparse as sp

    matrix = sp.csr_matrix((copy(r.Ax, r.nnz, np.float64), copy(r.Ai, r.nnz, np.int64),
                            copy(r.Ap, r.m + 1, np.int64)), shape=(r.m, r.n))
    reduced = l2o.LinearProgram.create(
        copy(r.c, r.n, np.float64), matrix, copy(r.lhs, r.m, np.float64),
        copy(r.rhs, r.m, np.float64), copy(r.lbs, r.n, np.float64),
        copy(r.ubs, r.n, np.float64), c0=r.obj_offset + c0)
    if lp.sense == "maximize":   # PSLP reduced min c^T x: back to the LP's own sense
        reduced = l2o.LinearProgram.create(
            -reduced.c, reduced.A, reduced.row_lower, reduced.row_upper, reduced.col_lower,
            reduced.col_upper, c0=-reduced.c0, sense="maximize")
    return reduced, PslpReduced(lib, presolver, seconds)


def describe(lp) -> str:
    """The shape of an LP in one paragraph: row types, column bound types, singletons, norms."""
    A = lp.scipy_matrix().tocsr()
    rl, ru, cl, cu = (v.numpy() for v in (lp.row_lower, lp.row_upper, lp.col_lower,
                                          lp.col_upper))
    c = lp.minimize_c[0].numpy()
    row_len = np.diff(A.indptr)
    col_len = np.bincount(A.indices, minlength=lp.num_cols)
    eq = rl == ru
    has_l, has_u, has_cl, has_cu = (np.isfinite(v) for v in (rl, ru, cl, cu))
    b = np.concatenate([rl[has_l], ru[has_u & ~eq]])
    return (f"    rows: {eq.sum()} equalities, {(~eq & has_l & has_u).sum()} ranged, "
            f"{(has_l & ~has_u).sum()} >=, {(~has_l & has_u).sum()} <=, "
            f"{(~has_l & ~has_u).sum()} free; {(row_len == 1).sum()} singletons, "
            f"{((row_len == 2) & eq).sum()} doubleton equations\n"
            f"    cols: {(~has_cl & ~has_cu).sum()} free, {(has_cl & ~has_cu).sum()} lower only, "
            f"{(~has_cl & has_cu).sum()} upper only, {(has_cl & has_cu).sum()} boxed; "
            f"{(col_len == 1).sum()} singletons, {(c != 0).sum()} with a cost\n"
            f"    ||c|| {np.linalg.norm(c):.4g}, ||b|| {np.linalg.norm(b):.4g}, c0 {lp.c0:.6g}")


def worst_columns(lp, res, k: int) -> str:
    """max |y| of a PDHG point and the ``k`` columns of the largest dual residual
    |c_j - a_j^T y - r_j| (r: the solver's reduced costs), each with x_j, c_j, its bounds and
    its number of nonzeros."""
    A = lp.scipy_matrix().tocsc()
    c = lp.minimize_c[0].numpy()
    residual = c - A.T @ res.y.numpy() - res.reduced_costs.numpy()
    lines = [f"    max |y| {float(res.y.abs().max()):.3g}, ||c|| {np.linalg.norm(c):.3g}"]
    for j in np.argsort(-np.abs(residual))[:k]:
        lines.append(f"    column {j}: residual {residual[j]:.3g}, x {float(res.x[j]):.3g}, "
                     f"c {c[j]:.3g}, bounds [{float(lp.col_lower[j]):.3g}, "
                     f"{float(lp.col_upper[j]):.3g}], {A.indptr[j + 1] - A.indptr[j]} nonzeros")
    return "\n".join(lines)


def reduce(lib, lp, variant: str):
    """(reduced LP, seconds, presolver) of one variant (module docstring); the presolver (a
    :class:`PslpReduced` or a :class:`l2o.lp.gpu_presolve.GpuPresolved`, None for ``orig`` or
    nothing removed) maps the reduced LP's point back."""
    from l2o.lp.gpu_presolve import DEFAULT_RULES, gpu_presolve_lp

    if variant == "orig":
        return lp, 0.0, None
    if variant == "ours" or variant.startswith("ours-"):
        without = variant.split("-")[1:]
        unknown = set(without) - set(DEFAULT_RULES)
        if unknown:
            raise SystemExit(f"unknown rules {sorted(unknown)} in {variant!r}")
        pre = gpu_presolve_lp(lp, device="cpu",
                              rules=tuple(r for r in DEFAULT_RULES if r not in without))
        if pre.reduced is None:
            return lp, pre.time_s, None
        return pre.reduced, pre.time_s, pre
    if lib is None:
        raise SystemExit(f"variant {variant!r} needs --lib")
    if variant.startswith("only_"):
        on = variant.removeprefix("only_").split("+")
        off = tuple(rule for rule in RULES if rule not in on)
    else:
        on = ()
        off = {"all": (), "none": RULES}.get(variant, (variant.removeprefix("no_"),))
    if any(rule not in RULES for rule in (*off, *on)):
        raise SystemExit(f"unknown variant {variant!r}")
    reduced, pslp = pslp_reduce(lib, lp, off)
    return reduced, pslp.seconds, pslp


def postsolved_kkt(lp, pre, res) -> str:
    """The relative KKT errors, on the original LP (float64), of the reduced LP's PDHG point
    mapped back by the presolver's own postsolve (the solver's reduced costs carried along)."""
    from l2o.lp.kkt import point_kkt

    if pre is None:
        return ""
    if isinstance(pre, PslpReduced):
        x, y, r = pre.postsolve(res.x, res.y, res.reduced_costs)
    else:
        x, y, r, _ = pre.postsolve(res.x, res.y, res.reduced_costs)
    k = point_kkt(lp, x, y, r)
    e = k.errors
    return (f"    postsolved on the original LP: primal {e['rel_primal_residual']:.1e} dual "
            f"{e['rel_dual_residual']:.1e} gap {e['rel_gap']:.1e} (objective {k.objective:.10g})")


def _optima(folder: Path) -> dict[str, float]:
    path = folder / "optimal_values.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["name"]: float(row["optimal_objective"]) for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--lib", help="libPSLP.so (needed by the PSLP variants)")
    parser.add_argument("--variants", nargs="+", default=["all", "none"],
                        help="all, none, no_<rule>, only_<rule>+..., ours, ours-<rule>..., "
                             "orig; PSLP's rules: " + ", ".join(RULES))
    parser.add_argument("--pdhg", type=float, nargs="+", metavar="TOL",
                        help="PDHG on the reduced LP to each TOL (from scratch each)")
    parser.add_argument("--postsolve", action="store_true",
                        help="with --pdhg: the point mapped back by the variant's postsolve "
                             "and its KKT errors on the original LP")
    parser.add_argument("--limit", type=int, default=200_000, help="PDHG iteration limit")
    parser.add_argument("--describe", action="store_true", help="the reduced LPs' shape")
    parser.add_argument("--worst", type=int, default=0, metavar="K",
                        help="with --pdhg: max |y| and the K columns of largest dual residual")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    l2o = import_l2o()
    lib = load(args.lib) if args.lib else None
    for folder in args.folders:
        optima = _optima(folder)
        for path in sorted([*folder.glob("*.mps.gz"), *folder.glob("*.mps")]):
            name = path.name.split(".")[0]
            if args.only and name not in args.only:
                continue
            lp = l2o.read_lp(path)
            for variant in args.variants:
                reduced, seconds, pre = reduce(lib, lp, variant)
                line = (f"{name:<10} {variant:<22} {reduced.num_rows:>6} x {reduced.num_cols:<7}"
                        f" nnz {reduced.nnz:>8}  {seconds:.3f} s")
                print(line, flush=True)
                if args.describe:
                    print(describe(reduced), flush=True)
                    if isinstance(pre, PslpReduced):
                        print(pre.rule_summary(), flush=True)
                for i, tol in enumerate(args.pdhg or []):
                    if i and isinstance(pre, PslpReduced):   # its postsolve runs once
                        reduced, _, pre = reduce(lib, lp, variant)
                    res = l2o.solve_lp(reduced, tol=tol, device="cpu", presolve=False,
                                       iteration_limit=args.limit)
                    k = res.kkt
                    line = (f"    PDHG to {tol:g}: it {res.iterations} ({res.status.value}; primal "
                            f"{k['rel_primal_residual']:.1e} dual {k['rel_dual_residual']:.1e} "
                            f"gap {k['rel_gap']:.1e}")
                    if name in optima:
                        best = optima[name]
                        line += f"; objective error {abs(res.objective - best) / (1 + abs(best)):.1e}"
                    print(line + ")", flush=True)
                    if args.postsolve:
                        print(postsolved_kkt(lp, pre, res), flush=True)
                    if args.worst:
                        print(worst_columns(reduced, res, args.worst), flush=True)


if __name__ == "__main__":
    main()
