"""`ebjdat compare RUN...`: one table of the latest evaluation of each run.

Each row is a run's latest full `ebjdat eval` (or an evaluation JSON given directly): clean,
PGD, AutoAttack, fd_ref beside its init baseline and floor, energy gaps, training wall time and
images/s, and the protocol it was measured under. Rows measured under a different protocol than
the reference (the most common one) are flagged with what differs; they are never mixed
silently. Renders as Markdown, CSV or JSON here; the CLI draws the rich table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from ..rundir import EVAL_DIR, EVENTS_FILE, RunDir
from .table import (
    COLUMNS,
    fmt_protocol,
    fmt_value,
    latest_eval,
    protocol_differences,
    protocol_of,
    row_of,
    training_stats,
)


class CompareError(UserError):
    """A path that is neither an evaluated run nor an evaluation JSON; the message says which."""


def _entry(path: Path) -> dict[str, Any]:
    import json

    if path.is_file() and path.suffix == ".json":
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CompareError(f"{path}: not a readable evaluation JSON ({e})") from None
        if not isinstance(result, dict) or "clean_acc" not in result:
            raise CompareError(f"{path}: not an `ebjdat eval` result")
        run_dir = path.parent.parent if path.parent.name == EVAL_DIR else None
        eval_path = path
    elif path.is_dir():
        if not RunDir(path).has_events() and not RunDir(path).eval_dir.is_dir():
            raise CompareError(f"{path}: not a run directory (no {EVENTS_FILE})")
        found = latest_eval(path)
        if found is None:
            raise CompareError(f"{path}: no evaluation yet; run `ebjdat eval {path}` first")
        eval_path, result = found
        run_dir = path
    else:
        raise CompareError(f"{path}: no such run directory or evaluation JSON")
    stats = training_stats(run_dir) if run_dir is not None and RunDir(run_dir).has_events() else {}
    ckpt = result.get("checkpoint") or {}
    return {"run": run_dir.name if run_dir is not None else path.stem,
            "run_dir": str(run_dir) if run_dir is not None else None,
            "eval": str(eval_path), "eval_time": result.get("time"),
            "method": result.get("method"), "dataset": result.get("dataset"),
            "checkpoint": f"{ckpt.get('kind')}@{ckpt.get('step')}",
            "status": stats.get("status"),
            "protocol": protocol_of(result), "row": row_of(result, run_dir)}


def compare(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The comparison of `paths` (run directories or evaluation JSONs): entries in the given
    order, each with its protocol and, when it differs from the reference, `mismatch`."""
    entries = [_entry(Path(p)) for p in paths]
    diffs = protocol_differences([e["protocol"] for e in entries])
    for entry, diff in zip(entries, diffs):
        entry["mismatch"] = {k: {"this": v[0], "reference": v[1]} for k, v in diff.items()}
    datasets = sorted({str(e["dataset"]) for e in entries})
    return {"entries": entries, "protocols_agree": not any(diffs),
            "reference_protocol": next((e["protocol"] for e, d in zip(entries, diffs) if not d), None),
            "datasets": datasets}


def mismatch_text(entry: dict[str, Any]) -> str:
    """'eps 0.1 (reference 8/255); points 200 (reference 300)' or ''."""
    return "; ".join(f"{k} {v['this']} (reference {v['reference']})" for k, v in entry["mismatch"].items())


HEADERS = ("run", "method", "ckpt") + tuple(h for _, h, _ in COLUMNS) + ("protocol",)


def table_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """The table as strings (accuracies in %), one list per run, protocol flag last."""
    rows = []
    for e in comparison["entries"]:
        cells = [e["run"], str(e["method"]), e["checkpoint"]]
        cells += [fmt_value(e["row"].get(key), kind) for key, _, kind in COLUMNS]
        cells.append("MISMATCH: " + mismatch_text(e) if e["mismatch"] else "ok")
        rows.append(cells)
    return rows


def to_markdown(comparison: dict[str, Any]) -> str:
    rows = table_rows(comparison)
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append(protocol_note(comparison))
    return "\n".join(lines) + "\n"


def protocol_note(comparison: dict[str, Any]) -> str:
    ref = comparison["reference_protocol"]
    note = (f"Accuracies in % on the test split; fd_ref beside its init baseline and floor. "
            f"Protocol: {fmt_protocol(ref) if ref else '—'}.")
    if not comparison["protocols_agree"]:
        bad = [e["run"] for e in comparison["entries"] if e["mismatch"]]
        note += (f" PROTOCOL MISMATCH: {', '.join(bad)} measured differently (see the protocol column); "
                 f"their numbers are not comparable with the others.")
    if len(comparison["datasets"]) > 1:
        note += f" Different datasets: {', '.join(comparison['datasets'])}."
    return note


def to_csv(comparison: dict[str, Any]) -> str:
    """Raw numbers (fractions, not %), one line per run, protocol fields and mismatch last."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [k for k, _, _ in COLUMNS]
    from .table import PROTOCOL_FIELDS

    writer.writerow(["run", "method", "checkpoint", "status", *keys, *PROTOCOL_FIELDS, "mismatch", "eval"])
    for e in comparison["entries"]:
        writer.writerow([e["run"], e["method"], e["checkpoint"], e["status"] or "",
                         *["" if e["row"].get(k) is None else e["row"][k] for k in keys],
                         *[e["protocol"].get(f) for f in PROTOCOL_FIELDS], mismatch_text(e), e["eval"]])
    return buf.getvalue()
