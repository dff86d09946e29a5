"""The timeline picture as SVG, in one self-contained HTML page: inline CSS, no script, nothing
fetched (a Content-Security-Policy says so to the browser, whatever the text holds).

Task ids, agents, reasons and errors are user text: every one is escaped, and characters
that XML cannot hold are replaced, so the page is well-formed XML too (the tests parse it so).
Hover texts are SVG ``<title>`` elements, which browsers show as tooltips without script.
"""

from __future__ import annotations

import html
import re

from .timeline_layout import BAR_H, CHAR_W, LEFT, LINE_H, TOP_PAD, TRACK_H, Arrow, Bar, Picture

__all__ = ["LEGEND", "html_page", "svg_text"]

#: More arrows than this and they are drawn faint, but for the critical path's.
DENSE = 60

#: Legend key -> its words (see timeline_layout.LEGEND_ORDER).
LEGEND = {
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "timed out",
    "rate_limited": "rate-limited (gave up)",
    "cancelled": "cancelled",
    "retried": "failed, retried",
    "paused": "rate-limited, ran again",
    "unfinished": "unfinished",
    "marker-skipped": "skipped",
    "marker-cancelled": "cancelled before it started",
    "marker-not-run": "ended without running",
    "marker-unstarted": "never started",
    "wait": "waiting (hover: why)",
    "dependency": "dependency",
    "critical": "critical path",
}

#: Colours by how an attempt ended (Okabe-Ito based, told apart without red-green vision too).
_CSS = """
body { margin: 0; background: #ffffff; color: #1f2328; font: 12px system-ui, sans-serif; }
svg { display: block; }
text { font: 12px system-ui, sans-serif; fill: #1f2328; }
.title { font-size: 16px; font-weight: 600; }
.line { fill: #444c56; }
.lane-bg { fill: #f6f8fa; }
.lane-bg.odd { fill: #eef1f4; }
.lane-label { fill: #1f2328; }
.grid { stroke: #d0d7de; stroke-width: 1; }
.tick { fill: #57606a; font-size: 11px; }
.bar { stroke: none; }
.bar:hover, .marker:hover { stroke: #000000; stroke-width: 2; }
.bar-label { fill: #ffffff; font-size: 11px; pointer-events: none; }
.succeeded { fill: #009e73; }
.failed { fill: #d55e00; }
.timed_out { fill: #e69f00; }
.rate_limited { fill: #cc79a7; }
.cancelled { fill: #6e7781; }
.retried { fill: #f0b48a; }
.paused { fill: #e8bfd6; }
.unfinished { fill: url(#pm-hatch); }
.wait { fill: #8c959f; }
.wait.unfinished { fill: url(#pm-hatch); }
.marker { fill: #ffffff; stroke: #6e7781; stroke-width: 1.5; }
.marker.skipped { stroke: #6e7781; }
.marker.cancelled, .marker.not-run { fill: #6e7781; }
.marker.unstarted { stroke: #0072b2; stroke-dasharray: 2 1; }
.arrow { fill: none; stroke: #57606a; stroke-width: 1.2; marker-end: url(#pm-arrow); }
.dense .arrow { stroke-opacity: 0.3; }
.arrow:hover { stroke-opacity: 1; stroke-width: 2; }
.arrow.critical { stroke: #000000; stroke-width: 2.5; stroke-opacity: 1; marker-end: url(#pm-arrow-critical); }
.arrow.release { stroke-dasharray: 5 3; }
.arrow.touching { stroke: none; marker-end: none; }
.bar.critical { stroke: #000000; stroke-width: 2; }
"""

_DEFS = (
    "<defs>"
    '<pattern id="pm-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#56b4e9"/><rect width="3" height="6" fill="#0072b2"/></pattern>'
    '<marker id="pm-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7"'
    ' markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#57606a"/></marker>'
    '<marker id="pm-arrow-critical" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="9" markerHeight="9"'
    ' markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#000000"/></marker>'
    "</defs>"
)

# Characters XML 1.0 cannot hold (controls, lone surrogates, U+FFFE, U+FFFF): replaced, never dropped silently.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: str) -> str:
    """``value`` safe in XML text and in a quoted attribute."""
    return html.escape(_NOT_XML.sub("\ufffd", value), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}"


def html_page(picture: Picture) -> str:
    """The whole HTML page: the picture, its style, a policy that lets the browser fetch nothing."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"/>"
        f"<title>{text(picture.title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n{svg_text(picture)}\n</body></html>\n"
    )


def svg_text(picture: Picture) -> str:
    """The picture as one ``<svg>`` element."""
    width, height = _n(picture.width), _n(picture.height)
    dense = ' class="dense"' if len(picture.arrows) > DENSE else ""  # many arrows: faint, but for the critical path
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg"{dense} width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{text(picture.title)}">',
        _DEFS,
        *_header(picture),
        *_legend(picture),
        *_lanes(picture),
        *_axis(picture),
        '<g class="waits">',
        *(
            f'<rect class="wait{" unfinished" if w.unfinished else ""}" data-task="{text(w.task)}" x="{_n(w.x)}" '
            f'y="{_n(w.y)}" width="{_n(w.w)}" height="{_n(TRACK_H - 1)}"><title>{text(w.title)}</title></rect>'
            for w in picture.waits
        ),
        "</g>",
        '<g class="bars">',
        *(_bar(bar) for bar in picture.bars),
        "</g>",
        '<g class="markers">',
        *(
            f'<rect class="marker {text(m.kind)}" data-task="{text(m.task)}" x="{_n(m.x - 5)}" y="{_n(m.y - 5)}" '
            f'width="10" height="10" transform="rotate(45 {_n(m.x)} {_n(m.y)})"><title>{text(m.title)}</title></rect>'
            for m in picture.markers
        ),
        "</g>",
        '<g class="arrows">',
        *(_arrow(arrow) for arrow in picture.arrows),
        "</g>",
        "</svg>",
    ]
    return "\n".join(parts)


def _header(picture: Picture) -> list[str]:
    y = TOP_PAD + 16
    parts = [f'<text class="title" x="{_n(TOP_PAD)}" y="{_n(y)}">{text(picture.title)}</text>']
    for line in picture.lines:
        y += LINE_H
        parts.append(f'<text class="line" x="{_n(TOP_PAD)}" y="{_n(y)}">{text(line)}</text>')
    return parts


def _legend(picture: Picture) -> list[str]:
    """The keys on one row, wrapped into more where the picture is too narrow."""
    y = TOP_PAD + LINE_H * (1 + len(picture.lines)) + 10
    x = TOP_PAD
    parts = ['<g class="legend">']
    for key in picture.legend:
        words = LEGEND[key]
        width = 22 + len(words) * CHAR_W + 14
        if x + width > picture.width and x > TOP_PAD:
            x, y = TOP_PAD, y + LINE_H
        parts.append(f'<g class="key" data-key="{key}">{_swatch(key, x, y)}')
        parts.append(f'<text x="{_n(x + 22)}" y="{_n(y + 10)}">{text(words)}</text></g>')
        x += width
    parts.append("</g>")
    return parts


def _swatch(key: str, x: float, y: float) -> str:
    if key.startswith("marker-"):
        cx, cy = x + 8, y + 6
        return (
            f'<rect class="marker {key.removeprefix("marker-")}" x="{_n(cx - 4)}" y="{_n(cy - 4)}" width="8" height="8"'
            f' transform="rotate(45 {_n(cx)} {_n(cy)})"/>'
        )
    if key == "wait":
        return f'<rect class="wait" x="{_n(x)}" y="{_n(y + 5)}" width="16" height="{_n(TRACK_H - 1)}"/>'
    if key in ("dependency", "critical"):
        critical = " critical" if key == "critical" else ""
        return f'<path class="arrow{critical}" d="M{_n(x)},{_n(y + 6)} L{_n(x + 16)},{_n(y + 6)}"/>'
    return f'<rect class="bar {key}" x="{_n(x)}" y="{_n(y)}" width="16" height="12"/>'


def _lanes(picture: Picture) -> list[str]:
    parts = ['<g class="lanes">']
    right = picture.width - TOP_PAD
    for index, lane in enumerate(picture.lanes):
        odd = " odd" if index % 2 else ""
        label = lane.label if len(lane.label) * CHAR_W <= LEFT - 2 * TOP_PAD else lane.label[:20] + "…"
        parts.append(
            f'<g class="lane" data-agent="{text(lane.agent)}" data-instance="{lane.instance}">'
            f'<rect class="lane-bg{odd}" x="{_n(TOP_PAD)}" y="{_n(lane.y)}" width="{_n(right - TOP_PAD)}" '
            f'height="{_n(lane.height)}"/>'
            f'<text class="lane-label" x="{_n(TOP_PAD + 6)}" y="{_n(lane.bar_y + 12)}">{text(label)}'
            f"<title>{text(lane.label)}</title></text></g>"
        )
    parts.append("</g>")
    return parts


def _axis(picture: Picture) -> list[str]:
    bottom = picture.lanes[-1].y + picture.lanes[-1].height if picture.lanes else picture.plot_top
    top = picture.plot_top
    return [
        '<g class="axis">',
        *(
            f'<line class="grid" x1="{_n(tick.x)}" y1="{_n(top - 4)}" x2="{_n(tick.x)}" y2="{_n(bottom)}"/>'
            f'<text class="tick" x="{_n(tick.x + 2)}" y="{_n(top - 8)}">{text(tick.label)}</text>'
            for tick in picture.ticks
        ),
        "</g>",
    ]


def _bar(bar: Bar) -> str:
    critical = " critical" if bar.critical else ""
    rect = (
        f'<rect class="bar {bar.ending}{critical}" data-task="{text(bar.task)}" data-attempt="{bar.attempt}" '
        f'x="{_n(bar.x)}" y="{_n(bar.y)}" width="{_n(bar.w)}" height="{_n(BAR_H)}"><title>{text(bar.title)}</title>'
        "</rect>"
    )
    if bar.label is None:
        return rect
    return f'{rect}<text class="bar-label" x="{_n(bar.x + 3)}" y="{_n(bar.y + 12)}">{text(bar.label)}</text>'


def _arrow(arrow: Arrow) -> str:
    bend = max(12.0, abs(arrow.x2 - arrow.x1) / 2)
    d = (
        f"M{_n(arrow.x1)},{_n(arrow.y1)} C{_n(arrow.x1 + bend)},{_n(arrow.y1)} "
        f"{_n(arrow.x2 - bend)},{_n(arrow.y2)} {_n(arrow.x2)},{_n(arrow.y2)}"
    )
    classes = " ".join(
        ["arrow", arrow.kind, *(["critical"] if arrow.critical else []), *(["touching"] if arrow.touching else [])]
    )
    return (
        f'<path class="{classes}" data-source="{text(arrow.source)}" data-target="{text(arrow.target)}" d="{d}">'
        f"<title>{text(arrow.title)}</title></path>"
    )
