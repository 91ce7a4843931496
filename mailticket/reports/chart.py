"""The monthly report's charts, one PNG each, for a manager to read at a glance.

* ``compliance``: per priority and timer, one bar split into met (green) and
  breached (red), labelled with the target and "met of decided, %";
* ``response``: per priority and timer, how much of the target the answers
  took (within 25/50/75/100 % of it, or later), with median and 90th percentile
  in the plan's own minutes;
* ``trend``: compliance per priority and in total, the previous month beside this one;
* ``hours``: tickets by hour of day and by weekday (the busiest in red).

Drawn with matplotlib's Agg backend through the object API (``Figure`` and a
canvas, never ``pyplot``), so it needs no display, keeps no global state and is
safe in the scheduler's worker threads. matplotlib ships the DejaVu fonts, so
Russian labels render the same on every server. It is imported only when a
chart is drawn: the daemon does not pay for it until the first report. The
same figures give the same bytes (no date or software metadata).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailticket.outbound.render import format_decimal, format_duration
from mailticket.reports.sla_table import BUCKETS, TimerRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mailticket.reports.monthly import TrendRow

WEEKDAYS = {
    "ru": ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_WORDS: dict[str, dict[str, str]] = {
    "ru": {
        "hours": "Обращения по часам", "days": "Обращения по дням недели", "hour": "час",
        "tickets": "обращений", "compliance": "Соблюдение сроков SLA",
        "response": "Сколько срока заняли ответы", "trend": "Соблюдение сроков: динамика",
        "met": "в срок", "breached": "с нарушением", "none": "Нет данных за месяц",
        "of": "из", "median": "медиана", "p90": "90-й процентиль", "total": "Все",
        "critical": "Критический", "major": "Высокий", "minor": "Обычный",
        "technical": "Технический", "first_response": "первый ответ",
        "next_response": "следующий ответ", "resolution": "решение",
        "all_hours": "круглосуточно", "business_hours": "рабочее время",
        "late": "позже срока", "within": "до {edge} % срока", "share": "доля в срок, %",
        "answers": "доля измеренных сроков, %",
    },
    "en": {
        "hours": "Tickets by hour of day", "days": "Tickets by weekday", "hour": "hour",
        "tickets": "tickets", "compliance": "SLA compliance",
        "response": "How much of the target the answers took", "trend": "SLA compliance: trend",
        "met": "met", "breached": "breached", "none": "No data this month",
        "of": "of", "median": "median", "p90": "90th percentile", "total": "All",
        "critical": "Critical", "major": "Major", "minor": "Minor",
        "technical": "Technical", "first_response": "first response",
        "next_response": "next response", "resolution": "resolution",
        "all_hours": "24/7", "business_hours": "business hours",
        "late": "late", "within": "within {edge} %", "share": "in time, %",
        "answers": "share of measured timers, %",
    },
}
_BAR = "#3b6ea8"
_PEAK = "#c0392b"
_MET = "#2e8b57"
_BREACHED = "#c0392b"
_PREVIOUS = "#9aa5b1"
# Within 25, 50, 75, 100 % of the target, and late: green to red.
_SHARES = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#d73027")


def _words(locale: str) -> dict[str, str]:
    return _WORDS.get(locale, _WORDS["en"])


def _figure(height: float) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _empty(axes: Any, words: dict[str, str]) -> None:
    axes.text(0.5, 0.5, words["none"], ha="center", va="center", transform=axes.transAxes,
              fontsize=14, color="#777777")
    axes.set_axis_off()


def _row_label(row: TimerRow, words: dict[str, str], locale: str) -> str:
    """``Критический · первый ответ`` and, below, ``≤ 30 мин, круглосуточно``."""
    kind = words["all_hours" if row.always_open else "business_hours"]
    targets = " / ".join(format_duration(t, locale) for t in row.targets)
    return (f"{words.get(row.priority, row.priority)} · {words.get(row.timer, row.timer)}\n"
            f"≤ {targets}, {kind}")


def _right_labels(axes: Any, positions: Sequence[int], labels: Sequence[str], fontsize: int) -> None:
    """Figures for each bar on the right-hand side, where the layout leaves room for them."""
    right = axes.twinx()
    right.set_ylim(axes.get_ylim())
    right.set_yticks(list(positions), list(labels), fontsize=fontsize)
    right.tick_params(axis="y", length=0)


def _height(rows: int) -> float:
    return max(3.0, 1.2 + 0.62 * rows)


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

    words = _words(locale)
    figure = Figure(figsize=(9, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    hours_ax, days_ax = figure.subplots(2, 1)
    hours_ax.bar(range(24), list(by_hour), color=_colours(by_hour))
    hours_ax.set_title(words["hours"])
    hours_ax.set_xlabel(words["hour"])
    hours_ax.set_ylabel(words["tickets"])
    hours_ax.set_xticks(range(24))
    hours_ax.set_xlim(-0.6, 23.6)
    days_ax.bar(range(7), list(by_weekday), color=_colours(by_weekday))
    days_ax.set_title(words["days"])
    days_ax.set_ylabel(words["tickets"])
    days_ax.set_xticks(range(7), WEEKDAYS.get(locale, WEEKDAYS["en"]))
    for axes in (hours_ax, days_ax):
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(axis="y", alpha=0.3)
        axes.set_axisbelow(True)
    return _png(figure)


def compliance_png(rows: Sequence[TimerRow], locale: str, title: str) -> bytes:
    """Per priority and timer: the share met (green) and breached (red) of the decided."""
    words = _words(locale)
    shown = [r for r in rows if r.met + r.breached]
    figure, axes = _figure(_height(len(shown)))
    figure.suptitle(f"{words['compliance']}: {title}")
    if not shown:
        _empty(axes, words)
        return _png(figure)
    positions = list(range(len(shown)))[::-1]
    met = [100 * r.met / (r.met + r.breached) for r in shown]
    axes.barh(positions, met, color=_MET, label=words["met"])
    axes.barh(positions, [100 - m for m in met], left=met, color=_BREACHED,
              label=words["breached"])
    _right_labels(axes, positions, [
        f"{r.met} {words['of']} {r.measured} · {format_decimal(r.compliance or 0.0, locale)} %"
        for r in shown], fontsize=10)
    axes.set_yticks(positions, [_row_label(r, words, locale) for r in shown], fontsize=9)
    axes.set_xlim(0, 100)
    axes.set_xticks([0, 25, 50, 75, 100])
    axes.set_xlabel(words["share"])
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    return _png(figure)


def response_png(rows: Sequence[TimerRow], locale: str, title: str) -> bytes:
    """Per priority and timer: answers by share of the target used, median and 90th percentile."""
    words = _words(locale)
    shown = [r for r in rows if r.answered]
    figure, axes = _figure(_height(len(shown)))
    figure.suptitle(f"{words['response']}: {title}")
    if not shown:
        _empty(axes, words)
        return _png(figure)
    positions = list(range(len(shown)))[::-1]
    names = [words["within"].format(edge=edge) for edge in BUCKETS] + [words["late"]]
    left = [0.0] * len(shown)
    for index, (name, colour) in enumerate(zip(names, _SHARES, strict=True)):
        widths = [100 * r.distribution[index] / r.answered for r in shown]
        axes.barh(positions, widths, left=left, color=colour, label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    _right_labels(axes, positions, [
        f"{words['median']} {format_duration(r.median or 0, locale)}\n"
        f"{words['p90']} {format_duration(r.p90 or 0, locale)}" for r in shown], fontsize=9)
    axes.set_yticks(positions, [_row_label(r, words, locale) for r in shown], fontsize=9)
    axes.set_xlim(0, 100)
    axes.set_xticks([0, 25, 50, 75, 100])
    axes.set_xlabel(words["answers"])
    figure.legend(loc="outside lower center", ncols=len(names), fontsize=8, frameon=False)
    return _png(figure)


def trend_png(
    trend: Sequence[TrendRow], previous_month: str, month: str, locale: str, title: str
) -> bytes:
    """Compliance per priority and in total: the previous month (grey) beside this one."""
    words = _words(locale)
    figure, axes = _figure(4.5)
    figure.suptitle(f"{words['trend']}: {title}")
    if not any(t.previous is not None or t.current is not None for t in trend):
        _empty(axes, words)
        return _png(figure)
    x = list(range(len(trend)))
    width = 0.38
    for offset, label, colour, values in (
        (-width / 2, previous_month, _PREVIOUS, [t.previous for t in trend]),
        (width / 2, month, _BAR, [t.current for t in trend]),
    ):
        positions = [i + offset for i in x]
        axes.bar(positions, [v or 0 for v in values], width, color=colour, label=label)
        for position, value in zip(positions, values, strict=True):
            text = "—" if value is None else f"{format_decimal(value, locale)} %"
            axes.text(position, (value or 0) + 1.5, text, ha="center", fontsize=9)
    axes.set_xticks(x, [words.get(t.key, t.key) for t in trend])
    axes.set_ylim(0, 112)
    axes.set_yticks([0, 25, 50, 75, 100])
    axes.set_ylabel(words["share"])
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    return _png(figure)
