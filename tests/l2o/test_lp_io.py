"""l2o.read_lp / write_lp (through HiGHS) against published NETLIB data and hand-written files."""

from __future__ import annotations

import csv
import gzip
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import l2o
from l2o.lp import LPFormatError, solve_highs

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


NETLIB = _table(DATA / "netlib" / "optimal_values.csv")
LARGE = _table(DATA / "large" / "optimal_values.csv")


def _card(*fields: str) -> str:
    """One fixed-format MPS line: fields start in columns 2, 5, 15, 25, 40, 50."""
    starts = [1, 4, 14, 24, 39, 49]
    line = ""
    for start, text in zip(starts, fields):
        line = line.ljust(start) + text
    return line


@pytest.mark.parametrize("row", NETLIB, ids=[r["name"] for r in NETLIB])
def test_netlib_sizes_and_highs_optimum(row):
    """Sizes as netlib's readme counts them (objective row included) and HiGHS on *our*
    LinearProgram reaches the published optimum: the file was read right."""
    lp = l2o.read_lp(DATA / "netlib" / f"{row['name']}.mps.gz")
    assert lp.name == row["name"]
    assert lp.num_rows + 1 == int(row["rows"])
    assert lp.num_cols == int(row["cols"])
    assert lp.nnz + int(torch.count_nonzero(lp.c)) == int(row["nnz"])
    assert lp.A.dtype == torch.float64 and lp.A.layout == torch.sparse_csr
    assert len(lp.row_names) == lp.num_rows and len(lp.col_names) == lp.num_cols
    ref = solve_highs(lp)
    assert ref.status == l2o.LPStatus.OPTIMAL
    published = float(row["optimal_objective"])
    assert abs(ref.objective - published) <= 1e-8 * abs(published)
    # the duals are right too: strong duality with our dual objective formula
    assert abs(ref.dual_objective - published) <= 1e-7 * max(1.0, abs(published))


def test_blend_objective():
    """cuPDLPx mis-reads blend (objective 0); the optimum is -30.812149846."""
    ref = solve_highs(l2o.read_lp(DATA / "netlib" / "blend.mps.gz"))
    assert ref.objective == pytest.approx(-30.812149846, rel=1e-9)


@pytest.mark.parametrize("row", LARGE, ids=[r["name"] for r in LARGE])
def test_kennington_sizes_and_highs_optimum(row):
    lp = l2o.read_lp(DATA / "large" / f"{row['name']}.mps.gz")
    assert (lp.num_rows, lp.num_cols, lp.nnz) == (int(row["rows"]), int(row["cols"]),
                                                  int(row["nnz"]))
    ref = solve_highs(lp)  # about a second each
    published = float(row["optimal_objective"])  # 8 significant digits
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert abs(ref.objective - published) <= 1e-7 * abs(published)


def test_infeasible_and_unbounded_files_read():
    for name in ("box1", "galenet", "klein1", "woodinfe"):
        lp = l2o.read_lp(DATA / "infeasible" / f"{name}.mps")
        assert solve_highs(lp).status == l2o.LPStatus.PRIMAL_INFEASIBLE, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # HiGHS's warning status on gas11 is not an error
        gas11 = l2o.read_lp(DATA / "unbounded" / "gas11.mps")
    # gas11's twelve 9.999e-10 coefficients are kept (HiGHS's default drops |a| <= 1e-9)
    assert gas11.nnz == 2166
    assert solve_highs(gas11).status == l2o.LPStatus.DUAL_INFEASIBLE


# ---- hand-written files ---------------------------------------------------------------------

FIXED_MPS = "\n".join([
    "NAME          BLANKS",
    "ROWS",
    _card("N", "COST"),
    _card("L", "LIM 1"),
    _card("G", "LIM 2"),
    _card("E", "MY EQN"),
    _card("L", "RNG L"),
    _card("G", "RNG G"),
    _card("E", "RNG E+"),
    _card("E", "RNG E-"),
    "COLUMNS",
    _card("", "X ONE", "COST", "1.0", "LIM 1", "1.0"),
    _card("", "X ONE", "LIM 2", "1.0", "RNG L", "1.0"),
    _card("", "Y TWO", "COST", "2.0", "LIM 1", "1.0"),
    _card("", "Y TWO", "MY EQN", "1.0"),
    _card("", "Z 3", "RNG E+", "1.0", "RNG E-", "1.0"),
    _card("", "W 4", "COST", "-1.0", "RNG E-", "2.0"),
    _card("", "V 5", "LIM 2", "3.0"),
    _card("", "U 6", "LIM 2", "1.0", "RNG G", "1.0"),
    _card("", "T 7", "LIM 1", "1.0"),
    _card("", "S 8", "LIM 1", "2.0"),
    "RHS",
    _card("", "RHS", "COST", "-2.5", "LIM 1", "4.0"),
    _card("", "RHS", "LIM 2", "1.0", "MY EQN", "7.0"),
    _card("", "RHS", "RNG L", "3.0", "RNG G", "-3.0"),
    _card("", "RHS", "RNG E+", "5.0", "RNG E-", "5.0"),
    "RANGES",
    _card("", "RNG", "RNG L", "4.0", "RNG G", "-6.0"),
    _card("", "RNG", "RNG E+", "2.0", "RNG E-", "-2.0"),
    "BOUNDS",
    _card("UP", "BND", "X ONE", "4.0"),
    _card("LO", "BND", "Y TWO", "-1.0"),
    _card("FX", "BND", "Z 3", "5.5"),
    _card("FR", "BND", "W 4"),
    _card("MI", "BND", "V 5"),
    _card("UP", "BND", "V 5", "8.0"),
    _card("PL", "BND", "U 6"),
    _card("LO", "BND", "T 7", "-3.0"),
    _card("UP", "BND", "T 7", "3.0"),
    _card("MI", "BND", "S 8"),
    "ENDATA",
]) + "\n"


def test_fixed_mps_blanks_ranges_bounds_constant(tmp_path):
    """Fixed MPS with blanks in names; every RANGES case of the MPS standard; bound types
    UP LO FX FR MI PL; objective constant = -RHS of the objective row."""
    path = tmp_path / "blanks.mps"
    path.write_text(FIXED_MPS)
    lp = l2o.read_lp(path)
    assert lp.row_names == ["LIM 1", "LIM 2", "MY EQN", "RNG L", "RNG G", "RNG E+", "RNG E-"]
    assert lp.col_names == ["X ONE", "Y TWO", "Z 3", "W 4", "V 5", "U 6", "T 7", "S 8"]
    assert lp.c0 == 2.5
    inf = math.inf
    # L: [rhs-|R|, rhs]; G: [rhs, rhs+|R|]; E with R>0: [rhs, rhs+R]; E with R<0: [rhs+R, rhs]
    assert lp.row_lower.tolist() == [-inf, 1.0, 7.0, -1.0, -3.0, 5.0, 3.0]
    assert lp.row_upper.tolist() == [4.0, inf, 7.0, 3.0, 3.0, 7.0, 5.0]
    assert lp.col_lower.tolist() == [0.0, -1.0, 5.5, -inf, -inf, 0.0, -3.0, -inf]
    assert lp.col_upper.tolist() == [4.0, inf, 5.5, inf, 8.0, inf, 3.0, inf]
    assert lp.c.tolist() == [1.0, 2.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]
    dense = lp.A.to_dense()
    assert dense[0].tolist() == [1.0, 1.0, 0, 0, 0, 0, 1.0, 2.0]
    assert dense[1].tolist() == [1.0, 0, 0, 0, 3.0, 1.0, 0, 0]
    assert dense[2].tolist() == [0, 1.0, 0, 0, 0, 0, 0, 0]
    assert dense[4].tolist() == [0, 0, 0, 0, 0, 1.0, 0, 0]
    assert dense[6].tolist() == [0, 0, 1.0, 2.0, 0, 0, 0, 0]
    # by hand: y = 7 (MY EQN), z = 5.5 so 5.5 + 2 w in [3, 5] gives w <= -0.25, x = 0:
    # 0 + 2 * 7 + 0.25 + c0 2.5 = 16.75
    ref = solve_highs(lp)
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert ref.objective == pytest.approx(16.75, abs=1e-9)


def test_free_mps_objsense_max_and_mip_relaxation(tmp_path):
    """Free MPS: OBJSENSE MAX, objective constant, integer markers and BV/LI/UI/SC bounds
    relaxed with a warning naming the columns."""
    path = tmp_path / "mip.mps"
    path.write_text("""NAME MIPX
OBJSENSE
    MAX
ROWS
 N obj
 L c1
 G c2
COLUMNS
    MARKER  'MARKER'  'INTORG'
    x obj 1 c1 1
    x c2 1
    MARKER  'MARKER'  'INTEND'
    y obj 2 c1 1
    b obj 1 c1 1
    i obj 1 c2 1
    u obj 1 c1 3
    s obj 1 c1 1
RHS
    RHS obj 5.5 c1 4
    RHS c2 1
BOUNDS
 UP BND x 4
 BV BND b
 LI BND i 2
 UI BND u 7
 SC BND s 3
 LO BND s 1
ENDATA
""")
    with pytest.warns(UserWarning, match=r"MIP.*LP relaxation.*x, b, i, u, s"):
        lp = l2o.read_lp(path)
    assert lp.sense == l2o.MAXIMIZE
    assert lp.c0 == -5.5
    assert lp.col_lower.tolist() == [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]  # s: min(0, 1) = 0
    assert lp.col_upper.tolist() == [4.0, math.inf, 1.0, math.inf, 7.0, 3.0]
    # max x + 2y + b + i + u + s - 5.5 s.t. x + y + b + 3u + s <= 4, x + i >= 1: unbounded in i
    assert solve_highs(lp).status == l2o.LPStatus.DUAL_INFEASIBLE


def test_cplex_lp_file_max_with_constant(tmp_path):
    path = tmp_path / "small.lp"
    path.write_text("""\\ a CPLEX LP file
Maximize
 obj: 3 x + 2 y - z + 7
Subject To
 c1: x + y <= 4
 c2: x + z >= 1
 c3: y - z >= -1
Bounds
 x <= 3
 -2 <= y <= 6
 z free
End
""")
    lp = l2o.read_lp(path)
    assert lp.sense == l2o.MAXIMIZE and lp.c0 == 7.0
    assert lp.row_names == ["c1", "c2", "c3"] and lp.col_names == ["x", "y", "z"]
    ref = solve_highs(lp)
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert ref.objective == pytest.approx(ref.dual_objective, abs=1e-9)
    x = ref.x
    assert ref.objective == pytest.approx(float(lp.c @ x) + 7.0, abs=1e-12)
    # by hand: z >= 1 - x small, y <= 4 - x; along x = 3 - t, y = 1 + t, z = t - 2 the
    # objective is 20 - 2t, so x = 3, y = 1, z = -2 with 9 + 2 + 2 + 7 = 20
    assert x.tolist() == pytest.approx([3.0, 1.0, -2.0], abs=1e-9)
    assert ref.objective == pytest.approx(20.0, abs=1e-9)


def test_gzip_and_plain_agree(tmp_path):
    plain = tmp_path / "afiro.mps"
    plain.write_bytes(gzip.decompress((DATA / "netlib" / "afiro.mps.gz").read_bytes()))
    a, b = l2o.read_lp(plain), l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    assert torch.equal(a.A.to_dense(), b.A.to_dense()) and torch.equal(a.c, b.c)


@pytest.mark.parametrize("suffix", [".mps", ".mps.gz", ".lp"])
def test_write_read_round_trip(tmp_path, suffix):
    source = tmp_path / "blanks.mps"
    source.write_text(FIXED_MPS)
    lp = l2o.read_lp(source)
    lp.sense, lp.c = l2o.MAXIMIZE, -lp.c  # max -c^T x: the same optimum x
    lp.c[0] = -1.0 / 3.0
    path = tmp_path / f"out{suffix}"
    with pytest.warns(UserWarning, match="blanks in 15 row/column names"):
        l2o.write_lp(lp, path)
    back = l2o.read_lp(path)
    assert back.sense == l2o.MAXIMIZE and back.c0 == lp.c0
    # an LP file lists columns in order of appearance; names lose their blanks
    order = [back.col_names.index(name.replace(" ", "_")) for name in lp.col_names]
    assert back.c[order[0]].item() == pytest.approx(-1.0 / 3.0, rel=5e-15)  # 15 digits
    ref, ref_back = solve_highs(lp), solve_highs(back)
    assert ref.status == ref_back.status == l2o.LPStatus.OPTIMAL
    assert ref_back.objective == pytest.approx(ref.objective, rel=1e-12)
    assert ref.objective == pytest.approx(-16.75 + 2 * 2.5, abs=1e-9)
    if suffix == ".lp":  # ranged rows become two rows
        assert back.num_rows == lp.num_rows + 4
    else:
        assert back.col_names == [n.replace(" ", "_") for n in lp.col_names]
        assert torch.equal(back.A.to_dense(), lp.A.to_dense())
        for field in ("row_lower", "row_upper", "col_lower", "col_upper"):
            assert torch.equal(getattr(back, field), getattr(lp, field)), field


def test_write_lp_without_names_and_bad_extension(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 2.0]], [1.0], [np.inf])
    l2o.write_lp(lp, tmp_path / "anon.mps")
    back = l2o.read_lp(tmp_path / "anon.mps")
    assert solve_highs(back).objective == pytest.approx(0.5)
    with pytest.raises(ValueError, match="extension"):
        l2o.write_lp(lp, tmp_path / "anon.txt")


# ---- bad files ------------------------------------------------------------------------------

def test_garbage_file_is_a_format_error(capfd):
    with pytest.raises(LPFormatError, match="garbage.mps.*Parser error"):
        l2o.read_lp(DATA / "malformed" / "garbage.mps")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # HiGHS stays silent


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mps"):
        l2o.read_lp(tmp_path / "nope.mps")
    with pytest.raises(LPFormatError, match="not a file"):
        l2o.read_lp(tmp_path)


def test_nan_in_file_names_the_entry(tmp_path):
    path = tmp_path / "nan.mps"
    path.write_text(FIXED_MPS.replace(_card("", "V 5", "LIM 2", "3.0"),
                                      _card("", "V 5", "LIM 2", "nan")))
    # HiGHS would drop this coefficient silently
    with pytest.raises(LPFormatError, match=r"nan\.mps, line 18: a number is NaN.*V 5.*LIM 2"):
        l2o.read_lp(path)
    path.write_text(FIXED_MPS.replace(_card("", "RHS", "LIM 2", "1.0", "MY EQN", "7.0"),
                                      _card("", "RHS", "LIM 2", "1.0", "MY EQN", "NaN")))
    # HiGHS <= 1.15 reads the NaN bound (our validation names the row); 1.16 refuses the file
    # (we add the line of the NaN): either way the message names the row
    with pytest.raises(LPFormatError, match=r"row with lower bound is NaN: row 'MY EQN'|"
                                            r"line \d+: a number is NaN: .*MY EQN"):
        l2o.read_lp(path)
    path.write_text(FIXED_MPS.replace(_card("", "W 4", "COST", "-1.0", "RNG E-", "2.0"),
                                      _card("", "W 4", "COST", "inf", "RNG E-", "2.0")))
    with pytest.raises(LPFormatError, match=r"objective coefficient c is not finite \(inf\) "
                                            r"for column 'W 4' \(index 3\)"):
        l2o.read_lp(path)


def test_misaligned_fixed_mps_warns(tmp_path):
    """A fixed-format file whose fields are off their columns loses entries in HiGHS's
    reader: say so instead of returning a silently different LP."""
    path = tmp_path / "bad.mps"
    path.write_text("NAME X\nROWS\n N  COST\n L  LIM 1\n G  LIM 2\nCOLUMNS\n"
                    "    X ONE     COST         1.0   LIM 1        1.0\n"
                    "RHS\n    RHS       LIM 1        4.0   LIM 2        1.0\nENDATA\n")
    with pytest.warns(UserWarning, match="HiGHS changed data"):
        l2o.read_lp(path)


def test_nan_scan_in_chunks_and_plain_gz(tmp_path):
    """The NaN scan reads whole lines per chunk (line numbers stay right) and a plain-text
    file named .gz (HiGHS reads it) is scanned as text."""
    from l2o.lp.io import _nan_token

    path = tmp_path / "nan.mps.gz"  # plain text despite the name
    path.write_text(FIXED_MPS.replace(_card("", "V 5", "LIM 2", "3.0"),
                                      _card("", "V 5", "LIM 2", "-NaN")))
    with pytest.raises(LPFormatError, match=r"line 18: a number is NaN"):
        l2o.read_lp(path)

    class Names:  # a row called "nan" is a name, not a number
        row_names_ = ["nan"]
        col_names_ = ["x"]

    path.write_text("ROWS\n N obj\n L nan\nCOLUMNS\n x nan 1\n x obj -nan\n")
    found = _nan_token(path, Names(), chunk_bytes=7)
    assert found.endswith("line 6: a number is NaN: 'x obj -nan'")
    path.write_text("ROWS\n N obj\n L nan\nCOLUMNS\n x nan 1\n x obj 2\n")
    assert _nan_token(path, Names(), chunk_bytes=7) == ""


# ---- files HiGHS reads as a different LP ------------------------------------------------------

SMALL_MPS = """NAME          SMALL
ROWS
 N  COST
 G  R1
COLUMNS
    X1        COST         1.0   R1           1.0
    X2        COST         2.0   R1           1.0
RHS
    RHS       R1           1.0
ENDATA
"""


def test_repeated_column_or_row_name_is_refused(tmp_path):
    """HiGHS reads a second 'X1' block as a third column (min 0 instead of 1) and drops all
    names; a row listed twice becomes two rows; an LP file may name two constraints alike."""
    path = tmp_path / "dup.mps"
    path.write_text(SMALL_MPS.replace("RHS\n", "    X1        COST         3.0   R1           1.0\n"
                                               "RHS\n", 1))
    with pytest.raises(LPFormatError, match=r'dup\.mps: names repeat.*"X1"'):
        l2o.read_lp(path)
    path.write_text(SMALL_MPS.replace(" G  R1\n", " G  R1\n L  R1\n"))
    with pytest.raises(LPFormatError, match=r'names repeat.*"R1"'):
        l2o.read_lp(path)
    lp_file = tmp_path / "dup.lp"
    lp_file.write_text("Minimize\n obj: x + y\nSubject To\n c1: x + y >= 1\n c1: x - y >= -3\n"
                       "End\n")
    with pytest.raises(LPFormatError, match=r"row name 'c1' is given 2 times"):
        l2o.read_lp(lp_file)
    path.write_text(SMALL_MPS)  # the same file without repeats reads
    assert l2o.read_lp(path).col_names == ["X1", "X2"]


@pytest.mark.parametrize("section", ["QUADOBJ", "QMATRIX", "QSECTION COST"])
def test_quadratic_objective_is_refused(tmp_path, section):
    path = tmp_path / "qp.mps"
    path.write_text(SMALL_MPS.replace("ENDATA", f"{section}\n    X1        X1           2.0\n"
                                                f"ENDATA"))
    with pytest.raises(LPFormatError, match=r"qp\.mps has a quadratic objective.*linear programs"):
        l2o.read_lp(path)


def test_quadratic_lp_file_is_refused(tmp_path):
    path = tmp_path / "qp.lp"
    path.write_text("Minimize\n obj: x + y + [ 2 x^2 ] / 2\nSubject To\n c1: x + y >= 1\nEnd\n")
    with pytest.raises(LPFormatError, match="quadratic objective"):
        l2o.read_lp(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, -4])
def test_damaged_gzip_is_a_format_error(tmp_path, keep):
    """Cut mid-stream, cut late (HiGHS reads what is there and says nothing) or without its
    CRC trailer: a format error, not an EOFError."""
    data = (DATA / "netlib" / "afiro.mps.gz").read_bytes()
    path = tmp_path / "afiro.mps.gz"
    path.write_bytes(data[:int(len(data) * keep)] if keep > 0 else data[:keep])
    with pytest.raises(LPFormatError, match=r"afiro\.mps\.gz is a damaged gzip file"):
        l2o.read_lp(path)
