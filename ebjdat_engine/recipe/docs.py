"""The recipe reference: the resolved recipe as TOML with every key's documentation as comments.

Used by `ebjdat show --doc` and for the README's recipe reference; the text still loads back
to the same recipe (comments are ignored by TOML).
"""

from __future__ import annotations

import textwrap

import attrs
import tomli_w

from .load import to_dict
from .schema import Recipe


def documented_toml(recipe: Recipe | None = None) -> str:
    recipe = recipe if recipe is not None else Recipe()
    values = to_dict(recipe)
    lines: list[str] = []
    for section in attrs.fields(Recipe):
        cls = section.type
        summary = (cls.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1]
        lines.append(f"[{section.name}]  # {summary}")
        for f in attrs.fields(cls):
            doc = f.metadata.get("doc", "")
            for chunk in textwrap.wrap(doc, width=94):
                lines.append(f"# {chunk}")
            if f.name in values[section.name]:
                lines.append(tomli_w.dumps({f.name: values[section.name][f.name]}).strip())
            else:
                lines.append(f"# {f.name} = (unset)")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if value is None:
        return "(absent)"
    return tomli_w.dumps({"v": value}).strip()[4:].replace("\n", " ").replace("  ", " ")


def reference_markdown() -> str:
    """The README's recipe reference: one table per section (key, default, meaning)."""
    defaults = to_dict(Recipe())
    out: list[str] = []
    for section in attrs.fields(Recipe):
        cls = section.type
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        out += [f"**{summary}**", "", "| key | default | meaning |", "|---|---|---|"]
        for f in attrs.fields(cls):
            value = _toml_value(defaults[section.name].get(f.name))
            doc = f.metadata.get("doc", "").replace("|", "\\|")
            out.append(f"| `{f.name}` | `{value}` | {doc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown())
