"""BilevelProblem validation: every bad input gets a clear error naming what and where."""

from __future__ import annotations

import pytest
import torch
from _bilevel_refs import DT, Ridge

import bilevel


def test_valid_problem_and_views():
    r = Ridge()
    prob = r.problem()
    assert prob.first_outer_batch is None and prob.first_inner_batch is None
    assert not prob.stochastic
    assert float(prob.inner_at(None)(prob.x0, prob.y0)) == float(r.inner(r.x0, prob.y0))
    assert "BilevelProblem" in repr(prob)
    # x0 is a detached copy: later edits of the caller's tensor do not leak in
    x0 = r.x0.clone()
    prob = bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=x0,
                                  y0=torch.zeros(r.n, dtype=DT))
    x0.add_(1.0)
    assert not torch.equal(prob.x0, x0)


def test_variables_must_be_floating_tensors_or_dicts():
    r = Ridge()
    with pytest.raises(TypeError, match="x0 must be a tensor or a dict"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=[1.0], y0=torch.zeros(5))
    with pytest.raises(TypeError, match=r"y0\['w'\] must be a real floating"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=r.x0,
                               y0={"w": torch.zeros(5, dtype=torch.int64)})
    with pytest.raises(ValueError, match="empty dict"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0={}, y0=torch.zeros(5))
    with pytest.raises(ValueError, match="mix dtypes"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=r.x0,
                               y0={"a": torch.zeros(2), "b": torch.zeros(3, dtype=DT)})
    with pytest.raises(TypeError, match="callable"):
        bilevel.BilevelProblem(outer=None, inner=r.inner, x0=r.x0, y0=torch.zeros(5, dtype=DT))


def test_nan_in_variables():
    r = Ridge()
    x0 = r.x0.clone()
    x0[1] = float("nan")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=x0, y0=torch.zeros(5, dtype=DT))
    with pytest.raises(ValueError, match=r"y0\['b'\] contains NaN or inf"):
        bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=r.x0,
                               y0={"a": torch.zeros(2, dtype=DT),
                                   "b": torch.tensor([float("inf")], dtype=DT)})


def test_nan_in_data_is_named():
    r = Ridge()
    X = r.X.clone()
    X[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"first batch of inner_data has NaN or inf in batch\[0\]"):
        r.problem(inner_data=[(X, r.t)])


def test_nan_in_closure_data_caught_by_evaluation():
    r = Ridge()
    r.Xv = r.Xv.clone()
    r.Xv[0, 0] = float("nan")
    with pytest.raises(ValueError, match="outer objective f is nan"):
        r.problem()


def test_mismatched_shapes_name_the_objective():
    r = Ridge()
    bad = [(r.X[:, :3], r.t)]  # 3 features for a 5-entry y
    with pytest.raises(ValueError, match=r"inner objective g\(x0, y0, batch\) raised RuntimeError"):
        r.problem(inner_data=bad)
    with pytest.raises(ValueError, match=r"outer objective f\(x0, y0, batch\) raised"):
        r.problem(outer_data=[(r.Xv, r.tv[:4])])


def test_objective_must_return_a_scalar():
    r = Ridge()
    with pytest.raises(ValueError, match="must return a scalar, got shape"):
        bilevel.BilevelProblem(outer=lambda x, y, b: y * 2, inner=r.inner, x0=r.x0,
                               y0=torch.zeros(5, dtype=DT))
    with pytest.raises(TypeError, match="must return a scalar tensor"):
        bilevel.BilevelProblem(outer=lambda x, y, b: 1.0, inner=r.inner, x0=r.x0,
                               y0=torch.zeros(5, dtype=DT))


def test_data_must_be_reiterable_and_nonempty():
    r = Ridge()
    with pytest.raises(ValueError, match="inner_data is empty"):
        r.problem(inner_data=[])
    with pytest.raises(TypeError, match="iterator"):
        r.problem(inner_data=iter([(r.X, r.t)]))
    with pytest.raises(TypeError, match="iterable of batches"):
        r.problem(outer_data=3)
