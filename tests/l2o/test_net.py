"""PDHG-Net: the LP graph, batching, and the network's PDHG special case against PDHG itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from l2o import read_lp
from l2o.datasets import generate
from l2o.lp.model import MAXIMIZE, LinearProgram
from l2o.net import (
    CON,
    EDGE,
    REVERSE_EDGE,
    VAR,
    PDHGNet,
    graph_operator,
    lp_to_graph,
    signed_operator,
    unscale_solution,
)
from l2o.pdhg import pdhg_step

AFIRO = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib" / "afiro.mps.gz"
inf = float("inf")


def tiny_lp(sense: str = "minimize") -> LinearProgram:
    """2 x 3 LP with every row type but 'free' and mixed column bounds.

    rows: r0: 1 <= x0 + 2 x1 <= 1 (equality), r1: -1 <= 3 x1 - x2 <= 4 (ranged),
          r2: x0 + x2 >= 0.5, r3: x1 <= 2, r4: free (x0 - x1).
    """
    A = sp.csr_matrix(np.array([[1.0, 2, 0], [0, 3, -1], [1, 0, 1], [0, 1, 0], [1, -1, 0]]))
    return LinearProgram.create([1.0, -2.0, 0.5], A, [1, -1, 0.5, -inf, -inf], [1, 4, inf, 2, inf],
                                [0, -inf, -1], [inf, 5, 1], sense=sense, name="tiny")


def reference_pdhg(lp, x, y, tau, sigma, steps):
    """Plain PDHG written straight from pdhg_math.md (dense, float64)."""
    c, _ = lp.minimize_c
    A = lp.A.to_dense()
    lc, uc, lr, ur = lp.col_lower, lp.col_upper, lp.row_lower, lp.row_upper
    for _ in range(steps):
        x_new = torch.minimum(torch.maximum(x - tau * (c - A.T @ y), lc), uc)
        x_bar = 2 * x_new - x
        w = y - sigma * (A @ x_bar)
        y = w - sigma * torch.minimum(torch.maximum(w / sigma, -ur), -lr)
        x = x_new
    return x, y


def test_graph_fields_features_and_edges():
    lp = tiny_lp()
    g = lp_to_graph(lp, x_star=[1, 0, 0], y_star=torch.zeros(5))
    assert g[VAR].num_nodes == 3 and g[CON].num_nodes == 5
    torch.testing.assert_close(g[VAR].c, lp.c)
    torch.testing.assert_close(g[VAR].upper, lp.col_upper)          # inf kept in the raw vectors
    # variable features: [c, enc(l), enc(u), has_l, has_u]
    torch.testing.assert_close(g[VAR].x, torch.tensor(
        [[1.0, 0, 0, 1, 0], [-2, 0, 5, 0, 1], [0.5, -1, 1, 1, 1]], dtype=torch.float64))
    # constraint features: [enc(l), enc(u), eq, >=, <=, ranged, free]
    torch.testing.assert_close(g[CON].x, torch.tensor(
        [[1.0, 1, 1, 0, 0, 0, 0], [-1, 4, 0, 0, 0, 1, 0], [0.5, 0, 0, 1, 0, 0, 0],
         [0, 2, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1]], dtype=torch.float64))
    assert torch.isfinite(g[VAR].x).all() and torch.isfinite(g[CON].x).all()
    dense = torch.zeros(5, 3, dtype=torch.float64)
    dense[g[EDGE].edge_index[0], g[EDGE].edge_index[1]] = g[EDGE].edge_attr[:, 0]
    torch.testing.assert_close(dense, lp.A.to_dense())
    assert torch.equal(g[REVERSE_EDGE].edge_index, g[EDGE].edge_index.flip(0))
    assert abs(float(g.a_norm) - np.linalg.norm(lp.A.to_dense().numpy(), 2)) < 1e-3
    torch.testing.assert_close(g[VAR].solution, torch.tensor([1.0, 0, 0], dtype=torch.float64))
    with pytest.raises(ValueError, match="y_star has 2 entries, expected 5"):
        lp_to_graph(lp, y_star=[0.0, 0.0])


def test_graph_of_maximization_holds_the_minimization_form():
    g = lp_to_graph(tiny_lp(MAXIMIZE))
    torch.testing.assert_close(g[VAR].c, -tiny_lp().c)
    assert bool(g.maximize)


def test_batching_shifts_constraint_and_variable_indices_separately():
    lps = [tiny_lp(), generate("setcover", rows=12, cols=20, density=0.2),
           generate("auction", items=6, bids=9)]
    graphs = [lp_to_graph(lp) for lp in lps]
    batch = Batch.from_data_list(graphs)
    A, AT = graph_operator(batch)
    block = sp.block_diag([lp.A.to_dense().numpy() for lp in lps]).toarray()
    np.testing.assert_array_equal(A.to_dense().numpy(), block)
    np.testing.assert_array_equal(AT.to_dense().numpy(), block.T)
    assert batch[VAR].batch.tolist() == sum(([k] * lp.num_cols for k, lp in enumerate(lps)), [])
    loader = DataLoader(graphs, batch_size=2)
    assert [b.num_graphs for b in loader] == [2, 1]


def afiro() -> LinearProgram:
    return read_lp(AFIRO)


@pytest.mark.parametrize("with_start", [False, True])
def test_from_pdhg_equals_reference_pdhg_on_afiro(with_start):
    lp = afiro()
    g = lp_to_graph(lp)
    tau = sigma = 0.9 / float(g.a_norm)
    K = 40
    x0 = torch.zeros(lp.num_cols, dtype=torch.float64)
    y0 = torch.zeros(lp.num_rows, dtype=torch.float64)
    if with_start:
        gen = torch.Generator().manual_seed(0)
        x0 = torch.rand(lp.num_cols, generator=gen, dtype=torch.float64)
        y0 = torch.randn(lp.num_rows, generator=gen, dtype=torch.float64)
    net = PDHGNet.from_pdhg(K, tau, sigma)
    x, y = net(g, x0, y0) if with_start else net(g)
    x_ref, y_ref = reference_pdhg(lp, x0, y0, tau, sigma, K)
    assert x_ref.abs().max() > 1 and y_ref.abs().max() > 0.1         # the iterates went somewhere
    torch.testing.assert_close(x, x_ref, rtol=1e-8, atol=1e-8 * float(x_ref.abs().max()))
    torch.testing.assert_close(y, y_ref, rtol=1e-8, atol=1e-8 * float(y_ref.abs().max()))


@pytest.mark.parametrize("instance", ["afiro", "afiro-warm", "tiny-max"])
def test_from_pdhg_equals_pdhg_step(instance):
    """The acceptance check: K layers of from_pdhg == K calls of the solver's public step
    (on NETLIB afiro from a cold and a random warm start, and on a maximization LP)."""
    lp = tiny_lp(MAXIMIZE) if instance == "tiny-max" else afiro()
    K, tau, sigma = 60, 0.05, 0.2
    x0 = torch.zeros(lp.num_cols, dtype=torch.float64)
    y0 = torch.zeros(lp.num_rows, dtype=torch.float64)
    if instance == "afiro-warm":
        gen = torch.Generator().manual_seed(2)
        x0 = 10 * torch.rand(lp.num_cols, generator=gen, dtype=torch.float64)
        y0 = torch.randn(lp.num_rows, generator=gen, dtype=torch.float64)
    x, y = x0, y0
    for _ in range(K):
        x, y = pdhg_step(lp, x, y, tau, sigma)
    assert x.abs().max() > 0.1 and y.abs().max() > 0.1
    x_net, y_net = PDHGNet.from_pdhg(K, tau, sigma)(lp_to_graph(lp), x0, y0)
    torch.testing.assert_close(x_net, x, rtol=1e-8, atol=1e-8 * float(x.abs().max()))
    torch.testing.assert_close(y_net, y, rtol=1e-8, atol=1e-8 * float(y.abs().max()))


def test_from_pdhg_on_a_batch_runs_pdhg_on_each_lp():
    lps = [tiny_lp(), tiny_lp(MAXIMIZE), afiro(), generate("facility", customers=4, facilities=3)]
    K, tau, sigma = 25, 0.1, 0.1
    x, y = PDHGNet.from_pdhg(K, tau, sigma)(Batch.from_data_list([lp_to_graph(lp) for lp in lps]))
    xs, ys = [], []
    for lp in lps:
        xr, yr = reference_pdhg(lp, torch.zeros(lp.num_cols, dtype=torch.float64),
                                torch.zeros(lp.num_rows, dtype=torch.float64), tau, sigma, K)
        xs.append(xr)
        ys.append(yr)
    torch.testing.assert_close(x, torch.cat(xs), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, torch.cat(ys), rtol=1e-10, atol=1e-10)


def test_normalized_steps_divide_by_the_operator_norm():
    lp = afiro()
    g = lp_to_graph(lp)
    net = PDHGNet.from_pdhg(10, 0.9, 0.8)
    net.normalize_steps = True
    x, y = net(g)
    norm = float(g.a_norm)
    x_ref, y_ref = reference_pdhg(lp, torch.zeros(32, dtype=torch.float64),
                                  torch.zeros(27, dtype=torch.float64), 0.9 / norm, 0.8 / norm, 10)
    torch.testing.assert_close(x, x_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)


def highs_solution(lp) -> np.ndarray:
    """x* by scipy's HiGHS (rows split into A_ub x <= b_ub and A_eq x = b_eq)."""
    from scipy.optimize import linprog
    A = sp.csr_matrix(lp.A.to_dense().numpy())
    lo, up = lp.row_lower.numpy(), lp.row_upper.numpy()
    eq = lo == up
    ge, le = np.isfinite(lo) & ~eq, np.isfinite(up) & ~eq
    res = linprog(lp.minimize_c[0].numpy(), A_ub=sp.vstack([-A[ge], A[le]]),
                  b_ub=np.concatenate([-lo[ge], up[le]]), A_eq=A[eq], b_eq=lo[eq],
                  bounds=list(zip(lp.col_lower.tolist(), lp.col_upper.tolist())), method="highs")
    assert res.status == 0, res.message
    return res.x


def learned_net(seed: int = 0, **kw) -> PDHGNet:
    torch.manual_seed(seed)
    return PDHGNet(hidden=8, layers=3, **kw).double()


def test_learned_net_batch_equals_graphs_one_by_one():
    lps = [tiny_lp(), generate("setcover", rows=12, cols=20, density=0.2), afiro()]
    graphs = [lp_to_graph(lp) for lp in lps]
    net = learned_net(leak=0.1)
    x, y = net(Batch.from_data_list(graphs))
    x_one, y_one = zip(*(net(g) for g in graphs))
    torch.testing.assert_close(x, torch.cat(x_one), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, torch.cat(y_one), rtol=1e-12, atol=1e-12)
    assert x.shape == (sum(lp.num_cols for lp in lps),)
    assert y.shape == (sum(lp.num_rows for lp in lps),)


def test_learned_net_is_permutation_equivariant():
    """Renumbering variables and constraints renumbers the prediction the same way (a GNN)."""
    lp = generate("setcover", rows=15, cols=25, density=0.2, seed=4)
    gen = torch.Generator().manual_seed(1)
    pc, pr = torch.randperm(25, generator=gen), torch.randperm(15, generator=gen)
    A = sp.csr_matrix(lp.A.to_dense().numpy()[pr.numpy()][:, pc.numpy()])
    permuted = LinearProgram.create(lp.c[pc], A, lp.row_lower[pr], lp.row_upper[pr],
                                    lp.col_lower[pc], lp.col_upper[pc])
    g, gp = lp_to_graph(lp), lp_to_graph(permuted)
    # ||A||_2 comes from a seeded power iteration (start vector not permuted): equal to its tol.
    assert abs(float(g.a_norm) / float(gp.a_norm) - 1) < 1e-3
    net = learned_net(seed=3, normalize_steps=False)
    x, y = net(g)
    xp, yp = net(gp)
    torch.testing.assert_close(xp, x[pc], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(yp, y[pr], rtol=1e-10, atol=1e-10)


def test_learned_net_gradients_reach_every_parameter_and_training_fits():
    lp = generate("facility", customers=5, facilities=3, seed=2)
    g = lp_to_graph(lp, x_star=highs_solution(lp))
    net = learned_net(seed=5, leak=0.05)
    x, y = net(g)
    loss = ((x - g[VAR].solution) ** 2).mean() + (y ** 2).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        x, _ = net(g)
        loss = ((x - g[VAR].solution) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_predict_and_input_errors():
    lp = tiny_lp()
    net = learned_net()
    x, y = net.predict(lp)
    assert x.shape == (3,) and y.shape == (5,) and x.dtype == torch.float64
    assert torch.all(x >= lp.col_lower) and torch.all(x <= lp.col_upper)
    with pytest.raises(ValueError, match="start point has 2 entries"):
        net(lp_to_graph(lp), x0=torch.zeros(2))
    with pytest.raises(ValueError, match="works on unscaled graphs, got a graph built with "
                       "scaling=True"):
        net(lp_to_graph(lp, scaling=True))
    with pytest.raises(ValueError, match="start must be"):
        PDHGNet(start="random")
    with pytest.raises(ValueError, match="tau and sigma must be positive"):
        PDHGNet.from_pdhg(3, 0.0, 1.0)


def graph_dual_objective(graph, y: torch.Tensor) -> torch.Tensor:
    """Dual objective of the graph's LP without c0: sum(l_r y+ - u_r y-) + sum(l_c r+ - u_c r-),
    r = c - A^T y (pdhg_math.md); an infinite bound meets a zero part of y / r at an optimum."""
    var, con = graph[VAR], graph[CON]
    row, col = graph[EDGE].edge_index
    r = var.c.clone().index_add_(0, col, -graph[EDGE].edge_attr[:, 0] * y[row])

    def support(lower, upper, v):
        # dual feasibility: no (more than rounding) weight on an infinite bound
        assert torch.all(v[~torch.isfinite(lower)] < 1e-9)
        assert torch.all(v[~torch.isfinite(upper)] > -1e-9)
        zero = torch.zeros_like(v)
        lo = torch.where((v > 0) & torch.isfinite(lower), lower * v, zero)
        up = torch.where((v < 0) & torch.isfinite(upper), upper * v, zero)
        return (lo + up).sum()
    return support(con.lower, con.upper, y) + support(var.lower, var.upper, r)


@pytest.mark.parametrize("scaling", [False, True])
def test_labels_are_an_optimal_pair_of_the_graphs_lp(scaling):
    """HiGHS's (x*, y*) of afiro, stored through lp_to_graph, is primal feasible with zero
    duality gap for the LP the graph holds (preconditioned or not), and maps back exactly."""
    from l2o.lp.reference import solve_highs
    lp = afiro()
    ref = solve_highs(lp)
    g = lp_to_graph(lp, ref.x, ref.y, scaling=scaling)
    assert bool(g.scaled) == scaling
    x, y = g[VAR].solution, g[CON].solution
    A, _ = graph_operator(g)
    Ax = A @ x
    scale = 1 + float(Ax.abs().max())
    assert torch.all(Ax >= g[CON].lower - 1e-9 * scale)
    assert torch.all(Ax <= g[CON].upper + 1e-9 * scale)
    assert torch.all(x >= g[VAR].lower - 1e-9) and torch.all(x <= g[VAR].upper + 1e-9)
    primal = g[VAR].c @ x
    assert abs(float(graph_dual_objective(g, y) - primal)) < 1e-8 * (1 + abs(float(primal)))
    x_back, y_back = unscale_solution(g, x, y)
    torch.testing.assert_close(x_back, ref.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_back, ref.y, rtol=1e-12, atol=1e-12)
    if scaling:
        assert float(g.a_norm) <= 1 + 1e-6                    # Pock-Chambolle: ||D1 A D2|| <= 1
        assert not torch.allclose(g[VAR].scale, torch.ones_like(g[VAR].scale))
    else:
        assert torch.equal(g[VAR].scale, torch.ones(lp.num_cols, dtype=torch.float64))


def test_scaled_graphs_make_pagerank_step_sizes_size_independent():
    """Unscaled, the row sum x = 1 gives ||A||_2 ~ sqrt(n); preconditioned, ||A~||_2 <= 1."""
    small, large = (generate("pagerank", nodes=n, seed=0) for n in (200, 5000))
    raw = [float(lp_to_graph(lp, reverse=False).a_norm) for lp in (small, large)]
    assert raw[1] / raw[0] > 4                                 # sqrt(5000 / 200) = 5
    scaled = [float(lp_to_graph(lp, reverse=False, scaling=True).a_norm) for lp in (small, large)]
    assert all(0.5 < a <= 1 + 1e-6 for a in scaled)


def test_predict_on_scaled_graphs_maps_back_to_the_lp():
    lp = afiro()
    net = PDHGNet.from_pdhg(30, 0.5, 0.5)
    net.scaling = True                       # PDHG on the preconditioned LP, mapped back
    x, y = net.predict(lp)
    g = lp_to_graph(lp, scaling=True)
    x_s, y_s = reference_pdhg(graph_lp(g), torch.zeros(32, dtype=torch.float64),
                              torch.zeros(27, dtype=torch.float64), 0.5, 0.5, 30)
    x_ref, y_ref = unscale_solution(g, x_s, y_s)
    torch.testing.assert_close(x, torch.clamp(x_ref, lp.col_lower, lp.col_upper))
    torch.testing.assert_close(y, y_ref)


def graph_lp(graph) -> LinearProgram:
    """The LinearProgram a (single) graph holds."""
    A, _ = graph_operator(graph)
    return LinearProgram.create(graph[VAR].c, A, graph[CON].lower, graph[CON].upper,
                                graph[VAR].lower, graph[VAR].upper)


# ---- operator_norm="bound": the preconditioned bound ||A~||_2 <= 1 instead of an estimate -------

def bound_net(K: int = 10, tau: float = 0.9, sigma: float = 0.8) -> PDHGNet:
    """K plain PDHG steps on preconditioned graphs with normalize_steps and the bound."""
    net = PDHGNet.from_pdhg(K, tau, sigma)
    net.scaling, net.normalize_steps, net.operator_norm = True, True, "bound"
    return net


def test_operator_norm_option_is_validated_and_stored():
    assert PDHGNet().operator_norm == "estimate" and PDHGNet().needs_operator_norm
    net = PDHGNet(scaling=True, operator_norm="bound")
    assert net.config["operator_norm"] == "bound" and not net.needs_operator_norm
    assert not PDHGNet(normalize_steps=False).needs_operator_norm
    with pytest.raises(ValueError, match="needs scaling=True"):
        PDHGNet(operator_norm="bound")
    with pytest.raises(ValueError, match="'estimate' or 'bound'"):
        PDHGNet(scaling=True, operator_norm="exact")
    # a configuration saved before the option existed rebuilds the estimating model
    old = {k: v for k, v in PDHGNet(scaling=True).config.items() if k != "operator_norm"}
    assert PDHGNet(**old).operator_norm == "estimate"


def test_bound_model_runs_no_power_iteration_and_takes_the_steps_as_they_are(monkeypatch):
    """With the bound the steps are tau, sigma on A~ (divisor 1); no graph builder on the
    predict path estimates ||A~|| (power_iteration patched to fail)."""
    import l2o.net.graph as graph_module

    def forbidden(*args, **kwargs):
        raise AssertionError("power_iteration called")

    monkeypatch.setattr(graph_module, "power_iteration", forbidden)
    lp = afiro()
    net = bound_net()
    x, y = net.predict(lp)                                 # builds its graph: no estimate
    g = lp_to_graph(lp, scaling=True, operator_norm=net.needs_operator_norm)
    assert float(g.a_norm) == 1.0
    x_s, y_s = reference_pdhg(graph_lp(g), torch.zeros(32, dtype=torch.float64),
                              torch.zeros(27, dtype=torch.float64), 0.9, 0.8, 10)
    x_ref, y_ref = unscale_solution(g, x_s, y_s)
    torch.testing.assert_close(x, torch.clamp(x_ref, lp.col_lower, lp.col_upper))
    torch.testing.assert_close(y, y_ref)
    g.a_norm = torch.tensor([0.5], dtype=torch.float64)   # a graph's a_norm is not read
    torch.testing.assert_close(net(g)[0], net(lp_to_graph(lp, scaling=True,
                                                          operator_norm=False))[0])


def test_estimate_model_still_divides_by_the_graphs_a_norm():
    """The default ("estimate") on a preconditioned graph: steps tau / a_norm, sigma / a_norm,
    with a_norm the power iteration's estimate (< 1 on afiro, so the two options differ)."""
    lp = afiro()
    net = bound_net()
    net.operator_norm = "estimate"
    g = lp_to_graph(lp, scaling=True)
    norm = float(g.a_norm)
    assert norm < 0.999
    x, y = net(g)
    x_ref, y_ref = reference_pdhg(graph_lp(g), torch.zeros(32, dtype=torch.float64),
                                  torch.zeros(27, dtype=torch.float64), 0.9 / norm, 0.8 / norm, 10)
    torch.testing.assert_close(x, x_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(x, bound_net()(g)[0])


# ---- messages="signed": one channel map per sign of A_ij ---------------------------------------

def test_signed_operator_stacks_the_positive_and_negative_parts():
    """[A+ | A-] [Z; Z'] = A+ Z + A- Z' against dense references, on afiro and a matrix with
    an explicit zero, an empty row and rows of one sign; column indices sorted per row."""
    # rows: mixed signs, empty, negative only, positive with a stored zero at column 3 (a stored
    # zero goes to A+, where it changes nothing)
    with_zero = torch.sparse_csr_tensor(
        torch.tensor([0, 3, 3, 5, 8]), torch.tensor([0, 1, 3, 0, 1, 0, 2, 3]),
        torch.tensor([1.0, -2.0, 3.0, -1.0, -4.0, 0.5, 2.0, 0.0], dtype=torch.float64), (4, 4))
    gen = torch.Generator().manual_seed(0)
    for csr in (with_zero, afiro().A.to_sparse_csr()):
        dense = csr.to_dense()
        M, N = dense.shape
        S = signed_operator(csr)
        assert S.shape == (M, 2 * N)
        torch.testing.assert_close(S.to_dense(), torch.cat([dense.clamp(min=0),
                                                            dense.clamp(max=0)], dim=1))
        Z, Z2 = (torch.randn(N, 3, generator=gen, dtype=torch.float64) for _ in range(2))
        torch.testing.assert_close(S @ torch.cat([Z, Z2]),
                                   dense.clamp(min=0) @ Z + dense.clamp(max=0) @ Z2)
        cols, rows = S.col_indices(), S.crow_indices()
        for i in range(M):
            seg = cols[rows[i]:rows[i + 1]]
            assert bool((seg[1:] > seg[:-1]).all()), f"row {i}: columns not sorted"


def _signed_copy_of(plain: PDHGNet) -> PDHGNet:
    """A signed net with the plain net's weights, V_neg = V and M_neg = I: the same function."""
    signed = PDHGNet(**{**plain.config, "messages": "signed"}).double()
    missing, unexpected = signed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".V_neg." in k or ".M_neg." in k for k in missing)
    with torch.no_grad():
        for layer in signed.layers:
            layer.V_neg.weight.copy_(layer.V.weight)
            layer.M_neg.weight.copy_(torch.eye(layer.hidden))
    return signed


def test_signed_net_with_equal_maps_is_the_plain_net_on_a_batch():
    lps = [tiny_lp(), afiro(), generate("pagerank", nodes=60, seed=3)]
    batch = Batch.from_data_list([lp_to_graph(lp) for lp in lps])
    plain = learned_net(seed=7, leak=0.1)
    signed = _signed_copy_of(plain)
    x, y = plain(batch)
    xs, ys = signed(batch)
    torch.testing.assert_close(xs, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ys, y, rtol=1e-12, atol=1e-12)
    # and the negative-entry maps matter: changing one changes the output
    with torch.no_grad():
        signed.layers[0].V_neg.weight.mul_(0.5)
    assert not torch.allclose(signed(batch)[0], x)


def test_signed_net_separates_entries_that_plain_messages_mix():
    """With V_neg = 0 and M_neg = 0 signed layers pass messages along the positive entries
    only: three layers from a zero start equal three PDHG steps on A+ (a different LP)."""
    lp = afiro()
    g = lp_to_graph(lp)
    net = PDHGNet.from_pdhg(3, 0.3, 0.4)
    signed = _signed_copy_of(net)
    with torch.no_grad():
        for layer in signed.layers:
            layer.V_neg.weight.zero_()
            layer.M_neg.weight.zero_()
    A_pos = lp.A.to_dense().clamp(min=0)
    positive_lp = LinearProgram.create(lp.c, sp.csr_matrix(A_pos.numpy()), lp.row_lower,
                                       lp.row_upper, lp.col_lower, lp.col_upper)
    x_ref, y_ref = reference_pdhg(positive_lp, torch.zeros(32, dtype=torch.float64),
                                  torch.zeros(27, dtype=torch.float64), 0.3, 0.4, 3)
    x, y = signed(g)
    torch.testing.assert_close(x, x_ref)
    torch.testing.assert_close(y, y_ref)
    assert not torch.allclose(torch.cat([x, y]), torch.cat(net(g)))


def test_messages_option_is_validated_stored_and_defaults_to_plain():
    assert PDHGNet().messages == "plain" and PDHGNet().config["messages"] == "plain"
    net = PDHGNet(hidden=4, layers=2, messages="signed")
    assert net.config["messages"] == "signed" and net.layers[0].signed
    with pytest.raises(ValueError, match="'plain' or 'signed'"):
        PDHGNet(messages="edge")
    old = {k: v for k, v in net.config.items() if k != "messages"}   # saved before the option
    assert PDHGNet(**old).messages == "plain"
    layer = net.layers[0]
    X, Y = torch.zeros(3, 4), torch.zeros(5, 4)
    A = tiny_lp().A.to_sparse_csr().float()
    with pytest.raises(ValueError, match="must be the signed operators"):   # plain A, AT given
        layer(X, Y, A, A.to_dense().T.to_sparse_csr(), torch.zeros(3), torch.zeros(3),
              torch.ones(3), torch.zeros(5), torch.ones(5))


# ---- normalize: objective and bounds at a fixed root mean square per instance -----------------

def _rms(v: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(v)) / v.numel() ** 0.5


@pytest.mark.parametrize("scaling", [False, True])
def test_normalized_graph_holds_the_same_lp_rescaled(scaling):
    """normalize_graph: rms(c) and rms(b) hit their targets; HiGHS's (x*, y*) stays an optimal
    pair of the graph's LP and maps back exactly; the start's KKT error (kkt_losses) is that of
    the unnormalized graph for the same point of the LP."""
    from l2o.lp.kkt import finite_bound_norm
    from l2o.lp.reference import solve_highs
    from l2o.net import normalize_graph
    from l2o.training.loss import kkt_losses

    lp = afiro()
    ref = solve_highs(lp)
    plain = lp_to_graph(lp, ref.x, ref.y, scaling=scaling)
    g = lp_to_graph(lp, ref.x, ref.y, scaling=scaling, normalize=(2.0, 0.5))
    assert bool(g.normalized) and not hasattr(plain, "normalized")
    assert _rms(g[VAR].c) == pytest.approx(2.0)
    assert float(finite_bound_norm(g[CON].lower, g[CON].upper)) / 27 ** 0.5 == pytest.approx(0.5)
    x, y = g[VAR].solution, g[CON].solution
    A, _ = graph_operator(g)
    Ax = A @ x
    scale = 1 + float(Ax.abs().max())
    assert torch.all(Ax >= g[CON].lower - 1e-9 * scale)
    assert torch.all(x >= g[VAR].lower - 1e-9 * (1 + float(x.abs().max())))
    primal = g[VAR].c @ x
    assert abs(float(graph_dual_objective(g, y) - primal)) < 1e-8 * (1 + abs(float(primal)))
    x_back, y_back = unscale_solution(g, x, y)
    torch.testing.assert_close(x_back, ref.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_back, ref.y, rtol=1e-12, atol=1e-12)
    # the same point of the LP in both graphs' coordinates has the same KKT error
    gen = torch.Generator().manual_seed(0)
    xp = ref.x + 0.1 * torch.randn(32, generator=gen, dtype=torch.float64)
    yp = ref.y + 0.1 * torch.randn(27, generator=gen, dtype=torch.float64)
    in_plain = (xp / plain[VAR].scale, yp / plain[CON].scale)
    in_g = (xp / g[VAR].scale, yp / g[CON].scale)
    torch.testing.assert_close(kkt_losses(*in_g, g), kkt_losses(*in_plain, plain))
    with pytest.raises(ValueError, match="not normalized yet"):
        normalize_graph(g)
    with pytest.raises(ValueError, match="must be positive"):
        normalize_graph(plain, 0.0, 1.0)


def test_normalized_graphs_do_not_shrink_with_the_size():
    """The solver's rescaling halves c~ at 4x the set cover size; normalized, rms(c) is the
    target at both sizes, and so are the typical magnitudes of the features."""
    small = generate("setcover", rows=50, cols=100, density=0.2, seed=0)
    large = generate("setcover", rows=200, cols=400, density=0.05, seed=0)
    plain = [_rms(lp_to_graph(lp, reverse=False, scaling=True, operator_norm=False)[VAR].c)
             for lp in (small, large)]
    assert plain[0] / plain[1] > 1.7                          # theta_c ~ 1 / ||c||: ~ sqrt(4)
    normalized = [lp_to_graph(lp, reverse=False, scaling=True, operator_norm=False,
                              normalize=(1.0, 1.0)) for lp in (small, large)]
    for g in normalized:
        assert _rms(g[VAR].c) == pytest.approx(1.0)
    # the column upper bounds 1 / d2 scaled by k_b: same typical value at both sizes
    means = [float(g[VAR].upper.mean()) for g in normalized]
    assert means[0] == pytest.approx(means[1], rel=0.2)


def test_normalize_option_is_validated_stored_checked_and_used_by_predict():
    """PDHGNet(normalize=...): stored in the config (old configs load without it), refused on a
    graph of the other kind, and predict builds the normalized graph: K PDHG steps on the
    normalized LP, mapped back."""
    assert PDHGNet().normalize is None and PDHGNet().config["normalize"] is None
    with pytest.raises(ValueError, match="two positive root mean squares"):
        PDHGNet(normalize=(1.0, -1.0))
    with pytest.raises(ValueError, match="two positive root mean squares"):
        PDHGNet(normalize=(1.0,))
    net = PDHGNet.from_pdhg(20, 0.5, 0.5)
    net.scaling, net.normalize = True, (1.0, 1.0)
    assert net.graph_options["normalize"] == (1.0, 1.0)
    lp = afiro()
    with pytest.raises(ValueError, match="graphs built with normalize"):
        net(lp_to_graph(lp, scaling=True))
    g = lp_to_graph(lp, scaling=True, normalize=(1.0, 1.0))
    plain_net = PDHGNet.from_pdhg(2, 0.5, 0.5)
    plain_net.scaling = True
    with pytest.raises(ValueError, match="graphs built with normalize"):
        plain_net(g)
    x, y = net.predict(lp)
    x_s, y_s = reference_pdhg(graph_lp(g), torch.zeros(32, dtype=torch.float64),
                              torch.zeros(27, dtype=torch.float64), 0.5, 0.5, 20)
    x_ref, y_ref = unscale_solution(g, x_s, y_s)
    torch.testing.assert_close(x, torch.clamp(x_ref, lp.col_lower, lp.col_upper))
    torch.testing.assert_close(y, y_ref)
    old = {k: v for k, v in PDHGNet(scaling=True).config.items() if k != "normalize"}
    assert PDHGNet(**old).normalize is None
