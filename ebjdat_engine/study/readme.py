"""Keep the README's result tables identical to the shipped studies' results.md.

A block in the README between ``<!-- study-results: studies/NAME/results.md -->`` and
``<!-- /study-results -->`` holds the tables of that file (every line that starts with ``|``, and
the caption line before each table). `python -m ebjdat_engine.study.readme README.md` rewrites
every block from its file; a test fails when a block and its file disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- study-results: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /study-results -->)", re.S)


def tables(results_md: str) -> str:
    """The tables of a results.md, each with the paragraph line just before it."""
    lines = results_md.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("|"):
            if i == 0 or not lines[i - 1].startswith("|"):  # a new table starts here
                caption = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                if out:
                    out.append("")
                if caption and not caption.startswith("|"):
                    out += [caption, ""]
            out.append(line)
    return "\n".join(out) + "\n" if out else ""


def refresh(readme: Path, root: Path | None = None) -> str:
    """The README text with every study-results block rewritten from its results.md."""
    root = root or readme.parent
    text = readme.read_text(encoding="utf-8")

    def sub(m: re.Match) -> str:
        body = tables((root / m.group("path")).read_text(encoding="utf-8"))
        return f"{m.group(1)}{body}{m.group(4)}"

    return BLOCK.sub(sub, text)


def blocks(readme_text: str) -> list[tuple[str, str]]:
    """(results.md path, block body) for every block of the README."""
    return [(m.group("path"), m.group("body")) for m in BLOCK.finditer(readme_text)]


if __name__ == "__main__":  # pragma: no cover
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(refresh(path), encoding="utf-8")
    print(f"refreshed {len(blocks(path.read_text()))} study-results block(s) in {path}")
