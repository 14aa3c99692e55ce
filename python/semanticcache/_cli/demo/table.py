"""The demo's table of requests: plain lines, or on a terminal a live window redrawn in place."""

from __future__ import annotations

import shutil
import time
from typing import Final, TextIO

from semanticcache._cli.demo.report import Outcome

__all__ = ["MIN_LIVE_COLUMNS", "Table"]

_WINDOW: Final = 14  # rows of the live table kept on screen
_TEXT_WIDTH: Final = 50
# Characters of a row besides the request text: number, outcome, similarity, stage 2,
# latency.
_FIXED_WIDTH: Final = 60
# Narrower terminals get plain lines: a wrapped row would break the in-place redraw.
MIN_LIVE_COLUMNS: Final = 70


class _Colour:
    def __init__(self, enabled: bool) -> None:
        self._on = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._on else text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _stage2(outcome: Outcome) -> str:
    """What stage 2 made of the request: the verifier's probability and its verdict, or
    the rule that refused the candidate; ``-`` when no candidate reached it."""
    if outcome.probability is not None:
        return f"{outcome.probability:.3f} {'served' if outcome.hit else 'refused'}"
    if outcome.reason == "disagreement":
        return "check refused"
    if outcome.reason == "rejected":
        return "rejected"
    return "-"


class Table:
    """Rows as plain lines, or (on a terminal) a live window redrawn in place."""

    def __init__(self, out: TextIO, *, live: bool, total: int) -> None:
        self._out = out
        self._live = live
        self._total = total
        self._colour = _Colour(live)
        self._rows: list[str] = []
        self._drawn = 0
        self._started = time.perf_counter()
        size = shutil.get_terminal_size((100, 40))
        self._window = max(3, min(_WINDOW, size.lines - 14))
        # Live rows must fit on one terminal line (the redraw counts lines); plain lines
        # keep the full width.
        self._columns = size.columns - 1 if live else None

    def _text_width(self, suffix: str) -> int:
        if self._columns is None:
            return _TEXT_WIDTH
        return max(12, min(_TEXT_WIDTH, self._columns - _FIXED_WIDTH - len(suffix)))

    def header(self) -> str:
        """The column titles."""
        width = self._text_width("")
        return (
            f"{'#':>4}  {'request':<{width}}  {'cache':<13}  {'similarity':>10}  "
            f"{'stage 2':<14}  {'latency':>9}"
        )

    def start(self) -> None:
        """Print the column titles (live mode draws them with each redraw)."""
        if not self._live:
            print(self.header(), file=self._out, flush=True)

    def add(self, outcome: Outcome, hits: int) -> None:
        """Show one more outcome (``hits`` so far, for the progress line)."""
        c = self._colour
        if outcome.hit:
            cache = c(f"HIT {outcome.match or ''}".ljust(13), "32")
        elif outcome.cache == "MISS":
            cache = c("MISS".ljust(13), "33")
        else:
            cache = c(outcome.cache.ljust(13), "31")
        similarity = f"{outcome.similarity:.4f}" if outcome.similarity is not None else "-"
        stage2 = _stage2(outcome)
        suffix = f"  FALSE HIT (answer for {outcome.served_group})" if outcome.false_hit else ""
        if self._columns is not None:
            suffix = suffix[: max(0, self._columns - _FIXED_WIDTH - 12)]
        width = self._text_width(suffix)
        flag = c(suffix, "1;31") if suffix else ""
        row = (
            f"{outcome.index:>4}  {_clip(outcome.question.text, width):<{width}}  "
            f"{cache}  {similarity:>10}  {stage2:<14}  {outcome.latency_ms:>6.0f} ms{flag}"
        )
        if not self._live:
            print(row, file=self._out, flush=True)
            return
        self._rows.append(row)
        self._redraw(outcome.index, hits)

    def _redraw(self, done: int, hits: int) -> None:
        elapsed = time.perf_counter() - self._started
        width = 30
        filled = round(width * done / self._total) if self._total else width
        progress = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}  "
            f"hits {hits}  misses {done - hits}  {elapsed:.1f} s"
        )
        lines = [self.header(), *self._rows[-self._window :], progress]
        # Back to the top of the previous drawing, clear to the end of the screen, redraw.
        prefix = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self._out.write(prefix + "\n".join(lines) + "\n")
        self._out.flush()
        self._drawn = len(lines)
