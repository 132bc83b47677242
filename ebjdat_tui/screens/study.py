"""A study (studies/<name>/ of `ebjdat study`): its arms × seeds with their state and numbers,
re-read every second; enter opens a run's dashboard (escape comes back)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from ebjdat_engine.rundir import RESULTS_FILE

from ..study_view import STATE_STYLE, StudyRow, StudyView, SummaryCache, load_study, updated_text
from ..widgets.notice import Notice

#: (key, header, width or None for the label, right-justified)
COLUMNS = (
    ("label", "arm", None, False),
    ("seed", "seed", 4, True),
    ("state", "state", None, False),
    ("clean", "clean%", 6, True),
    ("aa", "AA%", 5, True),
    ("fd_ref", "fd_ref/init", 11, True),
    ("pgd", "PGD%", 5, True),
)
STATE_MIN, STATE_MAX = 8, 20
LABEL_MIN = 6


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


class StudyTable(DataTable):
    """The runs, one per row; enter selects (opens) the row under the cursor, shown in the footer."""

    BINDINGS = [Binding("enter", "select_cursor", "Open run")]


class StudyScreen(Screen):
    """The list of a study's runs; the App opens a run's dashboard over it."""

    AUTO_FOCUS = "#study-table"
    BINDINGS = [
        Binding("enter", "open", "Open run", show=False),  # the table's own enter shows in the footer
        Binding("r", "reload", "Reload", show=False),
    ]

    def __init__(self, path: str | Path, interval: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.path = Path(path)
        self.interval = interval
        self.summaries = SummaryCache()
        self.view: StudyView | None = None
        self._rows: tuple[StudyRow, ...] | None = None
        self._by_key: dict[str, StudyRow] = {}
        self._width = 0
        self._worker: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="study-title")
        yield Static(id="study-protocol")
        yield Notice(id="study-notice")
        yield StudyTable(id="study-table", cursor_type="row", cursor_foreground_priority="renderable")
        yield Static(id="study-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.show_view(load_study(self.path, self.summaries))  # at once; then from a thread
        self.set_interval(self.interval, self.reload)

    def on_screen_resume(self) -> None:
        self.reload()

    def on_resize(self) -> None:
        if self.view is not None and self.size.width != self._width:
            self._rows = None
            self.show_view(self.view)

    # --- reading ------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the results file (and the training runs) in a thread; skipped under a dashboard."""
        if not self.is_current or (self._worker is not None and self._worker.is_running):
            return
        self._worker = self.run_worker(lambda: load_study(self.path, self.summaries), thread=True,
                                       exit_on_error=False, group="study")

    def action_reload(self) -> None:
        self.reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self._worker and event.state == WorkerState.SUCCESS and event.worker.result:
            self.show_view(event.worker.result)

    # --- drawing ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open":
            return bool(self.view is not None and not self.view.error and self.view.rows)  # hidden: no list
        return True

    def show_view(self, view: StudyView) -> None:
        before = self.view
        self.view = view
        if before is None or bool(before.error) != bool(view.error) or bool(before.rows) != bool(view.rows):
            self.refresh_bindings()
        self.app.study_view = view  # type: ignore[attr-defined]  # for the exit message
        self.query_one("#study-title", Static).update(self._title(view))
        protocol = Text(" " + view.protocol if not view.error else f" {view.path}", style="dim",
                        no_wrap=True, overflow="ellipsis")
        self.query_one("#study-protocol", Static).update(protocol)
        notice = self.query_one(Notice)
        table = self.query_one(DataTable)
        detail = self.query_one("#study-detail", Static)
        if view.error:
            notice.show("Cannot show this study", f"{view.error}.\n\nIt is read again every second: the list "
                        f"appears once `ebjdat study` has written a readable {RESULTS_FILE}.\nq quits.",
                        severity="warning" if view.state == "waiting" else "error")
            table.display = detail.display = False
            if table.has_focus:
                self.set_focus(None)  # its keys leave the footer with it
            self._rows = None
            return
        notice.clear()
        table.display = detail.display = True
        if self.focused is None:
            table.focus()
        if view.rows != self._rows or self.size.width != self._width:
            self._fill(table, view.rows)
        self._show_detail()

    def _title(self, view: StudyView) -> Text:
        width = max(self.size.width, 40)
        state = view.state
        badge = Text(f" {state.upper()} ", style=f"bold reverse {STATE_STYLE.get(state, '')}".strip())
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" study ", style="dim")
        line.append(view.name, style="bold")
        line.append("  ")
        line.append_text(badge)
        if not view.error:
            line.append(f"  {view.counts}")
            updated = updated_text(view)
            if updated:
                line.append(f"  {updated}", style="dim")
        line.truncate(width, overflow="ellipsis")
        return line

    def _widths(self, rows: tuple[StudyRow, ...]) -> dict[str, int]:
        state_w = min(max([STATE_MIN, *(len(r.state_text) for r in rows)]), STATE_MAX)
        fixed = {key: w for key, _, w, _ in COLUMNS if w is not None}
        used = sum(fixed.values()) + state_w + 2 * len(COLUMNS) + 2  # cell padding, scrollbar
        longest = max([len("arm"), *(len(r.label) for r in rows)])
        label_w = max(min(longest, max(self.size.width, 40) - used), LABEL_MIN)
        return {**fixed, "state": state_w, "label": label_w}

    def _fill(self, table: DataTable, rows: tuple[StudyRow, ...]) -> None:
        keep = None
        if table.row_count and self._rows:
            try:
                keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except Exception:  # noqa: BLE001 - no cursor yet
                keep = None
        self._rows = rows
        self._width = self.size.width
        self._by_key = {r.key: r for r in rows}
        widths = self._widths(rows)
        table.clear(columns=True)
        for key, header, _, right in COLUMNS:
            table.add_column(Text(header, justify="right" if right else "left"), width=widths[key], key=key)
        for row in rows:
            table.add_row(*self._cells(row, widths), key=row.key)
        keys = [r.key for r in rows]
        if keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        elif rows:
            # first look: the first run still going, else the first row
            going = next((i for i, r in enumerate(rows) if r.state in ("training", "evaluating")), 0)
            table.move_cursor(row=going, animate=False)

    def _cells(self, row: StudyRow, widths: dict[str, int]) -> list[Text]:
        label = Text(clip(row.label, widths["label"]), style="bold" if not row.summary else "italic")
        seed = Text(row.seed, justify="right", style="italic" if row.summary else "")
        state = Text(clip(row.state_text, widths["state"]), style=STATE_STYLE.get(row.state, ""))
        num_style = "dim" if row.provisional else ("bold" if row.summary else "")
        fd_style = {True: "green", False: "red"}.get(row.beats_init, num_style)  # beside its init baseline
        return [label, seed, state,
                Text(row.clean, justify="right", style=num_style), Text(row.aa, justify="right", style=num_style),
                Text(row.fd_ref, justify="right", style=fd_style), Text(row.pgd, justify="right", style=num_style)]

    def _current_row(self) -> StudyRow | None:
        table = self.query_one(DataTable)
        if not table.row_count or not table.display:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001
            return None
        return self._by_key.get(key or "")

    def _show_detail(self) -> None:
        row = self._current_row()
        lines = list(row.detail[:2]) if row is not None else []
        if row is not None and not row.summary and row.run_dir is None:
            lines = lines[:1] + [f"{row.state}: no run directory to open yet"]
        text = Text("\n").join(Text(" " + line, no_wrap=True, overflow="ellipsis") for line in lines)
        self.query_one("#study-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    # --- opening a run --------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:  # enter, or a click
        event.stop()
        row = self._by_key.get(event.row_key.value or "")
        if row is not None:
            self.open_row(row)

    def action_open(self) -> None:
        row = self._current_row()
        if row is not None:
            self.open_row(row)

    def open_row(self, row: StudyRow) -> None:
        if row.summary:
            self.notify(f"{row.label}: the mean of its seeds; pick one seed's row to open its run", timeout=4)
            return
        if row.run_dir is None:
            self.notify(f"{row.label} seed {row.seed} is {row.state}: it has no run directory yet",
                        severity="warning", timeout=4)
            return
        self.app.open_run(row.run_dir, f"{row.label} seed {row.seed}")  # type: ignore[attr-defined]
