"""A light start: ``l2o --help``, ``--version`` and ``COMMAND --help`` import no torch (nor
numpy), ``import l2o`` loads its subpackages on first use, and the families' options read from
the generators' source are those of their signatures."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs the command line in a fresh interpreter and reports which heavy modules it imported.
_PROBE = """
import contextlib, io, json, sys
from l2o.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
heavy = sorted(m for m in ("torch", "numpy", "scipy", "networkx", "highspy", "rich")
               if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "out": out.getvalue()}))
"""


def _probe(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["solve", "--help"], ["info", "--help"],
    ["generate", "--help"], ["generate", "pagerank", "--help"], ["dataset", "build", "--help"],
    ["train", "--help"],
])
def test_help_and_version_import_no_heavy_module(argv):
    result = _probe(*argv)
    assert result["code"] == 0
    assert result["heavy"] == [], f"l2o {' '.join(argv)} imported {result['heavy']}"


def test_version_prints_the_installed_version():
    result = _probe("--version")
    try:
        expected = metadata.version("bilevel-l2o")
    except metadata.PackageNotFoundError:
        expected = "(not installed)"
    assert result["out"].startswith("l2o ") and expected in result["out"]


def test_the_probe_sees_torch_when_a_command_needs_it(tmp_path):
    """The check above can fail: a command that solves imports torch."""
    result = _probe("info", "--example", "afiro", "--json")
    assert result["code"] == 0 and "torch" in result["heavy"]


def test_import_l2o_is_light_and_subpackages_load_on_use():
    code = ("import sys, l2o\n"
            "assert 'torch' not in sys.modules, 'import l2o imported torch'\n"
            "lp = l2o.datasets.generate('setcover', rows=8, cols=16, density=0.3)\n"
            "assert 'torch' in sys.modules\n"
            "assert l2o.read_lp is l2o.lp.read_lp and l2o.solve_lp is l2o.pdhg.solve_lp\n"
            "from l2o.datasets import pagerank\n"
            "assert callable(pagerank) and not isinstance(pagerank, type(sys))\n"
            "print(lp.num_rows, lp.num_cols)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "16"]


def test_star_import_and_unknown_names():
    import l2o
    import l2o.diff
    import l2o.lp
    import l2o.pdhg

    subpackages = (l2o.lp, l2o.pdhg, l2o.diff)
    assert l2o.__all__ == [name for sub in subpackages for name in sub.__all__]
    # what ``from l2o import *`` binds: every name of __all__, from its subpackage
    for name in l2o.__all__:
        owner = next(sub for sub in subpackages if name in sub.__all__)
        assert getattr(l2o, name) is getattr(owner, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        l2o.no_such_name  # noqa: B018
    assert "datasets" in dir(l2o) and "read_lp" in dir(l2o.lp)


def test_family_options_read_from_source_match_the_signatures():
    from l2o.datasets import FAMILIES, families

    assert list(FAMILIES) == families.family_names()
    for name, generator in FAMILIES.items():
        signature = {n: p.default for n, p in inspect.signature(generator).parameters.items()}
        assert families.family_options(name) == signature
        assert families.family(name).doc == inspect.getdoc(generator)
    with pytest.raises(ValueError, match="unknown LP family 'nope'; valid families"):
        families.family_options("nope")


def test_exit_codes_are_one_enum():
    from l2o.cli import EXIT_CODES, ExitCode

    assert [int(code) for code in EXIT_CODES] == list(range(8))
    assert set(EXIT_CODES) <= set(ExitCode)
    assert ExitCode.BAD_INPUT == 3 and ExitCode.USAGE_ERROR == 2
