"""The event log: one JSON object per line; readers survive partial lines and unknown types."""

from __future__ import annotations

import json

from ebjdat_engine.rundir.events import EventTail, EventWriter, parse_lines, read_events


def test_writer_flushes_every_event_with_the_common_fields(tmp_path):
    w = EventWriter(tmp_path)
    w.emit("metrics", 3, 0.5, loss=1.25)
    # visible to a reader before close: flushed per event
    (event,) = read_events(tmp_path)
    assert event["type"] == "metrics" and event["step"] == 3 and event["epoch"] == 0.5
    assert event["loss"] == 1.25 and isinstance(event["time"], float)
    w.close()


def test_non_finite_numbers_still_give_parsable_lines(tmp_path):
    w = EventWriter(tmp_path)
    w.emit("metrics", 1, 0.0, loss=float("nan"), terms={"ce": float("inf")})
    w.close()
    line = (tmp_path / "events.jsonl").read_text().strip()
    event = json.loads(line)  # strict JSON: no bare NaN
    assert event["loss"] == "nan" and event["terms"]["ce"] == "inf"


def test_half_written_last_line_and_unknown_types_are_tolerated(tmp_path):
    text = ('{"type":"start","time":1,"step":0,"epoch":0}\n'
            '{"type":"future_kind","time":2,"step":1,"epoch":0,"x":1}\n'
            'not json at all\n'
            '{"type":"metrics","time":3,"step":2,"epo')
    (tmp_path / "events.jsonl").write_text(text)
    events = read_events(tmp_path)
    assert [e["type"] for e in events] == ["start", "future_kind"]
    assert list(parse_lines("")) == []


def test_missing_log_reads_as_empty(tmp_path):
    assert read_events(tmp_path / "absent") == []


def test_tail_returns_each_complete_event_once(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(tmp_path)
    assert tail.poll() == []
    with open(path, "w") as f:
        f.write('{"type":"a","step":0}\n{"type":"b","st')
    assert [e["type"] for e in tail.poll()] == ["a"]
    assert tail.poll() == []
    with open(path, "a") as f:
        f.write('ep":1}\n')
    assert [e["type"] for e in tail.poll()] == ["b"]


def test_two_appenders_never_interleave_inside_a_line(tmp_path):
    """The job and an `ebjdat eval` of it append to the same log: whole lines, one write each."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from ebjdat_engine.rundir.events import EventWriter; "
            "w = EventWriter(Path(sys.argv[1])); "
            "[w.emit('bulk', i, 0.0, writer=sys.argv[2], pad='x' * 50_000) for i in range(100)]; w.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name]) for name in ("job", "eval")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    # a writer that opens the log while the other's line is being written may take it for a dead
    # writer's torn line and end it with a newline: a blank line, which every reader skips
    lines = [line for line in (tmp_path / "events.jsonl").read_text().splitlines() if line]
    events = [json.loads(line) for line in lines]  # every line parses: none was torn by the other
    assert sorted((e["writer"], e["step"]) for e in events) == sorted(
        (name, i) for name in ("job", "eval") for i in range(100))
