"""README.md runs as written.

Every ```python block runs verbatim in a fresh interpreter, and every command line of the other
code blocks that starts with ``l2o `` (run as ``python -m l2o ...``), ``python -m l2o `` or
``python examples/`` runs verbatim through the shell (so ``> file`` and ``# comments`` work),
each block in its own temporary directory (its lines in order, so a line may use the files an
earlier line of the same block wrote), with this checkout first on ``PYTHONPATH``. A block or
command must exit with status 0.

Not run: ``pip ...`` lines; a block whose first line is ``# GPU only`` when CUDA is missing; a
block whose first line is ``# not run`` (shell snippets that are not ``l2o`` or example
commands). Any other line of a code block that starts with ``python`` or ``torchrun`` is an
error here, so a README command cannot go untested by accident.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GPU_ONLY = "# GPU only"
NOT_RUN = "# not run"
TIMEOUT_S = 600        # per block; generous for a loaded 2-core machine
RUN = re.compile(r"^(l2o |python -m l2o |python examples/)")
UNRUN = re.compile(r"^(python|torchrun)\b")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README: its info string, first line number and lines."""

    lang: str
    line: int
    lines: tuple[str, ...]

    @property
    def marker(self) -> str:
        return self.lines[0].strip() if self.lines else ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced (```) code blocks of ``text``, in order."""
    blocks, current, start, lang = [], None, 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, start, lang = [], number, line[3:].strip()
            else:
                blocks.append(Block(lang, start, tuple(current)))
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise ValueError(f"README.md:{start}: code block not closed")
    return blocks


def commands(block: Block) -> list[str]:
    """The lines of a non-Python block that the test runs (see the module docstring)."""
    run = []
    for offset, line in enumerate(block.lines, 1):
        text = line.strip()
        if RUN.match(text):
            run.append(text)
        elif UNRUN.match(text):
            raise AssertionError(
                f"README.md:{block.line + offset}: {text!r} is not run by this test; make it an "
                f"l2o or python examples/ command, or mark its block {NOT_RUN!r}")
    return run


def shell_command(line: str) -> str:
    """``line`` with its leading ``l2o`` / ``python`` replaced by this interpreter."""
    python = shlex.quote(sys.executable)
    if line.startswith("l2o "):
        return f"{python} -m l2o {line[4:]}"
    return f"{python} {line[len('python '):]}"


def runnable_blocks() -> list[Block]:
    return [b for b in readme_blocks(README.read_text())
            if b.marker != NOT_RUN and (b.lang == "python" or commands(b))]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    return env


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, (
        f"{what} exited with {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}"
        f"\n--- stderr ---\n{result.stderr[-4000:]}")


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: f"README.md:{b.line}")
def test_readme_block_runs_as_written(block: Block, tmp_path: Path):
    if block.marker == GPU_ONLY and not torch.cuda.is_available():
        pytest.skip("a GPU-only README block; no CUDA here")
    (tmp_path / "examples").symlink_to(ROOT / "examples")   # `python examples/...` from the root
    if block.lang == "python":
        script = tmp_path / "readme_block.py"
        script.write_text("\n".join(block.lines) + "\n")
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        _check(result, f"the Python block at README.md:{block.line}")
        return
    for line in commands(block):
        result = subprocess.run(shell_command(line), shell=True, cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        _check(result, f"README.md:{block.line}: {line!r}")


def test_readme_has_runnable_blocks_of_both_kinds():
    # guards the parser: a README edit that breaks the fences would otherwise test nothing
    blocks = runnable_blocks()
    assert sum(b.lang == "python" for b in blocks) >= 3
    assert sum(len(commands(b)) for b in blocks if b.lang != "python") >= 10


def test_block_parser_and_command_rewriting():
    text = "prose\n```python\nprint(1)\n```\n```\npip install x\nl2o info a.mps # c\n```\n"
    python, shell = readme_blocks(text)
    assert (python.lang, python.line, python.lines) == ("python", 2, ("print(1)",))
    assert commands(shell) == ["l2o info a.mps # c"]
    assert shell_command("l2o info a.mps # c") == (
        f"{shlex.quote(sys.executable)} -m l2o info a.mps # c")
    with pytest.raises(AssertionError, match="not run by this test"):
        commands(Block("", 1, ("python setup.py",)))
    with pytest.raises(ValueError, match="not closed"):
        readme_blocks("```\nl2o info\n")
