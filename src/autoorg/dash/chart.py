"""The program head's verified metric over time, drawn in text: every run a dot, the head a step line."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from autoorg.dash.data import ChartPoint

DOT_STYLE = {"promoted": "bold green", "candidate": "green", "verifying": "green"}
KIND_STYLE = {"baseline": "blue", "verify": "cyan"}
MAX_CELL = 6  # columns per run at most


class MetricChart(Widget):
    """A dot per measured run (promoted green, re-runs cyan, baselines blue, the rest dim) over the step line of the
    program head's verified metric (yellow). The newest runs are kept when there are more than columns."""

    DEFAULT_CSS = "MetricChart { height: 1fr; min-height: 5; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.points: list[ChartPoint] = []
        self.caption = ""

    def show(self, points: list[ChartPoint], caption: str) -> None:
        self.points, self.caption = points, caption
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height - 1  # the last line is the caption
        values = [p.metric for p in self.points] + [p.head for p in self.points if p.head is not None]
        if not values or width < 12 or height < 2:
            return Text(self.caption + ("\nno measured runs yet" if not values else ""), style="dim")
        low, high = min(values), max(values)
        labels = [f"{high:.4g}", f"{low:.4g}"]
        gutter = max(len(s) for s in labels) + 1
        columns = width - gutter
        points = self.points[-columns:]
        cell = max(1, min(MAX_CELL, columns // len(points)))  # few runs spread out, many get a column each
        span = (high - low) or 1.0

        def row_of(value: float) -> int:
            return round((high - value) / span * (height - 1))

        grid: list[list[tuple[str, str]]] = [[(" ", "")] * columns for _ in range(height)]
        previous: int | None = None
        for i, p in enumerate(points):
            if p.head is None:
                continue
            y = row_of(p.head)
            if previous is not None and previous != y:
                for between in range(min(previous, y) + 1, max(previous, y)):
                    grid[between][i * cell] = ("│", "yellow")
            for x in range(i * cell, (i + 1) * cell):
                grid[y][x] = ("─", "yellow")
            previous = y
        for i, p in enumerate(points):
            style = KIND_STYLE.get(p.kind) or DOT_STYLE.get(p.verdict, "dim")
            grid[row_of(p.metric)][i * cell + cell // 2] = ("•", style)
        text = Text()
        for y, cells in enumerate(grid):
            label = labels[0] if y == 0 else labels[1] if y == height - 1 else ""
            text.append(label.rjust(gutter - 1) + "┤", style="dim")
            for char, style in cells:
                text.append(char, style=style)
            text.append("\n")
        text.append(self.caption, style="dim")
        return text
