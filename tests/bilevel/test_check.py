"""``bilevel.check_hypergrad`` and ``bilevel.inner_solve`` (dict parameters)."""

from __future__ import annotations

import pytest
import torch
from _bilevel_refs import DT, Ridge, rel
from torch.func import grad

import bilevel


def _dict_ridge():
    """The Ridge problem with y split into a dict {"head": y[:2], "tail": y[2:]} and x a dict
    {"a": x[:3], "b": x[3:]}: the same h, so the same hypergradient."""
    r = Ridge()

    def join(t):
        return torch.cat([t["head"], t["tail"]])

    def joinx(t):
        return torch.cat([t["a"], t["b"]])

    problem = bilevel.BilevelProblem(
        outer=lambda x, y, b: r.outer(joinx(x), join(y)),
        inner=lambda x, y, b: r.inner(joinx(x), join(y)),
        x0={"a": r.x0[:3].clone(), "b": r.x0[3:].clone()},
        y0={"head": torch.zeros(2, dtype=DT), "tail": torch.zeros(3, dtype=DT)})
    return r, problem, joinx, join


def test_inner_solve_dict_parameters():
    r, problem, _, join = _dict_ridge()
    for method in ("newton", "lbfgs"):
        y = bilevel.inner_solve(problem, problem.x0, tol=1e-12, method=method)
        assert set(y) == {"head", "tail"}
        assert rel(join(y), r.y_star(r.x0)) <= 1e-9


def test_inner_solve_reports_failure():
    r, problem, _, _ = _dict_ridge()
    with pytest.raises(bilevel.InnerSolveError, match="grad_y g"):
        bilevel.inner_solve(problem, problem.x0, tol=1e-30, method="lbfgs", max_iter=1)


def test_check_passes_right_and_catches_wrong_hypergradient_with_dicts():
    r, problem, joinx, join = _dict_ridge()

    def forgot_implicit_term(problem, x, y):  # a classic mistake: grad_x f only (here 0)
        return grad(lambda xx: problem.outer(xx, y, None))(x)

    def scaled_wrong(problem, x, y):
        g_x, _ = bilevel.hypergrad(problem, x, y, tol=1e-10)
        return {"a": g_x["a"], "b": 1.01 * g_x["b"]}  # 1% off on two coordinates

    check = bilevel.check_hypergrad(problem, directions=3)
    assert check.ok, str(check)
    assert set(check.engines) == {"cg", "minres"}
    assert max(check.rel_error.values()) <= 1e-6  # float64 differences are this good
    # the differences are those of the exact h
    exact = r.hypergrad(r.x0)
    assert check.inner_grad_norm <= 1e-9
    for name in ("wrong", "slightly"):
        engines = {"cg": {"method": "cg"},
                   name: forgot_implicit_term if name == "wrong" else scaled_wrong}
        check = bilevel.check_hypergrad(problem, directions=4, engines=engines)
        assert not check.ok and check.rel_error["cg"] <= 1e-6
        assert check.rel_error[name] > 1e-3, str(check)
        assert name in str(check) and "FAILED" in str(check)
    assert float(exact.norm()) > 0


def test_check_reports_an_engine_that_raises_and_float32():
    r = Ridge()
    problem = r.problem()

    def broken(problem, x, y):
        raise RuntimeError("boom")

    check = bilevel.check_hypergrad(problem, engines={"broken": broken}, directions=1)
    assert not check.ok and "boom" in check.notes["broken"]
    p32 = bilevel.BilevelProblem(outer=lambda x, y, b: (y * y).sum() + (x * x).sum(),
                                 inner=lambda x, y, b: ((y - x) ** 2).sum(),
                                 x0=torch.ones(3), y0=torch.zeros(3))
    with pytest.warns(RuntimeWarning, match="float64"):
        bilevel.check_hypergrad(p32, directions=1, tol=1e-5)
