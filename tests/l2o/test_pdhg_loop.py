"""The solver loop's pure parts on tiny hand-made records: the check statistics record, the
termination function and the restart function (l2o.pdhg.statistics / termination / restart)."""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch

import l2o
from l2o.lp.result import LPStatus
from l2o.pdhg.restart import (
    AnchorError,
    PrimalWeightParams,
    PrimalWeightPID,
    RestartMemory,
    RestartParams,
    RestartRule,
    choose_restart,
)
from l2o.pdhg.statistics import CheckStatistics, RayStatistics
from l2o.pdhg.termination import RAY_CANDIDATES, TerminationCriteria, check_termination

NO_RAY_PRIMAL = RayStatistics(objective=0.0, residual=0.0)    # c^T x_r = 0: certifies nothing
NO_RAY_DUAL = RayStatistics(objective=0.0, residual=0.0)


def record(**changes) -> CheckStatistics:
    """A record far from every stopping rule (residuals 1e-2), with ``changes`` applied."""
    base = CheckStatistics(
        rel_primal_residual=1e-2, rel_dual_residual=1e-2, rel_gap=1e-2, primal_objective=3.0,
        dual_objective=2.9, fixed_point_error=0.5, primal_move=1.0, dual_move=2.0,
        primal_rays=dict.fromkeys(RAY_CANDIDATES, NO_RAY_PRIMAL),
        dual_rays=dict.fromkeys(RAY_CANDIDATES, NO_RAY_DUAL))
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------------------------------------
# the statistics record

def test_record_flat_layout_round_trip():
    values = [float(i) + 0.5 for i in range(CheckStatistics.size())]
    stats = CheckStatistics.from_values(values)
    assert stats.values() == values
    assert stats.rel_primal_residual == 0.5 and stats.dual_move == 7.5
    # the rays follow the 8 scalars: primal (objective, residual) per candidate, then dual
    assert stats.primal_rays["step"] == RayStatistics(8.5, 9.5)
    assert stats.primal_rays["iterate"] == RayStatistics(12.5, 13.5)
    assert stats.dual_rays["step"] == RayStatistics(14.5, 15.5)
    assert stats.dual_rays["iterate"] == RayStatistics(18.5, 19.5)
    # the scalar names are the record's first fields, in order
    names = [f.name for f in dataclasses.fields(CheckStatistics)]
    assert names[:len(CheckStatistics.SCALARS)] == list(CheckStatistics.SCALARS)
    with pytest.raises(ValueError, match="expected 20"):
        CheckStatistics.from_values(values[:-1])


def test_record_finiteness_sees_every_value():
    assert record().is_finite()
    assert not record(rel_gap=math.nan).is_finite()
    rays = {**record().dual_rays, "epoch": RayStatistics(math.inf, 0.0)}
    assert not record(dual_rays=rays).is_finite()


def test_record_progress_dict():
    assert record().progress(128, 0.25) == {
        "iteration": 128, "rel_primal_residual": 1e-2, "rel_dual_residual": 1e-2,
        "rel_gap": 1e-2, "elapsed": 0.25}


# ---------------------------------------------------------------------------------------------
# termination

def statuses(reasons):
    return [(r.status, r.ray) for r in reasons]


def test_optimal_needs_all_three_errors_below_tol():
    criteria = TerminationCriteria(tol=1e-4)
    done = record(rel_primal_residual=1e-5, rel_dual_residual=1e-4, rel_gap=2e-6)
    assert statuses(check_termination(done, criteria, 640, 1.0)) == [(LPStatus.OPTIMAL, None)]
    assert "<= 0.0001 after 640 iterations" in check_termination(done, criteria, 640, 1.0)[0].message
    for name in ("rel_primal_residual", "rel_dual_residual", "rel_gap"):
        assert check_termination(dataclasses.replace(done, **{name: 1.1e-4}), criteria, 640,
                                 1.0) == []


def test_nan_gives_numerical_error_alone():
    criteria = TerminationCriteria(tol=1e-4, iteration_limit=10)
    reasons = check_termination(record(fixed_point_error=math.nan), criteria, 10, 0.0)
    assert statuses(reasons) == [(LPStatus.NUMERICAL_ERROR, None)]


def test_ray_tests_and_their_order():
    eps = 1e-8
    criteria = TerminationCriteria(tol=1e-4, infeasibility_tolerance=eps)
    # dual ray: objective > 0 and residual <= eps * objective
    good_dual = {**record().dual_rays, "epoch": RayStatistics(2.0, 1.9e-8)}
    assert statuses(check_termination(record(dual_rays=good_dual), criteria, 64, 0.0)) == [
        (LPStatus.PRIMAL_INFEASIBLE, "epoch")]
    weak_dual = {**record().dual_rays, "epoch": RayStatistics(2.0, 2.1e-8)}
    assert check_termination(record(dual_rays=weak_dual), criteria, 64, 0.0) == []
    negative = {**record().dual_rays, "epoch": RayStatistics(-2.0, 0.0)}
    assert check_termination(record(dual_rays=negative), criteria, 64, 0.0) == []
    # primal ray: c^T x_r < 0 and violation <= eps |c^T x_r|
    good_primal = {**record().primal_rays, "iterate": RayStatistics(-3.0, 3e-8)}
    assert statuses(check_termination(record(primal_rays=good_primal), criteria, 64, 0.0)) == [
        (LPStatus.DUAL_INFEASIBLE, "iterate")]
    positive = {**record().primal_rays, "iterate": RayStatistics(3.0, 0.0)}
    assert check_termination(record(primal_rays=positive), criteria, 64, 0.0) == []
    # everything at once: optimal, then per candidate dual before primal, then the limits
    limited = TerminationCriteria(tol=1e-4, infeasibility_tolerance=eps, iteration_limit=64,
                                  time_limit=1.0)
    everything = record(rel_primal_residual=0.0, rel_dual_residual=0.0, rel_gap=0.0,
                        dual_rays={**good_dual, "step": RayStatistics(1.0, 0.0)},
                        primal_rays=good_primal)
    assert statuses(check_termination(everything, limited, 64, 2.0)) == [
        (LPStatus.OPTIMAL, None), (LPStatus.PRIMAL_INFEASIBLE, "step"),
        (LPStatus.PRIMAL_INFEASIBLE, "epoch"), (LPStatus.DUAL_INFEASIBLE, "iterate"),
        (LPStatus.ITERATION_LIMIT, None), (LPStatus.TIME_LIMIT, None)]


def test_limits():
    criteria = TerminationCriteria(tol=1e-4, iteration_limit=1000, time_limit=2.5)
    assert check_termination(record(), criteria, 999, 2.4) == []
    assert statuses(check_termination(record(), criteria, 1000, 0.0)) == [
        (LPStatus.ITERATION_LIMIT, None)]
    reasons = check_termination(record(), criteria, 10, 2.5)
    assert statuses(reasons) == [(LPStatus.TIME_LIMIT, None)]
    assert reasons[0].message == "time limit 2.5 s reached after 10 iterations"
    assert check_termination(record(), TerminationCriteria(tol=1e-4), 10**9, 1e9) == []


# ---------------------------------------------------------------------------------------------
# restart

ADAPTIVE = RestartParams(sufficient=0.2, necessary=0.8, artificial=0.36)


def test_first_check_only_records_the_anchor_error():
    reason, memory = choose_restart(ADAPTIVE, RestartMemory(), 0.7, 1)
    assert reason is None
    assert memory == RestartMemory(anchor_error=0.7, previous_error=0.7, epoch_start=0, checks=1)


def test_adaptive_criteria():
    memory = RestartMemory(anchor_error=1.0, previous_error=0.4, epoch_start=900, checks=3)
    # sufficient: r <= 0.2 r(anchor); the new anchor's error is r, the epoch starts now
    reason, after = choose_restart(ADAPTIVE, memory, 0.2, 1000)
    assert reason == "sufficient"
    assert after == RestartMemory(anchor_error=0.2, previous_error=0.2, epoch_start=1000,
                                  checks=4)
    # necessary: r <= 0.8 r(anchor) and r grew since the previous check
    assert choose_restart(ADAPTIVE, memory, 0.5, 1000)[0] == "necessary"
    assert choose_restart(ADAPTIVE, memory, 0.81, 1000)[0] is None
    falling = dataclasses.replace(memory, previous_error=0.6)
    reason, after = choose_restart(ADAPTIVE, falling, 0.5, 1000)
    assert reason is None
    assert after == dataclasses.replace(falling, previous_error=0.5, checks=4)
    # artificial: the epoch is >= 0.36 of all iterations
    assert choose_restart(ADAPTIVE, falling, 0.5, 1406)[0] is None           # 506 < 506.16
    assert choose_restart(ADAPTIVE, falling, 0.5, 1407)[0] == "artificial"   # 507 >= 506.52
    late = dataclasses.replace(falling, epoch_start=640)
    assert choose_restart(ADAPTIVE, late, 0.5, 1000)[0] == "artificial"     # 360 >= 360
    assert choose_restart(ADAPTIVE, late, 0.5, 999)[0] is None               # 359 < 359.64


def test_rules_never_and_every_check():
    memory = RestartMemory(anchor_error=1.0, previous_error=0.4, epoch_start=0, checks=3)
    never = RestartParams(rule=RestartRule.NEVER)
    reason, after = choose_restart(never, memory, 1e-9, 10**6)
    assert reason is None and after.epoch_start == 0 and after.anchor_error == 1.0
    every = RestartParams(rule=RestartRule.EVERY_CHECK)
    reason, after = choose_restart(every, memory, 5.0, 128)
    assert reason == "every_check" and after.epoch_start == 128 and after.anchor_error == 5.0
    with pytest.raises(TypeError, match="RestartRule"):
        RestartParams(rule="adaptive")


def test_restart_rule_reaches_the_solver():
    """The rule is a value the loop uses: sc50a to 1e-6 takes other iteration counts per rule
    (897 adaptive, 577 every check; no restarts: not solved in 20,000)."""
    lp = l2o.load_example("sc50a")
    counts = {}
    for rule in RestartRule:
        res = l2o.solve_lp(lp, tol=1e-6, device="cpu", iteration_limit=20_000,
                           restart=RestartParams(rule=rule))
        counts[rule] = res.iterations
        if rule is not RestartRule.NEVER:
            assert res.status == LPStatus.OPTIMAL, (rule, res.message)
    assert len(set(counts.values())) == 3, counts


def test_new_anchor_measures_the_anchor_error_one_iteration_in():
    """AnchorError.NEW_ANCHOR (cuPDLPx): a restart forgets r, and the next check (the solver runs
    it one iteration into the epoch) records r of the new anchor as the first check does."""
    new_anchor = RestartParams(anchor_error=AnchorError.NEW_ANCHOR)
    memory = RestartMemory(anchor_error=1.0, previous_error=0.4, epoch_start=900, checks=3)
    reason, after = choose_restart(new_anchor, memory, 0.2, 1000)
    assert reason == "sufficient" and after == RestartMemory(epoch_start=1000)
    assert after.measures_anchor and not memory.measures_anchor
    reason, measured = choose_restart(new_anchor, after, 0.15, 1001)
    assert reason is None
    assert measured == RestartMemory(anchor_error=0.15, previous_error=0.15, epoch_start=1000,
                                     checks=1)
    # the artificial criterion counts the epoch from the restart, the measuring iteration in it
    assert choose_restart(new_anchor, measured, 0.14, 1600)[0] == "artificial"   # 600 >= 576
    with pytest.raises(TypeError, match="AnchorError"):
        RestartParams(anchor_error="new_anchor")


def test_anchor_error_reaches_the_solver():
    """With NEW_ANCHOR every restart is followed by a one-iteration chunk: the iteration count
    is no longer 1 + a multiple of check_every, and the solve still reaches its tolerance."""
    lp = l2o.load_example("sc50a")
    plain = l2o.solve_lp(lp, tol=1e-6, device="cpu", check_every=64)
    new = l2o.solve_lp(lp, tol=1e-6, device="cpu", check_every=64,
                       restart=RestartParams(anchor_error=AnchorError.NEW_ANCHOR))
    assert plain.status == new.status == LPStatus.OPTIMAL
    assert (plain.iterations - 1) % 64 == 0
    assert (new.iterations - 1) % 64 != 0


# ---------------------------------------------------------------------------------------------
# the primal weight's start and gains

def test_primal_weight_params_start_the_controller():
    assert PrimalWeightPID.start() == PrimalWeightPID()      # cuPDLPx's: omega 1, 0.99/0.01/0
    pid = PrimalWeightPID.start(PrimalWeightParams(initial=4.0, kp=0.5, ki=0.0))
    assert (pid.weight, pid.best_weight, pid.kp, pid.ki) == (4.0, 4.0, 0.5, 0.0)
    assert PrimalWeightPID.after_warm_start(PrimalWeightParams(initial=4.0)).weight == 4.0
    for bad in (0.0, -1.0, math.inf, math.nan, True):
        with pytest.raises(ValueError, match="initial"):
            PrimalWeightParams(initial=bad)
    with pytest.raises(TypeError, match="PrimalWeightParams"):
        l2o.solve_lp(l2o.load_example("afiro"), device="cpu", primal_weight=4.0)


def test_initial_primal_weight_is_a_bound_rescaling(monkeypatch):
    """omega^0 = f on the LP with theta_b is the solve with omega^0 = 1 and theta_b f: tau / f and
    sigma f on bounds f times larger move x~ / f the same way (the same restarts, the same x)."""
    prepare_module = importlib.import_module("l2o.pdhg.prepare")
    lp = l2o.load_example("sc50a")
    weighted = l2o.solve_lp(lp, tol=1e-6, device="cpu", presolve=False,
                            primal_weight=PrimalWeightParams(initial=4.0))
    plain = l2o.solve_lp(lp, tol=1e-6, device="cpu", presolve=False)
    scale_lp = prepare_module.scale_lp

    def bounds_times_4(*args, **kwargs):
        s = scale_lp(*args, **kwargs)
        return dataclasses.replace(s, col_lower=4 * s.col_lower, col_upper=4 * s.col_upper,
                                   row_lower=4 * s.row_lower, row_upper=4 * s.row_upper,
                                   bound_scale=4 * s.bound_scale)

    monkeypatch.setattr(prepare_module, "scale_lp", bounds_times_4)
    rescaled = l2o.solve_lp(lp, tol=1e-6, device="cpu", presolve=False)
    assert weighted.status == rescaled.status == LPStatus.OPTIMAL
    assert weighted.iterations == rescaled.iterations != plain.iterations
    torch.testing.assert_close(weighted.x, rescaled.x, rtol=1e-9, atol=1e-9)

