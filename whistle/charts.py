"""Small server-side SVG charts for the dashboard: no JavaScript, no library, nothing loaded
from elsewhere. Each chart is an inline `<svg role="img">` with a `<title>` and a `<desc>`,
and writes every bar's label and value as text, so it reads without colour or a mouse.
Labels are escaped; the result is `Markup`, safe to put into a Jinja2 template as is.

No `style` attributes (the pages' CSP forbids inline styles): presentation attributes and
the classes `chart`, `chart-bar`, `chart-track`, `chart-label`, `chart-value`, `chart-none`
(styled, if at all, by the app's stylesheet)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT_SIZE = 12
ROW = 22  # height of one horizontal bar's row
BAR = 14
GAP = 8
MAX_LABEL = 220  # px; longer labels are cut with "…" (the full text stays in a <title>)
BAR_FILL = "#2f6db5"
TRACK_FILL = "#e6ebf2"
TEXT_FILL = "#1f2933"
NONE_TEXT = "—"


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value (a share 0–1 for rates, a count for counts; None for
    "nothing to count"), and the text written beside it (e.g. "75% (3/4)")."""

    label: str
    value: float | None
    text: str


def text_width(text: str) -> float:
    """Rough rendered width in px at FONT_SIZE: wide (CJK) characters count double."""
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")
    return (len(text) - wide) * FONT_SIZE * 0.6 + wide * FONT_SIZE * 1.05


def _fit(text: str, width: float) -> str:
    if text_width(text) <= width:
        return text
    while text and text_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _ident(chart_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", chart_id) or "chart"


def _frame(chart_id: str, title: str, desc: str, width: float, height: float,
           body: list[str]) -> Markup:
    ident = _ident(chart_id)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'id="{ident}" aria-labelledby="{ident}-title {ident}-desc" '
            f'width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-size="{FONT_SIZE}" '
            f'font-family="sans-serif">'
            f'<title id="{ident}-title">{escape(title)}</title>'
            f'<desc id="{ident}-desc">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _desc(bars: Sequence[Bar], empty: str) -> str:
    return "; ".join(f"{b.label}: {b.text}" for b in bars) if bars else empty


def rate_bars(chart_id: str, title: str, bars: Sequence[Bar], *, empty: str = NONE_TEXT,
              width: int = 560) -> Markup:
    """A horizontal bar chart of shares (0–1): one row per bar, label on the left, the bar
    on a full-length track (100%), its text on the right. A bar whose value is None draws
    no bar, only its text (e.g. "—")."""
    return _horizontal(chart_id, title, bars, 1.0, empty, width)


def count_bars(chart_id: str, title: str, bars: Sequence[Bar], *, empty: str = NONE_TEXT,
               width: int = 560) -> Markup:
    """A horizontal bar chart of counts, scaled to the largest."""
    top = max((b.value or 0 for b in bars), default=0)
    return _horizontal(chart_id, title, bars, float(top) or 1.0, empty, width)


def _horizontal(chart_id: str, title: str, bars: Sequence[Bar], full: float, empty: str,
                width: int) -> Markup:
    if not bars:
        height = ROW + GAP
        body = [f'<text class="chart-none" x="0" y="{ROW - 6}" fill="{TEXT_FILL}">'
                f'{escape(empty)}</text>']
        return _frame(chart_id, title, empty, width, height, body)
    label_w = min(MAX_LABEL, max(text_width(b.label) for b in bars)) + GAP
    value_w = max(text_width(b.text) for b in bars) + GAP
    track_w = max(40.0, width - label_w - value_w)
    body: list[str] = []
    for i, b in enumerate(bars):
        y = i * ROW
        mid = y + ROW / 2 + FONT_SIZE / 3
        share = 0.0 if b.value is None else max(0.0, min(1.0, b.value / full))
        label = escape(_fit(b.label, MAX_LABEL))
        body.append(
            f'<g><title>{escape(b.label)}: {escape(b.text)}</title>'
            f'<text class="chart-label" x="{label_w - GAP:.1f}" y="{mid:.1f}" '
            f'text-anchor="end" fill="{TEXT_FILL}">{label}</text>'
            f'<rect class="chart-track" x="{label_w:.1f}" y="{y + (ROW - BAR) / 2:.1f}" '
            f'width="{track_w:.1f}" height="{BAR}" fill="{TRACK_FILL}"/>'
            + (f'<rect class="chart-bar" x="{label_w:.1f}" y="{y + (ROW - BAR) / 2:.1f}" '
               f'width="{track_w * share:.1f}" height="{BAR}" fill="{BAR_FILL}"/>'
               if share > 0 else "")
            + f'<text class="chart-value" x="{label_w + track_w + GAP / 2:.1f}" '
              f'y="{mid:.1f}" fill="{TEXT_FILL}">{escape(b.text)}</text></g>')
    return _frame(chart_id, title, _desc(bars, empty), width, len(bars) * ROW + GAP // 2,
                  body)


def percent(numerator: int, denominator: int) -> Bar:
    """The value and text of a rate: (0.75, "75% (3/4)"), or (None, "—") for 0/0. The
    label is left empty; use `dataclasses.replace` or `rate_bar`."""
    if not denominator:
        return Bar("", None, NONE_TEXT)
    share = numerator / denominator
    return Bar("", share, f"{share:.0%} ({numerator}/{denominator})")


def rate_bar(label: str, numerator: int, denominator: int) -> Bar:
    """A bar for a rate, labelled."""
    p = percent(numerator, denominator)
    return Bar(label, p.value, p.text)


def count_bar(label: str, count: int) -> Bar:
    return Bar(label, count, str(count))
