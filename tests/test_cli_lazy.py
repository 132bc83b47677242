"""The command line imports the engine lazily: importing `ebjdat_tui.cli` (and asking any of its
commands for --help) imports neither torch nor textual, so `ebjdat --help` answers at once. A
module-level `import torch` in any command group fails here."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_the_cli_imports_neither_torch_nor_textual():
    code = "import ebjdat_tui.cli, sys; print('torch' in sys.modules, 'textual' in sys.modules)"
    assert _python(code).split() == ["False", "False"]


def test_every_commands_help_imports_neither_torch_nor_textual():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ebjdat_tui.cli import app\n"
        "commands = ['validate', 'show', 'run', 'eval', 'sample', 'bench', 'tui', 'study', 'compare', 'export',\n"
        "            'ls', 'data', 'data prepare']\n"
        "for command in commands:\n"
        "    r = CliRunner().invoke(app, [*command.split(), '--help'])\n"
        "    assert r.exit_code == 0 and 'Usage' in r.output, (command, r.output)\n"
        "print(len(commands), 'torch' in sys.modules, 'textual' in sys.modules)\n"
    )
    assert _python(code).split() == ["13", "False", "False"]
