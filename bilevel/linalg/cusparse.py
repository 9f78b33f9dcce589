"""y <- alpha A x + beta y for a fixed CSR matrix and fixed vectors, by cuSPARSE analysed once.

torch's sparse CSR ``mv`` calls cuSPARSE's default SpMV (CSR_ALG1) and rebuilds its descriptors
on every call, and ALG1 then partitions the matrix's rows again on every call (a kernel of 3-4 us
on the H200 next to a product of 4-8 us on LPs of 0.25-1.1M nonzeros).  An iterative solver
multiplies the same matrix into the same buffers thousands of times: ``cusparseSpMV_preprocess``
does that analysis once.  ``algorithm="alg1"`` (default) keeps torch's algorithm without the
partition kernel; "alg2" (``CUSPARSE_SPMV_CSR_ALG2``, merge-based and deterministic, what cuPDLPx
calls where cuSPARSE has no SpMVOp) adds a fix-up kernel and was slower on every LP measured
(benchmarks/lp_profile.py).

The binding is a few C calls through ``ctypes`` into the ``libcusparse`` that torch itself
loaded, so nothing is compiled and no package is added.  A :class:`CsrSpMV` holds the
descriptors, the work buffer and references to its tensors; calling it launches one SpMV on
torch's current stream (so it can be captured in a CUDA graph).  Where cuSPARSE cannot be found
or refuses the matrix, :func:`csr_spmv` returns None and callers keep ``torch.mv``.

Shapes: A (m, n) sparse CSR (int32 or int64 indices, float32 or float64 values); x (n,), y (m,)
contiguous, on A's CUDA device, same dtype.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import warnings
from typing import Any

import torch

__all__ = ["CsrSpMV", "available", "csr_spmv"]

# cusparse.h / library_types.h (stable across CUDA 11.x-13.x)
_OPERATION_NON_TRANSPOSE = 0
_INDEX_32I, _INDEX_64I = 2, 3
_INDEX_BASE_ZERO = 0
_CUDA_R_32F, _CUDA_R_64F = 0, 1
_SPMV_CSR_ALG1, _SPMV_CSR_ALG2 = 2, 3
_ALGORITHMS = {"alg1": _SPMV_CSR_ALG1, "alg2": _SPMV_CSR_ALG2}
_STATUS_SUCCESS = 0

_lock = threading.RLock()      # _handle() holds it while it calls _lib()
_library: Any = None            # ctypes.CDLL, False once looked for and not found
_handles: dict[int, ctypes.c_void_p] = {}


def _find_library() -> Any:
    """The libcusparse torch loaded (listed in /proc/self/maps), else the system's, else None."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libcusparse.so" in line})
    except OSError:
        pass
    found = ctypes.util.find_library("cusparse")
    for path in [*paths, *([found] if found else [])]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    return None


def _declare(lib: Any) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    signatures = {
        "cusparseCreate": [ctypes.POINTER(p)],
        "cusparseSetStream": [p, p],
        "cusparseCreateCsr": [ctypes.POINTER(p), i64, i64, i64, p, p, p, i32, i32, i32, i32],
        "cusparseCreateDnVec": [ctypes.POINTER(p), i64, p, i32],
        "cusparseDestroySpMat": [p],
        "cusparseDestroyDnVec": [p],
        "cusparseSpMV_bufferSize": [p, i32, p, p, p, p, p, i32, i32, ctypes.POINTER(ctypes.c_size_t)],
        "cusparseSpMV": [p, i32, p, p, p, p, p, i32, i32, p],
    }
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    try:  # cuSPARSE >= 12.4; without it the matrix is analysed on every call
        lib.cusparseSpMV_preprocess.argtypes = signatures["cusparseSpMV"]
        lib.cusparseSpMV_preprocess.restype = ctypes.c_int
    except AttributeError:
        pass


def _lib() -> Any:
    global _library
    with _lock:
        if _library is None:
            _library = _find_library() or False
    return _library or None


def available(device: torch.device | str) -> bool:
    """True when cuSPARSE can be called for tensors on ``device``."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available() and _lib() is not None


def _check(status: int, what: str) -> None:
    if status != _STATUS_SUCCESS:
        raise RuntimeError(f"cuSPARSE {what} failed with status {status}")


def _handle(device: torch.device) -> ctypes.c_void_p:
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _lock:
        if index not in _handles:
            handle = ctypes.c_void_p()
            with torch.cuda.device(index):
                _check(_lib().cusparseCreate(ctypes.byref(handle)), "cusparseCreate")
            _handles[index] = handle
    return _handles[index]


class CsrSpMV:
    """``y <- alpha A x + beta y`` on fixed tensors, one cuSPARSE SpMV per call.

    Args:
        A: (m, n) sparse CSR tensor on a CUDA device.
        x: (n,) input; y: (m,) output (contiguous, A's dtype and device).  The tensors are bound
            by address: write new values into them, never rebind.
        alpha, beta: host scalars fixed at construction.
        algorithm: "alg1" (CUSPARSE_SPMV_CSR_ALG1, torch.mv's) or "alg2"
            (CUSPARSE_SPMV_CSR_ALG2), analysed once by ``cusparseSpMV_preprocess`` where the
            library has it (cuSPARSE >= 12.4).

    Raises:
        RuntimeError: cuSPARSE refused the matrix or the vectors.
    """

    def __init__(self, A: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
                 beta: float = 0.0, algorithm: str = "alg1") -> None:
        lib = _lib()
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"CsrSpMV: algorithm must be one of {sorted(_ALGORITHMS)}, "
                             f"got {algorithm!r}")
        self._algorithm = _ALGORITHMS[algorithm]
        m, n = A.shape
        if x.shape != (n,) or y.shape != (m,) or not (x.is_contiguous() and y.is_contiguous()):
            raise ValueError(f"CsrSpMV: A is {m}x{n}, x {tuple(x.shape)}, y {tuple(y.shape)}")
        crow, col, val = A.crow_indices(), A.col_indices(), A.values()
        index = {torch.int32: _INDEX_32I, torch.int64: _INDEX_64I}
        dtype = {torch.float32: (_CUDA_R_32F, ctypes.c_float),
                 torch.float64: (_CUDA_R_64F, ctypes.c_double)}
        if crow.dtype not in index or col.dtype not in index or val.dtype not in dtype:
            raise ValueError(f"CsrSpMV: unsupported index/value types {crow.dtype}, {val.dtype}")
        if x.dtype != val.dtype or y.dtype != val.dtype:
            raise ValueError("CsrSpMV: A, x and y must share one dtype")
        self._lib, self._handle = lib, _handle(A.device)
        self._keep = (A, crow, col, val, x, y)           # the addresses cuSPARSE holds
        self._dtype, scalar = dtype[val.dtype]
        self._alpha, self._beta = scalar(alpha), scalar(beta)
        self._mat, self._x, self._y = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        _check(lib.cusparseCreateCsr(ctypes.byref(self._mat), m, n, val.numel(), crow.data_ptr(),
                                     col.data_ptr(), val.data_ptr(), index[crow.dtype],
                                     index[col.dtype], _INDEX_BASE_ZERO, self._dtype),
               "cusparseCreateCsr")
        _check(lib.cusparseCreateDnVec(ctypes.byref(self._x), n, x.data_ptr(), self._dtype),
               "cusparseCreateDnVec")
        _check(lib.cusparseCreateDnVec(ctypes.byref(self._y), m, y.data_ptr(), self._dtype),
               "cusparseCreateDnVec")
        size = ctypes.c_size_t()
        _check(lib.cusparseSpMV_bufferSize(*self._args(), ctypes.byref(size)),
               "cusparseSpMV_bufferSize")
        self._buffer = torch.empty(max(1, size.value), dtype=torch.uint8, device=A.device)
        self._set_stream()
        if hasattr(lib, "cusparseSpMV_preprocess"):
            _check(lib.cusparseSpMV_preprocess(*self._args(), self._buffer.data_ptr()),
                   "cusparseSpMV_preprocess")

    def _args(self) -> tuple:
        return (self._handle, _OPERATION_NON_TRANSPOSE, ctypes.byref(self._alpha), self._mat,
                self._x, ctypes.byref(self._beta), self._y, self._dtype, self._algorithm)

    def _set_stream(self) -> None:
        stream = torch.cuda.current_stream(self._buffer.device).cuda_stream
        _check(self._lib.cusparseSetStream(self._handle, ctypes.c_void_p(stream)),
               "cusparseSetStream")

    def __call__(self) -> None:
        self._set_stream()
        _check(self._lib.cusparseSpMV(*self._args(), self._buffer.data_ptr()), "cusparseSpMV")

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        for handle, destroy in ((getattr(self, "_mat", None), lib.cusparseDestroySpMat),
                                (getattr(self, "_x", None), lib.cusparseDestroyDnVec),
                                (getattr(self, "_y", None), lib.cusparseDestroyDnVec)):
            if handle is not None and handle.value:
                destroy(handle)


def csr_spmv(A: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
             beta: float = 0.0, algorithm: str = "alg1") -> CsrSpMV | None:
    """A :class:`CsrSpMV` for ``y <- alpha A x + beta y``, or None where cuSPARSE is unavailable
    (CPU tensors, no libcusparse), refuses this matrix, or disagrees with ``torch.mv`` on a
    random probe vector (checked once here, on scratch vectors; then use ``torch.mv``)."""
    if not available(A.device) or A.layout != torch.sparse_csr or min(A.shape) == 0 \
            or A.values().numel() == 0:
        return None
    try:
        probe_x = torch.randn(A.shape[1], dtype=A.dtype, device=A.device)
        probe_y = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
        CsrSpMV(A, probe_x, probe_y, algorithm=algorithm)()
        expected = torch.mv(A, probe_x)
        tol = 1e-10 if A.dtype == torch.float64 else 1e-4
        if not bool(torch.linalg.vector_norm(probe_y - expected)
                    <= tol * torch.linalg.vector_norm(expected) + 1e-300):
            warnings.warn(f"cuSPARSE {algorithm} disagrees with torch.mv on this matrix; using "
                          "torch.mv", RuntimeWarning, stacklevel=2)
            return None
        return CsrSpMV(A, x, y, alpha, beta, algorithm)
    except (RuntimeError, ValueError, AttributeError):
        return None
