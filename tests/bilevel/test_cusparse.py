"""bilevel.linalg.cusparse: cuSPARSE SpMV (CSR_ALG1 / ALG2, analysed once) on fixed buffers (CUDA only, except the
CPU fallback check)."""

import pytest
import scipy.sparse as sp
import torch

from bilevel.linalg.cusparse import available, csr_spmv

needs_cusparse = pytest.mark.skipif(not available("cuda"), reason="needs CUDA and libcusparse")


def random_csr(m, n, seed, dtype, index_dtype, device):
    A = sp.random(m, n, density=0.05, random_state=seed, format="csr")
    A[0, :] = 1.0          # one long row, as PageRank's sum row
    A = A.tocsr()
    crow = torch.as_tensor(A.indptr, dtype=index_dtype, device=device)
    col = torch.as_tensor(A.indices, dtype=index_dtype, device=device)
    val = torch.as_tensor(A.data, dtype=dtype, device=device)
    return torch.sparse_csr_tensor(crow, col, val, size=A.shape)


def test_unknown_algorithm_is_refused():
    from bilevel.linalg.cusparse import CsrSpMV

    A = random_csr(5, 4, 0, torch.float64, torch.int64, "cpu")
    with pytest.raises(ValueError, match="algorithm"):
        CsrSpMV(A, torch.zeros(4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64),
                algorithm="alg9")


def test_cpu_tensors_fall_back_to_torch():
    A = random_csr(5, 4, 0, torch.float64, torch.int64, "cpu")
    assert csr_spmv(A, torch.zeros(4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)) \
        is None


@needs_cusparse
@pytest.mark.parametrize("algorithm", ["alg1", "alg2"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_matches_torch_mv_and_replays_in_a_graph(algorithm, dtype, index_dtype):
    A = random_csr(700, 1100, 1, dtype, index_dtype, "cuda")
    x = torch.randn(1100, dtype=dtype, device="cuda")
    y = torch.full((700,), float("nan"), dtype=dtype, device="cuda")
    spmv = csr_spmv(A, x, y, algorithm=algorithm)
    assert spmv is not None
    spmv()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(y, torch.mv(A, x), rtol=tol, atol=tol)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        spmv()
    x.copy_(torch.randn_like(x))          # new values in the bound buffer
    y.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.allclose(y, torch.mv(A, x), rtol=tol, atol=tol)


@needs_cusparse
def test_alpha_beta():
    A = random_csr(50, 60, 2, torch.float64, torch.int32, "cuda")
    x = torch.randn(60, dtype=torch.float64, device="cuda")
    y0 = torch.randn(50, dtype=torch.float64, device="cuda")
    y = y0.clone()
    csr_spmv(A, x, y, alpha=2.0, beta=-1.0)()
    assert torch.allclose(y, 2.0 * torch.mv(A, x) - y0, rtol=1e-12, atol=1e-12)
