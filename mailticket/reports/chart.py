"""The monthly report's chart: tickets by hour of day and by weekday, as one PNG.

Drawn with matplotlib's Agg backend through the object API (``Figure`` and a
canvas, never ``pyplot``), so it needs no display, keeps no global state and is
safe in the scheduler's worker threads. matplotlib ships the DejaVu fonts, so
Russian labels render the same on every server. It is imported only when a
chart is drawn: the daemon does not pay for it until the first report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

WEEKDAYS = {
    "ru": ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_TITLES = {
    "ru": ("Обращения по часам", "Обращения по дням недели", "час", "обращений"),
    "en": ("Tickets by hour of day", "Tickets by weekday", "hour", "tickets"),
}
_BAR = "#3b6ea8"
_PEAK = "#c0392b"


def _colours(values: Sequence[int]) -> list[str]:
    """The busiest bars in red, so the peak reads at a glance."""
    peak = max(values, default=0)
    return [_PEAK if peak and value == peak else _BAR for value in values]


def chart_png(by_hour: Sequence[int], by_weekday: Sequence[int], locale: str, title: str) -> bytes:
    """A 900×600 PNG with two bar charts: 24 hours and 7 weekdays (Monday first)."""
    if len(by_hour) != 24 or len(by_weekday) != 7:
        raise ValueError("need 24 hourly and 7 weekday counts")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    hours_title, days_title, hour_label, count_label = _TITLES.get(locale, _TITLES["en"])
    figure = Figure(figsize=(9, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    hours_ax, days_ax = figure.subplots(2, 1)
    hours_ax.bar(range(24), list(by_hour), color=_colours(by_hour))
    hours_ax.set_title(hours_title)
    hours_ax.set_xlabel(hour_label)
    hours_ax.set_ylabel(count_label)
    hours_ax.set_xticks(range(24))
    hours_ax.set_xlim(-0.6, 23.6)
    days_ax.bar(range(7), list(by_weekday), color=_colours(by_weekday))
    days_ax.set_title(days_title)
    days_ax.set_ylabel(count_label)
    days_ax.set_xticks(range(7), WEEKDAYS.get(locale, WEEKDAYS["en"]))
    for axes in (hours_ax, days_ax):
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(axis="y", alpha=0.3)
        axes.set_axisbelow(True)
    buffer = io.BytesIO()
    # No software/date metadata: the same figures give the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
