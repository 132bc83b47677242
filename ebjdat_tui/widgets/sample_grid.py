"""The latest sample grid drawn in the terminal: two pixels per cell with ▀ (foreground the
upper pixel, background the lower), scaled to fit, grayscale or colour."""

from __future__ import annotations

from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from ..reducer import RunSnapshot


def fit_size(w: int, h: int, max_w: int, max_h: int) -> tuple[int, int]:
    """Largest size of a w×h image inside max_w×max_h keeping its aspect; whole multiples when
    enlarging (crisp pixels)."""
    scale = min(max_w / w, max_h / h)
    if scale >= 1:
        scale = int(scale)
    return max(int(w * scale), 1), max(int(h * scale), 1)


def image_lines(path: Path, width: int, height: int) -> list[Text]:
    """The image at `path` in at most width × height cells (height rows of two pixels each)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = fit_size(im.width, im.height, width, height * 2)
        resample = Image.Resampling.NEAREST if w >= im.width else Image.Resampling.BOX
        im = im.resize((w, h + (h % 2)), resample)
        px = im.load()
        rows_px = im.height
    pad = " " * ((width - w) // 2)
    lines = []
    for y in range(0, rows_px, 2):
        line = Text(pad, no_wrap=True, overflow="crop")
        for x in range(w):
            top = "#%02x%02x%02x" % px[x, y]
            bottom = "#%02x%02x%02x" % px[x, y + 1] if y + 1 < rows_px else None
            line.append("▀", Style(color=top, bgcolor=bottom))
        lines.append(line)
    return lines


class SampleGrid(Widget):
    """The newest sample PNG of the run (a `sample` event, samples/*.png or eval/*-samples.png)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.path: Path | None = None
        self.border_title = "samples"
        self._cache: tuple[tuple, list[Text]] | None = None

    def show(self, snapshot: RunSnapshot) -> None:
        if snapshot.sample_path != self.path:
            self.path = snapshot.sample_path
            self.border_subtitle = self.path.name if self.path else ""
            self.refresh()

    def render(self) -> Text:
        width, height = max(self.size.width, 1), max(self.size.height, 1)
        if self.path is None:
            return Text("no sample grid yet\n(ebjdat sample RUN, or ebjdat eval RUN)", style="dim")
        try:
            key = (self.path, self.path.stat().st_mtime, width, height)
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, image_lines(self.path, width, height))
        except Exception as e:  # noqa: BLE001 - a half-written or odd PNG must not break the screen
            return Text(f"cannot draw {self.path.name}: {type(e).__name__}", style="dim")
        return Text("\n").join(self._cache[1])
