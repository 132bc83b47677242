"""The Textual App of `ebjdat tui` and its factory (`create_app`), which tests import.

Data flow: a `RunWatcher` thread tails the run directory and posts `RunUpdated` snapshots
(coalescing: a newer one replaces a stale one still queued); the App keeps the latest and a
timer redraws the visible screen at most `redraw_hz` times a second, whatever the event rate.
Keys write requests into `RUN/control/` (stop, checkpoint, eval); the job serves them at its own
pace and never waits on the TUI.

A study directory (`--attach studies/NAME`) opens `StudyApp`: the list of the study's runs, read
from its results file; enter watches one run (as above) with its screens over the list.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen

from ebjdat_engine.rundir import RunDir, control

from .launch import Launched, launch
from .liveness import LIVE
from .messages import AlarmRaised, ControlServed, RunEnded, RunUpdated
from .reducer import RunSnapshot
from .screens.base import RunScreen
from .screens.confirm_stop import ConfirmStopScreen
from .screens.dashboard import DashboardScreen
from .screens.quit import QuitScreen
from .screens.recipe import RecipeScreen
from .screens.samples import SamplesScreen
from .screens.study import StudyScreen
from .study_view import StudyView, is_study_dir
from .watcher import RunWatcher

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

SCREENS_ORDER = ("dashboard", "recipe", "samples")


@dataclass(frozen=True)
class ExitInfo:
    """What `ebjdat tui` prints after the App closes, and its exit code."""

    message: str
    code: int = 0


class EbjdatApp(App[ExitInfo]):
    """Watch one run directory; optionally launch the job that writes it first."""

    CSS_PATH = "app.tcss"
    TITLE = "ebjdat"
    ENABLE_COMMAND_PALETTE = False
    MODES = {"dashboard": DashboardScreen, "recipe": RecipeScreen, "samples": SamplesScreen}
    DEFAULT_MODE = "dashboard"
    #: True for an App that starts watching nothing and attaches to runs on demand (a study)
    ATTACHES_LATER = False
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("c", "checkpoint", "Ckpt"),
        Binding("e", "evaluate", "Eval"),
        Binding("1", "show('dashboard')", "Dash"),
        Binding("2", "show('recipe')", "Recipe"),
        Binding("3", "show('samples')", "Samples"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, *, run_dir: str | Path | None = None, recipe_path: str | Path | None = None,
                 sets: Sequence[str] = (), poll_interval: float = 0.2, redraw_hz: float = 4.0,
                 launcher: Callable[..., Launched] = launch):
        super().__init__()
        if (run_dir is None) == (recipe_path is None) and not (run_dir is None and self.ATTACHES_LATER):
            raise ValueError("give exactly one of run_dir (attach) or recipe_path (launch)")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.recipe_path = Path(recipe_path) if recipe_path is not None else None
        self.sets = list(sets)
        self.poll_interval = poll_interval
        self.redraw_hz = redraw_hz
        self.launcher = launcher
        self.launched: Launched | None = None
        self.watcher: RunWatcher | None = None
        self.snapshot: RunSnapshot | None = None
        self.notice: tuple[str, str] | None = None
        self.recipe_text: str | None = None
        self.title_text = ""
        self.stop_requested = False
        self.quit_after_stop = False
        self.redraws = 0
        self._dirty = True
        self._last_tick = 0.0

    # --- start --------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.recipe_path is not None:
            self._launch()
        if self.run_dir is not None:
            self.title_text = f"starting {self.recipe_path.name}" if self.launched else "attaching"
            self.watcher = RunWatcher(self.run_dir, self.post_message,
                                      process=self.launched.process if self.launched else None,
                                      interval=self.poll_interval)
            self.watcher.start()
        self.set_interval(1.0 / self.redraw_hz, self._redraw)
        self._redraw()

    def _launch(self) -> None:
        from ebjdat_engine.recipe import RecipeError, to_toml

        assert self.recipe_path is not None
        try:
            self.launched = self.launcher(self.recipe_path, self.sets)
        except RecipeError as e:
            n = len(e.errors)
            self.notice = (f"{self.recipe_path}: {n} error{'s' if n != 1 else ''} in the recipe; nothing was started",
                           "\n".join(f"  {line}" for line in e.errors) +
                           "\n\nFix the recipe (or the --set values) and start again. q quits.")
            self.title_text = f"{self.recipe_path}: invalid recipe"
            try:
                self.recipe_text = self.recipe_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                self.recipe_text = None
            return
        except OSError as e:
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            self.notice = (f"could not start the job: {e.strerror or e}{where}",
                           "The run directory is made under run.out_dir: choose a writable one "
                           "(--set run.out_dir=DIR).\n\nq quits.")
            return
        self.run_dir = self.launched.run_dir
        self.recipe_text = to_toml(self.launched.recipe)

    # --- state --------------------------------------------------------------------------

    @property
    def status(self) -> str:
        if self.notice:
            return "invalid"
        return self.snapshot.status if self.snapshot else "starting"

    @property
    def display_status(self) -> str:
        status = self.status
        return "stopping" if self.stop_requested and status in LIVE else status

    @property
    def controllable(self) -> bool:
        return self.run_dir is not None and not self.notice and self.status in LIVE

    @property
    def run_name(self) -> str:
        return self.run_dir.name if self.run_dir else "the job"

    def control_every(self) -> int | None:
        text = (self.snapshot.recipe_text if self.snapshot else None) or self.recipe_text
        try:
            value = tomllib.loads(text or "").get("train", {}).get("control_every")
        except tomllib.TOMLDecodeError:
            return None
        return value if isinstance(value, int) else None

    def on_run_updated(self, message: RunUpdated) -> None:
        before = self.status
        self.snapshot = message.snapshot
        self._dirty = True
        if self.status != before:
            self.refresh_bindings()

    def on_alarm_raised(self, message: AlarmRaised) -> None:
        a = message.alarm
        self.bell()
        self.notify(f"{a.get('detector')}: {a.get('message')} → {a.get('action')}", title="ALARM",
                    severity="error", timeout=10)

    def on_control_served(self, message: ControlServed) -> None:
        self.notify(f"the job took the {message.name} request", timeout=4)

    def on_run_ended(self, message: RunEnded) -> None:
        self._dirty = True
        self.refresh_bindings()
        if self.quit_after_stop:
            self.exit(self._exit_info())
            return
        severity = "information" if message.status in ("finished", "stopped") else "error"
        self.notify(f"{self.run_name}: {message.status}", severity=severity, timeout=8)

    def _redraw(self) -> None:
        now = time.monotonic()
        if not self._dirty and not (self.status in LIVE and now - self._last_tick >= 1.0):
            return  # the ETA and "quiet" hints tick once a second while the job runs
        self._dirty = False
        self._last_tick = now
        self.redraws += 1
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen) and screen.is_mounted:
                try:
                    screen.update_view(self.snapshot, self.display_status, self.title_text)
                except NoMatches:  # mounted, but its widgets are still composing or already gone
                    self._dirty = True  # (a timer tick raced start-up or shutdown): next tick

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    # --- keys ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("stop", "checkpoint", "evaluate"):
            return self.controllable  # False: not offered in the footer (the job is over or gone)
        return True

    def _modal_open(self) -> bool:
        return isinstance(self.screen, ModalScreen)

    def action_show(self, mode: str) -> None:
        if not self._modal_open() and mode in self.MODES and self.current_mode != mode:
            self.switch_mode(mode)

    def action_next_screen(self, step: int = 1) -> None:
        i = SCREENS_ORDER.index(self.current_mode) if self.current_mode in SCREENS_ORDER else 0
        self.action_show(SCREENS_ORDER[(i + step) % len(SCREENS_ORDER)])

    def action_previous_screen(self) -> None:
        self.action_next_screen(-1)

    def action_checkpoint(self) -> None:
        self._request("checkpoint")

    def action_evaluate(self) -> None:
        self._request("eval")

    def action_stop(self) -> None:
        if self._modal_open():
            return
        if not self.controllable:
            self.notify(f"{self.run_name} is not running ({self.status})", severity="warning")
            return
        if self.stop_requested:
            self.notify("a stop is already requested; the job stops at its next control check")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._request("stop")

        self.push_screen(ConfirmStopScreen(self.run_name, self.control_every()), confirmed)

    def _request(self, name: str) -> bool:
        """Ask the job for `name` through control/; True when asked."""
        if not self.controllable or self.run_dir is None:
            self.notify(f"{self.run_name} is not running ({self.status})", severity="warning")
            return False
        started = self.snapshot is not None and self.snapshot.start is not None
        process = self.launched.process if self.launched else None
        if not started:
            if name == "stop" and process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)  # not training yet: nothing to checkpoint
                self.stop_requested = True
                self._dirty = True
                return True
            self.notify("the job has not started training yet; try again in a moment", severity="warning")
            return False
        control.request(self.run_dir, name)
        every = self.control_every()
        when = f" within {every} steps" if every else ""
        if name == "stop":
            self.stop_requested = True
            self._dirty = True
            self.notify(f"stop requested: the job checkpoints and stops{when}", timeout=6)
        else:
            self.notify(f"{name} requested (control/{name}); the job serves it{when}", timeout=4)
        return True

    async def action_quit(self) -> None:
        if self._modal_open():
            return
        if self.quit_after_stop or not self.controllable:
            self.exit(self._exit_info())
            return

        def chosen(choice: str | None) -> None:
            if choice == "leave":
                self.exit(self._exit_info(left=True))
            elif choice == "stop":
                if self.stop_requested or self._request("stop"):
                    self.quit_after_stop = True
                    self.title_text = "stopping: waiting for the job's checkpoint (q quits now)"
                    self.notify("waiting for the job to checkpoint and stop; q quits now (the stop stands)",
                                timeout=10)
                    self._dirty = True

        self.push_screen(QuitScreen(self.run_name), chosen)

    def _exit_info(self, left: bool = False) -> ExitInfo:
        run = self.run_dir
        if self.notice:
            return ExitInfo(self.notice[0] + ("\n" + self.notice[1].split("\n\n")[0] if self.notice[1] else ""), 2)
        if run is None:
            return ExitInfo("")
        status = self.status
        pid = self.launched.process.pid if self.launched else None
        if left:
            return ExitInfo(f"left running: {run}" + (f" (pid {pid})" if pid else "") +
                            f"\n  watch again: ebjdat tui --attach {run}")
        if self.stop_requested and status in LIVE:
            return ExitInfo(f"asked {run} to stop (control/stop); it checkpoints and ends with status 'stopped'"
                            f"\n  watch: ebjdat tui --attach {run}")
        if status == "stopped":
            return ExitInfo(f"stopped: {run}  checkpoint: {RunDir(run).last_checkpoint}"
                            f"\n  continue with: ebjdat run --resume {run}")
        if status == "missing":
            detail = self.snapshot.detail if self.snapshot else f"no run directory at {run}"
            return ExitInfo(detail, 2)
        if status == "failed" and self.stop_requested:
            return ExitInfo(f"stopped before training started: {run} (nothing to resume)")
        if status == "failed":
            output = (self.snapshot.detail.split("\n", 1)[1:] or [""])[0].strip() if self.snapshot else ""
            return ExitInfo(f"the job failed before it started{': ' if output else ''}{output}"
                            f"\n  its whole output: {RunDir(run).stdout_log}", 2)
        return ExitInfo(f"{status}: {run}")


class StudyApp(EbjdatApp):
    """A study directory (studies/<name>/ of `ebjdat study`): the list of its runs; enter opens a
    run's dashboard (the run screens of `EbjdatApp`, watching that run directory; its stop,
    checkpoint and eval keys write that run's control/), escape comes back to the list.

    The runs belong to `ebjdat study`: quitting leaves them as they are, without asking."""

    MODES: dict = {}  # one screen stack: the study list (the default screen), a run's screen over it
    DEFAULT_MODE = "_default"
    ATTACHES_LATER = True
    RUN_SCREENS = {"dashboard": DashboardScreen, "recipe": RecipeScreen, "samples": SamplesScreen}
    BINDINGS = [Binding("escape,backspace", "back", "Study")]  # beside EbjdatApp's (inherited)

    def __init__(self, study_dir: str | Path, *, poll_interval: float = 0.2, redraw_hz: float = 4.0,
                 study_interval: float = 1.0):
        super().__init__(poll_interval=poll_interval, redraw_hz=redraw_hz)
        self.study_dir = Path(study_dir)
        self.study_interval = study_interval
        self.study_view: StudyView | None = None
        self._watch_token = 0

    def get_default_screen(self) -> StudyScreen:
        return StudyScreen(self.study_dir, interval=self.study_interval)

    # --- one run at a time --------------------------------------------------------------

    @property
    def run_open(self) -> bool:
        return self.run_dir is not None

    def open_run(self, run_dir: Path, title: str = "") -> None:
        """Watch `run_dir` and show its dashboard over the study list."""
        if self._modal_open():
            return
        self._close_run()
        self._watch_token += 1
        token = self._watch_token

        def post(message: Message) -> None:
            message._ebjdat_watch = token  # type: ignore[attr-defined]  # stale ones are dropped
            self.post_message(message)

        self.run_dir = Path(run_dir)
        self.title_text = f"{title}: attaching" if title else "attaching"
        self.watcher = RunWatcher(self.run_dir, post, interval=self.poll_interval)
        self.watcher.start()
        self.push_screen(DashboardScreen())
        self._dirty = True
        self.refresh_bindings()

    def _close_run(self) -> None:
        if self.watcher is not None:
            self.watcher.stop(timeout=0)
        self._watch_token += 1
        self.watcher = None
        self.run_dir = None
        self.snapshot = None
        self.stop_requested = False
        self.quit_after_stop = False
        self.title_text = ""

    def _current(self, message: Message) -> bool:
        return self.run_open and getattr(message, "_ebjdat_watch", None) == self._watch_token

    def on_run_updated(self, message: RunUpdated) -> None:
        if self._current(message):
            super().on_run_updated(message)

    def on_alarm_raised(self, message: AlarmRaised) -> None:
        if self._current(message):
            super().on_alarm_raised(message)

    def on_control_served(self, message: ControlServed) -> None:
        if self._current(message):
            super().on_control_served(message)

    def on_run_ended(self, message: RunEnded) -> None:
        if self._current(message):
            super().on_run_ended(message)

    # --- keys ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("stop", "checkpoint", "evaluate", "show", "next_screen", "previous_screen", "back"):
            if not self.run_open:
                return False  # hidden on the study list
        return super().check_action(action, parameters)

    def action_back(self) -> None:
        """From a run's screens back to the study list (the run goes on)."""
        if self._modal_open() or not self.run_open or not isinstance(self.screen, RunScreen):
            return
        self._close_run()
        self.pop_screen()
        self.refresh_bindings()

    def action_show(self, mode: str) -> None:
        screen = self.RUN_SCREENS.get(mode)
        if self._modal_open() or not self.run_open or screen is None or isinstance(self.screen, screen):
            return
        if isinstance(self.screen, RunScreen):
            self.switch_screen(screen())

    def action_next_screen(self, step: int = 1) -> None:
        names = list(self.RUN_SCREENS)
        i = next((k for k, name in enumerate(names) if isinstance(self.screen, self.RUN_SCREENS[name])), 0)
        self.action_show(names[(i + step) % len(names)])

    async def action_quit(self) -> None:
        if self._modal_open():
            return
        self.exit(self._exit_info())

    def _exit_info(self, left: bool = False) -> ExitInfo:
        view = self.study_view
        where = f"\n  watch again: ebjdat tui --attach {self.study_dir}"
        if view is None:
            return ExitInfo(f"study {self.study_dir}" + where)
        if view.error:
            return ExitInfo(f"study {self.study_dir}: {view.error}", 0 if view.state == "waiting" else 2)
        return ExitInfo(f"study {view.name}: {view.state}, {view.counts}" + where)


def create_app(*, recipe: str | Path | None = None, sets: Sequence[str] = (),
               attach: str | Path | None = None, poll_interval: float = 0.2,
               redraw_hz: float = 4.0, launcher: Callable[..., Launched] = launch,
               study_interval: float = 1.0) -> EbjdatApp:
    """The App for `ebjdat tui RECIPE [--set ...]` (launch and watch) or `--attach RUN`, or for
    `--attach studies/NAME` (a study directory: the list of its runs, each one's dashboard)."""
    if attach is not None and recipe is None and is_study_dir(attach):
        return StudyApp(attach, poll_interval=poll_interval, redraw_hz=redraw_hz, study_interval=study_interval)
    return EbjdatApp(run_dir=attach, recipe_path=recipe, sets=sets, poll_interval=poll_interval,
                     redraw_hz=redraw_hz, launcher=launcher)
