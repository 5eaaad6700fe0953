"""Bar charts of unit scorecards, laid out here and drawn as SVG by the templates (no JS)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ipmg_reporting.reports import UnitScorecard

SHORT_NAMES = {
    "punjab": "Punjab",
    "sindh": "Sindh",
    "khyber-pakhtunkhwa": "KP",
    "balochistan": "Balochistan",
    "ajk": "AJK",
    "gilgit-baltistan": "GB",
    "ncsw": "NCSW",
    "mljhr": "MLJHR",
}
# (scorecard field, legend label, colour)
SERIES = (
    ("actions_assigned", "assigned", "#8d99ae"),
    ("completed", "completed", "#2a9d8f"),
    ("overdue", "overdue", "#d62828"),
)
BAR_WIDTH = 16
GROUP_GAP = 22
LEFT = 34
TOP = 14
PLOT_HEIGHT = 140
HEIGHT = TOP + PLOT_HEIGHT + 40


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    series: str
    value: int


@dataclass(frozen=True)
class BarGroup:
    unit: str
    label: str
    label_x: float
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class BarChart:
    quarter: str
    width: int
    height: int
    baseline_y: float
    groups: tuple[BarGroup, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[tuple[str, str], ...]


def scorecard_chart(quarter: str, cards: Sequence[UnitScorecard]) -> BarChart:
    """Actions assigned, completed and overdue per unit in ``quarter``, as grouped bars."""
    shown = [card for card in cards if card.quarter == quarter]
    top_value = max([1, *(getattr(card, name) for card in shown for name, _, _ in SERIES)])
    scale_max = _nice_ceiling(top_value)
    group_width = len(SERIES) * BAR_WIDTH + GROUP_GAP
    baseline = TOP + PLOT_HEIGHT
    groups = []
    for index, card in enumerate(shown):
        left = LEFT + GROUP_GAP / 2 + index * group_width
        bars = []
        for offset, (name, label, color) in enumerate(SERIES):
            value = int(getattr(card, name))
            height = PLOT_HEIGHT * value / scale_max
            bars.append(
                Bar(
                    x=left + offset * BAR_WIDTH,
                    y=baseline - height,
                    width=BAR_WIDTH - 2,
                    height=height,
                    color=color,
                    series=label,
                    value=value,
                )
            )
        groups.append(
            BarGroup(
                unit=card.unit,
                label=SHORT_NAMES.get(card.unit, card.unit),
                label_x=left + len(SERIES) * BAR_WIDTH / 2,
                bars=tuple(bars),
            )
        )
    ticks = tuple(
        Tick(y=baseline - PLOT_HEIGHT * value / scale_max, value=value)
        for value in sorted({0, scale_max // 2, scale_max})
    )
    return BarChart(
        quarter=quarter,
        width=int(LEFT + GROUP_GAP + max(len(shown), 1) * group_width),
        height=HEIGHT,
        baseline_y=baseline,
        groups=tuple(groups),
        ticks=ticks,
        legend=tuple((label, color) for _, label, color in SERIES),
    )


def _nice_ceiling(value: int) -> int:
    """The next round number at or above ``value`` (1, 2, 5, 10, 20, 50, ...), at least 2."""
    if value <= 2:
        return 2
    magnitude = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude
