"""cuPDLPx's presolver (PSLP) on the CPU, one rule switched off at a time: what it removes and
what the reduced LP costs PDHG, next to :mod:`l2o.lp.gpu_presolve`'s rules.

PSLP is C; build it as a shared library first (it is not a dependency of this project):

    tar xzf ../shared/peer/PSLP-v0.0.8.tar.gz -C /tmp && cd /tmp/PSLP && mkdir build && cd build
    cmake .. -DCMAKE_BUILD_TYPE=Release && make

then, for every ``*.mps.gz`` / ``*.mps`` in the folders, ``--variants`` runs PSLP with its
default settings (``all``, cuPDLPx's), with every rule off (``none``: only its trivial
reductions) and with one rule off (``no_<rule>``), and prints the reduced LP's size, PSLP's
seconds and (``--pdhg TOL``) PDHG's iterations on the reduced LP to TOL (``l2o.solve_lp``, CPU,
float64, its own criterion: PSLP's postsolve is not called).

    python benchmarks/pslp_reduce.py ../shared/data/lp/large --lib /tmp/PSLP/build/libPSLP.so \\
        --only dbir2 fit2p --variants all none no_parallel_rows --pdhg 1e-4
"""

from __future__ import annotations

import argparse
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


class _Presolver(C.Structure):
    _fields_ = [("stats", C.c_void_p), ("stgs", C.c_void_p), ("prob", C.c_void_p),
                ("reduced_prob", C.POINTER(_Reduced)), ("sol", C.c_void_p)]


def load(path: str) -> C.CDLL:
    lib = C.CDLL(path)
    lib.default_settings.restype = C.POINTER(_Settings)
    lib.new_presolver.restype = C.POINTER(_Presolver)
    lib.run_presolver.restype = C.c_uint8
    return lib


def pslp_reduce(lib: C.CDLL, lp, off: tuple[str, ...] = ()):
    """(reduced LinearProgram, seconds of run_presolver) of PSLP with the rules ``off``."""
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
    return reduced, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--lib", required=True, help="libPSLP.so")
    parser.add_argument("--variants", nargs="+", default=["all", "none"],
                        help="all, none or no_<rule> with <rule> in " + ", ".join(RULES))
    parser.add_argument("--pdhg", type=float, metavar="TOL")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    l2o = import_l2o()
    lib = load(args.lib)
    for folder in args.folders:
        for path in sorted([*folder.glob("*.mps.gz"), *folder.glob("*.mps")]):
            name = path.name.split(".")[0]
            if args.only and name not in args.only:
                continue
            lp = l2o.read_lp(path)
            for variant in args.variants:
                off = {"all": (), "none": RULES}.get(variant, (variant.removeprefix("no_"),))
                if any(rule not in RULES for rule in off):
                    raise SystemExit(f"unknown variant {variant!r}")
                reduced, seconds = pslp_reduce(lib, lp, off)
                line = (f"{name:<10} {variant:<22} {reduced.num_rows:>6} x {reduced.num_cols:<7}"
                        f" nnz {reduced.nnz:>8}  {seconds:.3f} s")
                if args.pdhg:
                    res = l2o.solve_lp(reduced, tol=args.pdhg, device="cpu", presolve=False,
                                       iteration_limit=200_000)
                    line += f"  it {res.iterations} ({res.status.value})"
                print(line, flush=True)


if __name__ == "__main__":
    main()
