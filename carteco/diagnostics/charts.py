"""Charts as inline SVG (no JavaScript, no network): horizontal bars and a yearly trend."""

from __future__ import annotations

from html import escape
from typing import Any


def _svg_head(title: str, width: int, height: int) -> list[str]:
    """The opening of a chart's SVG: its size, accessible name and visible title."""
    return [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]


def _fmt(value: float) -> str:
    return f"{round(value):,}".replace(",", "\u202f")


def bar_chart(
    items: list[tuple[str, float, str]], title: str, unit: str = "", width: int = 640
) -> str:
    """Horizontal bars: (label, value, colour) each, with the value written at the bar's end."""
    if not items:
        return ""
    row_h, label_w, pad = 24, 250, 8
    height = row_h * len(items) + 36
    top = max(v for _, v, _ in items) or 1
    bar_w = width - label_w - 90
    parts = _svg_head(title, width, height)
    for i, (label, value, colour) in enumerate(items):
        y = 28 + i * row_h
        w = max(1.0, bar_w * value / top)
        parts.append(
            f'<text x="{label_w - pad}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(label[:40])}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{escape(colour)}"><title>{escape(label)} : {_fmt(value)} {escape(unit)}'
            f"</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{_fmt(value)}'
            f"{(' ' + escape(unit)) if unit else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _pct(part: float, whole: float) -> str:
    share = 100 * part / whole
    return f"{share:.0f} %" if share >= 1 or share == 0 else "< 1 %"


def share_chart(
    items: list[tuple[str, float, str]],
    unknown: int,
    total: int,
    title: str,
    unit: str,
    unknown_label: str,
    width: int = 640,
) -> str:
    """Bars of the categories known, each with its share of the `total - unknown` units whose
    category is known; the unknown ones are counted apart, never drawn as a category. With no
    category known, a sentence says so instead of a chart."""
    known = total - unknown
    if total <= 0:
        return ""
    if known <= 0 or not items:
        return (
            f'<p class="missing chart-vide"><b>{escape(title)}</b> : {escape(unknown_label)} '
            f"pour {'la' if total == 1 else 'les'} {_fmt(total)} {escape(unit)} — pas de "
            "répartition à montrer.</p>"
        )
    row_h, label_w, pad = 24, 250, 8
    height = row_h * len(items) + 36 + (22 if unknown else 0) + 18
    top = max(v for _, v, _ in items) or 1
    bar_w = width - label_w - 150
    parts = _svg_head(title, width, height)
    for i, (label, value, colour) in enumerate(items):
        y = 28 + i * row_h
        w = max(1.0, bar_w * value / top)
        text = f"{_fmt(value)} ({_pct(value, known)})"
        parts.append(
            f'<text x="{label_w - pad}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(label[:40])}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{escape(colour)}"><title>{escape(label)} : {escape(text)}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{escape(text)}</text>'
        )
    y = 28 + len(items) * row_h + 14
    parts.append(
        f'<text x="0" y="{y}" font-size="11" fill="#555">Parts calculées sur les '
        f"{_fmt(known)} {escape(unit)} dont la catégorie est renseignée (sur {_fmt(total)})"
        "</text>"
    )
    if unknown:
        parts.append(
            f'<text class="inconnu" x="0" y="{y + 20}" font-size="12" fill="#b71c1c">'
            f"{escape(unknown_label)} : {_fmt(unknown)} {escape(unit)} "
            f"({_pct(unknown, total)} du total), hors des parts</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(years: list[dict[str, Any]], title: str, min_sales: int, width: int = 640) -> str:
    """Sales per year (bars) and median €/m² of premises (line, only where enough sales)."""
    if not years:
        return ""
    height, left, right, top, bottom = 260, 60, 60, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(years)
    step = plot_w / n
    max_sales = max(y["sales"] for y in years) or 1
    medians = [y["local"]["median_eur_m2"] for y in years]
    max_med = max((m for m in medians if m is not None), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#555"/>',
    ]
    points = []
    for i, y in enumerate(years):
        x = left + i * step
        h = plot_h * y["sales"] / max_sales
        parts.append(
            f'<rect x="{x + step * 0.2:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.6:.1f}" '
            f'height="{h:.1f}" fill="#b0c4de"><title>{y["year"]} : {y["sales"]} ventes</title>'
            "</rect>"
            f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="12">{y["year"]}</text>'
            f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle" '
            f'font-size="11" fill="#555">n={y["local"]["sales"]}</text>'
        )
        m = y["local"]["median_eur_m2"]
        if m is not None:
            py = top + plot_h - plot_h * m / max_med * 0.9
            points.append((x + step / 2, py, m))
        else:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{top + 14}" text-anchor="middle" '
                f'font-size="10" fill="#a00">&lt; {min_sales} ventes</text>'
            )
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    for px, py, m in points:
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="#c0392b">'
            f"<title>médiane {_fmt(m)} €/m²</title></circle>"
            f'<text x="{px:.1f}" y="{py - 8:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#c0392b">{_fmt(m)} €/m²</text>'
        )
    parts.append(
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" font-size="11" fill="#555">'
        "barres : ventes (toutes natures) · ligne : médiane €/m² des locaux d'activité"
        "</text></svg>"
    )
    return "".join(parts)
