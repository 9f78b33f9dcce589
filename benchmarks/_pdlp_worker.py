"""OR-Tools PDLP in a process of its own, for ``benchmarks/pdhgnet_ortools.py``.

OR-Tools and highspy bundle conflicting native libraries and cannot share a process, so the
benchmark writes each LP and its starts to a job file and runs this script on it, with only
numpy, scipy and OR-Tools imported:

    PYTHONPATH=/tmp/ortools_site python benchmarks/_pdlp_worker.py JOB.npz

JOB.npz holds the LP in minimization form

    min c^T x   s.t.   row_lower <= A x <= row_upper,   col_lower <= x <= col_upper

(``A`` as CSC arrays ``A_data``, ``A_indices``, ``A_indptr``, ``A_shape``; infinite bounds as
+-inf), the starts ``x_<name>`` (n,) and ``y_<name>`` (m,) (row duals, y_i >= 0 on an active
lower row bound: PDLP's sign convention and l2o's), and ``settings``, a JSON string:

    {"starts": [name, ...] (a name without x_/y_ arrays: PDLP's own start, x = proj(0), y = 0),
     "tols": [...],
     "eps_absolute": float or null (null: equal to the tolerance), "threads": int,
     "time_limit": seconds per solve, "reps": solves per (tol, start)}

PDLP runs with its defaults except ``num_threads`` and the termination criteria: it stops when,
in l2 norms, |primal obj - dual obj| <= eps_abs + tol (|primal obj| + |dual obj|),
||primal residual|| <= eps_abs + tol ||b|| and ||dual residual|| <= eps_abs + tol ||c||
(``simple_optimality_criteria``; eps_abs = tol is l2o's own relative criterion
tol (1 + ||.||)), or at the time limit.

Prints one JSON line per (tol, start) as it finishes, in that order (tolerances outer):
    {"tol", "start", "iterations", "solve_s" (median wall seconds of the call),
     "pdlp_time_s" (PDLP's own solve_time_sec of that run), "status" (PDLP's termination
     reason without its prefix), "objective" (c^T x of the returned x, minimization form)}
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import scipy.sparse as sp


def load_job(path: str):
    """(QuadraticProgram, starts {name: PrimalAndDualSolution or None}, c, settings)."""
    from ortools.pdlp.python import pdlp

    job = np.load(path)
    settings = json.loads(str(job["settings"]))
    qp = pdlp.QuadraticProgram()
    qp.objective_vector = job["c"]
    qp.constraint_matrix = sp.csc_matrix((job["A_data"], job["A_indices"], job["A_indptr"]),
                                         shape=tuple(job["A_shape"]))
    qp.constraint_lower_bounds = job["row_lower"]
    qp.constraint_upper_bounds = job["row_upper"]
    qp.variable_lower_bounds = job["col_lower"]
    qp.variable_upper_bounds = job["col_upper"]
    starts = {}
    for name in settings["starts"]:
        if f"x_{name}" not in job.files:
            starts[name] = None                     # PDLP's own (cold) start
            continue
        start = pdlp.PrimalAndDualSolution()
        start.primal_solution = job[f"x_{name}"]
        start.dual_solution = job[f"y_{name}"]
        starts[name] = start
    return qp, starts, job["c"], settings


def pdlp_params(tol: float, eps_absolute: float | None, threads: int, time_limit: float):
    """PDLP's default parameters with ``threads`` threads and the termination criteria above."""
    from ortools.pdlp import solvers_pb2

    params = solvers_pb2.PrimalDualHybridGradientParams()
    params.num_threads = threads
    criteria = params.termination_criteria
    criteria.simple_optimality_criteria.eps_optimal_relative = tol
    criteria.simple_optimality_criteria.eps_optimal_absolute = (
        tol if eps_absolute is None else eps_absolute)
    criteria.time_sec_limit = time_limit
    return params


def main(path: str) -> None:
    from ortools.pdlp import solve_log_pb2
    from ortools.pdlp.python import pdlp

    qp, starts, c, settings = load_job(path)
    for tol in settings["tols"]:
        params = pdlp_params(tol, settings["eps_absolute"], settings["threads"],
                             settings["time_limit"])
        for name in settings["starts"]:
            times, result = [], None
            for _ in range(settings["reps"]):
                t = time.perf_counter()
                if starts[name] is None:
                    result = pdlp.primal_dual_hybrid_gradient(qp, params)
                else:
                    result = pdlp.primal_dual_hybrid_gradient(qp, params,
                                                              initial_solution=starts[name])
                times.append(time.perf_counter() - t)
            log = result.solve_log
            reason = solve_log_pb2.TerminationReason.Name(log.termination_reason)
            print(json.dumps({
                "tol": tol, "start": name, "iterations": int(log.iteration_count),
                "solve_s": statistics.median(times), "pdlp_time_s": float(log.solve_time_sec),
                "status": reason.removeprefix("TERMINATION_REASON_"),
                "objective": float(np.dot(c, np.asarray(result.primal_solution)))}),
                flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} JOB.npz")
    main(sys.argv[1])
