"""``LinearOperator``: a matrix known only through its products.

One type serves both halves of the library: the inner Hessian of a bilevel
problem (``from_hvp``, vectors are a model's parameter dict) and the constraint
matrix of a linear program (``from_sparse``, ||A||_2 for the PDHG step size).
Solvers accept either a ``LinearOperator`` or a plain callable ``v -> A v``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from . import tree
from .hvp import hvp_closure
from .tree import Tree

__all__ = ["LinearOperator", "as_operator", "csr_row_indices", "csr_tensor", "to_torch_csr",
           "transpose_csr", "transpose_order"]

_INT32_MAX = 2**31 - 1


class LinearOperator:
    """A linear map given by ``matvec`` (and optionally ``rmatvec`` for A^T).

    Args:
        matvec: v -> A v (tensors, or dicts of tensors).
        rmatvec: u -> A^T u; needed for singular values (``power_iteration(mode="svd")``).
        shape: (m, n), the number of entries of outputs and inputs.
        like: an example input vector (tensor or dict); lets power iteration draw
            a random start of the right structure, dtype and device.

    ``A @ v`` and ``A(v)`` both call ``matvec``; ``A.T`` is the adjoint operator.
    """

    def __init__(self, matvec: Callable[[Tree], Tree], rmatvec: Callable[[Tree], Tree] | None = None,
                 shape: tuple[int, int] | None = None, *, like: Tree | None = None,
                 like_out: Tree | None = None) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
        self._matvec = matvec
        self._rmatvec = rmatvec
        self.shape = tuple(shape) if shape is not None else None
        self.like = like
        self.like_out = like_out if like_out is not None else like
        self.rebuild: Callable[[], LinearOperator] | None = None

    # -- products ---------------------------------------------------------
    def matvec(self, v: Tree) -> Tree:
        return self._matvec(v)

    def rmatvec(self, u: Tree) -> Tree:
        if self._rmatvec is None:
            raise NotImplementedError("this LinearOperator has no rmatvec (A^T u); pass rmatvec=")
        return self._rmatvec(u)

    __call__ = matvec

    def __matmul__(self, v: Tree) -> Tree:
        return self._matvec(v)

    @property
    def T(self) -> LinearOperator:
        shape = None if self.shape is None else (self.shape[1], self.shape[0])
        return LinearOperator(self.rmatvec, self._matvec, shape, like=self.like_out,
                              like_out=self.like)

    def __repr__(self) -> str:
        return f"LinearOperator(shape={self.shape})"

    # -- constructors -----------------------------------------------------
    @classmethod
    def from_dense(cls, M: torch.Tensor) -> LinearOperator:
        """The operator v -> M v of a dense (m, n) matrix; A^T u = M^T u."""
        if M.ndim != 2:
            raise ValueError(f"from_dense needs a 2-D matrix, got shape {tuple(M.shape)}")
        like = torch.empty(M.shape[1], dtype=M.dtype, device=M.device)
        like_out = torch.empty(M.shape[0], dtype=M.dtype, device=M.device)
        return cls(lambda v: M @ v, lambda u: M.mT @ u, tuple(M.shape), like=like, like_out=like_out)

    @classmethod
    def from_sparse(cls, A: Any, *, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> LinearOperator:
        """The operator of a sparse matrix, with A^T cached as its own CSR matrix.

        Args:
            A: torch sparse (CSR, CSC or COO) or scipy.sparse matrix, shape (m, n).
            device, dtype: where and in which precision to keep it (default: A's own).

        CSR SpMV reads each row's entries contiguously; A^T v through the same CSR
        would scatter, so the transpose is stored as a second CSR matrix (twice the
        memory, same speed both ways).  Indices are int32 when the sizes allow it:
        half the index bytes, and SpMV is memory bound.
        """
        return cls.from_csr(to_torch_csr(A, device=device, dtype=dtype))

    @classmethod
    def from_csr(cls, csr: torch.Tensor, csr_t: torch.Tensor | None = None, *,
                 row: torch.Tensor | None = None) -> LinearOperator:
        """The operator of a torch sparse CSR matrix, with A^T as its own CSR matrix.

        Args:
            csr: (m, n) torch sparse CSR tensor, used as it is (device, dtype, index width).
            csr_t: its transpose as a CSR tensor when the caller has it (e.g. moved to another
                device); else built by :func:`transpose_csr`.
            row: (nnz,) the row of each entry, when the caller has it (saves recomputing it).

        The operator keeps both matrices as ``op.csr`` and ``op.csr_t``; products are torch.mv.
        """
        if csr_t is None:
            csr_t = transpose_csr(csr, row)
        m, n = csr.shape
        like = torch.empty(n, dtype=csr.dtype, device=csr.device)
        like_out = torch.empty(m, dtype=csr.dtype, device=csr.device)
        op = cls(lambda v: _spmv(csr, v), lambda u: _spmv(csr_t, u), (m, n), like=like,
                 like_out=like_out)
        op.csr, op.csr_t = csr, csr_t
        return op

    @classmethod
    def from_hvp(cls, f: Callable[..., torch.Tensor], x: Tree, *args) -> LinearOperator:
        """The Hessian of a scalar f(x, *args) at x, linearized once.

        Every product reuses one recorded gradient computation (see
        :func:`bilevel.linalg.hvp.hvp_closure`), so a solve of k iterations costs k
        backward passes, not k forward-and-backward passes.  The gradient grad f(x),
        a by-product of the linearization, is ``op.gradient()``.
        """
        return cls.from_linearization(lambda: hvp_closure(f, x, *args, with_gradient=True), x)

    @classmethod
    def from_linearization(cls, linearize: Callable[[], tuple[Callable[[Tree], Tree], Tree]],
                           like: Tree) -> LinearOperator:
        """A symmetric operator whose product is a recorded linearization.

        ``linearize() -> (product, gradient)`` records the computation that every product
        replays (e.g. ``vjp`` of grad f at x) and the gradient it produced on the way; it
        may return a third item, named further backward passes through the same record
        (e.g. the mixed product of :func:`bilevel.linalg.hvp.inner_linearization`), found
        as ``op.hessian_products.extras`` once linearized.  It
        runs on the first product (or ``op.linearize()``), on the current CUDA stream,
        and again for a solver that records CUDA graphs on another stream (autograd
        replays a backward pass on the stream of its forward; see
        :mod:`bilevel.linalg._loop`), through ``op.rebuild()``.
        """
        products = _LazyProducts(linearize, like)
        n = tree.numel(like)
        op = cls(products, products, (n, n), like=like)
        op.hessian_products = products
        op.gradient = products.gradient
        op.rebuild = lambda: cls.from_linearization(linearize, like)
        return op

    def shifted(self, shift: float) -> LinearOperator:
        """A + shift I (a ridge, or damping, of a square operator); A itself when shift = 0.

        Keeps A's linearization hooks (``hessian_products``, ``gradient``, ``rebuild``).
        """
        if shift == 0.0:
            return self
        shift = float(shift)
        base = self

        def product(v: Tree) -> Tree:
            return tree.axpy(shift, v, base.matvec(v))

        op = LinearOperator(product, product, self.shape, like=self.like)
        for attr in ("hessian_products", "gradient"):
            if hasattr(self, attr):
                setattr(op, attr, getattr(self, attr))
        if self.rebuild is not None:
            op.rebuild = lambda: base.rebuild().shifted(shift)
        return op


class _LazyProducts:
    """v -> A v through a linearization recorded on the first product (remembering the
    CUDA stream it was recorded on: autograd replays backward on that stream)."""

    def __init__(self, linearize: Callable[[], tuple[Callable[[Tree], Tree], Tree]],
                 like: Tree) -> None:
        self._linearize, self.like = linearize, like
        self.product: Callable[[Tree], Tree] | None = None
        self._gradient: Tree | None = None
        self.extras: dict[str, Callable] = {}
        self.stream: torch.cuda.Stream | None = None

    def __call__(self, v: Tree) -> Tree:
        self.linearize()
        return self.product(v)

    def gradient(self) -> Tree:
        """The gradient recorded with the linearization (linearizing now if needed)."""
        self.linearize()
        return self._gradient

    def linearize(self) -> None:
        """Record the linearization now (on the current stream), if not done yet."""
        if self.product is None:
            self.product, self._gradient, *extras = self._linearize()
            self.extras = extras[0] if extras else {}
            if tree.like_info(self.like)[1].type == "cuda":
                self.stream = torch.cuda.current_stream()

    def recorded_elsewhere(self) -> bool:
        """True when the linearization exists and belongs to another CUDA stream."""
        return self.stream is not None and self.stream != torch.cuda.current_stream()


def as_operator(A: LinearOperator | Callable[[Tree], Tree] | torch.Tensor) -> LinearOperator:
    """Accept a LinearOperator, a callable matvec, or a dense matrix."""
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, torch.Tensor):
        if A.layout == torch.strided:
            return LinearOperator.from_dense(A)
        return LinearOperator.from_sparse(A)
    if callable(A):
        return LinearOperator(A)
    raise TypeError(f"expected a LinearOperator, a callable or a matrix, got {type(A).__name__}")


# ---------------------------------------------------------------------------
# sparse helpers

def to_torch_csr(A: Any, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch sparse CSR tensor (int32 indices where sizes allow) from torch or scipy sparse."""
    if isinstance(A, torch.Tensor):
        if A.layout == torch.strided:
            raise TypeError("from_sparse needs a sparse matrix; use from_dense for a dense one")
        if A.layout != torch.sparse_csr:
            A = A.to_sparse_csr() if A.layout != torch.sparse_coo else A.coalesce().to_sparse_csr()
        crow, col, val = A.crow_indices(), A.col_indices(), A.values()
        shape = tuple(A.shape)
    else:
        try:
            import scipy.sparse as sp
        except ImportError as exc:  # pragma: no cover
            raise TypeError(f"unsupported matrix type {type(A).__name__}") from exc
        if not sp.issparse(A):
            raise TypeError(f"from_sparse needs a sparse matrix, got {type(A).__name__}")
        A = sp.csr_matrix(A)
        A.sort_indices()
        crow, col, val = (torch.from_numpy(A.indptr), torch.from_numpy(A.indices),
                          torch.from_numpy(A.data))
        shape = A.shape
    index_dtype = torch.int32 if max(shape[0], shape[1], col.numel()) < _INT32_MAX else torch.int64
    device = device if device is not None else val.device
    dtype = dtype if dtype is not None else val.dtype
    return csr_tensor(crow.to(device, index_dtype), col.to(device, index_dtype), val.to(device, dtype), shape)


def transpose_order(col: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How a CSR matrix's entries are laid out in its transpose: (order, crow_t).

    ``order`` (nnz,) int64 is the stable sort of the entries by column (within a column they
    stay in row order), ``crow_t`` (n + 1,) A^T's row pointer, of ``col``'s dtype.  A column's
    entries are then the contiguous slice ``order[crow_t[j]:crow_t[j + 1]]``: column sums and
    A^T come from one sort (no atomics, so the same bits in every run).
    """
    order = torch.sort(col, stable=True).indices
    crow_t = torch.zeros(n + 1, dtype=col.dtype, device=col.device)
    torch.cumsum(torch.bincount(col, minlength=n), 0, out=crow_t[1:])
    return order, crow_t


def transpose_csr(csr: torch.Tensor, row: torch.Tensor | None = None,
                  order: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """A^T as a CSR tensor, keeping the index dtype.

    A stable sort of the entries by column (:func:`transpose_order`, or ``order`` when the
    caller has it): within a column they stay in row order, so A^T is exactly the CSR matrix
    that ``A.t().to_sparse_csr()`` gives (same entries, same order, same SpMV rounding), built
    with one sort instead of torch's CSC-to-CSR conversion (40 ms on an H100 for 8e6
    nonzeros).  ``row`` (nnz,) is the row of each entry if the caller has it.
    """
    m, n = csr.shape
    crow, col, values = csr.crow_indices(), csr.col_indices(), csr.values()
    if row is None:
        row = csr_row_indices(crow, values.numel())
    order, crow_t = transpose_order(col, n) if order is None else order
    return csr_tensor(crow_t.to(crow.dtype), row[order].to(crow.dtype), values[order], (n, m))


def _spmv(csr: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.mv(csr, v) if v.ndim == 1 else csr @ v


def csr_row_indices(crow: torch.Tensor, nnz: int) -> torch.Tensor:
    """The row of every stored entry of a CSR matrix with row pointer ``crow`` (int64, (nnz,)).

    ``nnz`` (= crow[-1]) is passed in so that no device-to-host sync is needed to learn the
    length (the caller has it as ``values.numel()``).
    """
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device),
                                   counts.long(), output_size=nnz)


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape) -> torch.Tensor:
    # Indices come from a valid matrix (scipy or torch), so skip the O(nnz) check;
    # the "beta" notice is noise for users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=shape, check_invariants=False)
