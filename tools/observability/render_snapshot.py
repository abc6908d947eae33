#!/usr/bin/env python3
"""Renders the Devices row from a live-check snapshot, as a PNG taken by a real browser.

No Grafana can be installed from the registries this project may use (Debian, PyPI, npm, crates),
so the screenshot in docs/ is drawn from the same data a Grafana would show: the range-query
results of every Devices-row panel target, written by `live_check.py --snapshot FILE.json` while
a real Prometheus scraped `edgepool demo` and a real node-exporter. Each panel is drawn as a line
chart of its series (legend: the labels that differ between them), in the dashboard's order.

Usage: python3 tools/observability/render_snapshot.py SNAPSHOT.json OUT.png [--browser chromium]
Stdlib only; the browser (Debian `chromium`) takes the screenshot headless.
"""

import argparse
import html
import re
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#37872d"]
W, H, PAD_L, PAD_B, PAD_T = 640, 230, 58, 28, 12


def legend_of(fmt_, labels, varying):
    """Grafana's legend: `{{label}}` substituted, else the labels that differ between series."""
    if fmt_:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt_)
    return ", ".join(f"{k}={labels[k]}" for k in varying if k in labels) or "value"


def panels_of(snapshot):
    """[(title, type, unit, [(legend, labels, [(t, v)])])] in dashboard order."""
    out = []
    for p in snapshot["panels"]:
        series = []
        for t in p["targets"]:
            for s in t.get("series", []):
                values = [(float(a), float(b)) for a, b in s.get("values", []) if b is not None]
                if values:
                    series.append((t, s.get("labels", {}), values))
        keys = sorted({k for _, l, _ in series for k in l})
        varying = [k for k in keys if len({l.get(k) for _, l, _ in series}) > 1]
        named = [(legend_of(t.get("legendFormat"), l, varying), l, v) for t, l, v in series]
        out.append((p["title"], p.get("type", "timeseries"), p.get("unit") or "", named))
    return out


def table(title, series):
    if not series:
        return f'<div class="panel"><h3>{html.escape(title)}</h3><p class="none">no data</p></div>'
    cols = sorted({k for _, l, _ in series for k in l})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(l.get(c, ''))}</td>" for c in cols) + "</tr>" for _, l, _ in series
    )
    return f'<div class="panel"><h3>{html.escape(title)}</h3><table><tr>{head}</tr>{rows}</table></div>'


def fmt(v, unit):
    if unit in ("percentunit", "ratio"):
        return f"{v * 100:.0f}%"
    if unit == "bytes":
        for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
            if abs(v) < 1024:
                return f"{v:.1f} {u}"
            v /= 1024
    if unit == "reqps":
        return f"{v:.2f}/s"
    if unit == "celsius":
        return f"{v:.1f}°C"
    return f"{v:.3g}"


def chart(title, unit, series):
    if not series:
        return f'<div class="panel"><h3>{html.escape(title)}</h3><p class="none">no data</p></div>'
    ts = [t for _, _, vs in series for t, _ in vs]
    vs_ = [v for _, _, vs in series for _, v in vs]
    t0, t1 = min(ts), max(ts)
    lo, hi = min(0.0, min(vs_)), max(vs_)
    if unit in ("percentunit", "ratio"):
        hi = max(hi, 1.0)
    hi = hi if hi > lo else lo + 1.0
    pw, ph = W - PAD_L - 10, H - PAD_B - PAD_T

    def x(t):
        return PAD_L + (t - t0) / max(t1 - t0, 1e-9) * pw

    def y(v):
        return PAD_T + ph - (v - lo) / (hi - lo) * ph

    parts = [f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        parts.append(f'<line x1="{PAD_L}" x2="{W - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{html.escape(fmt(v, unit))}</text>')
    for i in range(4):
        t = t0 + (t1 - t0) * i / 3
        parts.append(f'<text x="{x(t):.1f}" y="{H - 8}" class="axis" text-anchor="middle">-{t1 - t:.0f}s</text>')
    for i, (_, _, values) in enumerate(series):
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="2"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{COLORS[i % len(COLORS)]}"></i>{html.escape(name)}'
        f' <b>{html.escape(fmt(values[-1][1], unit))}</b></span>'
        for i, (name, _, values) in enumerate(series)
    )
    return f'<div class="panel"><h3>{html.escape(title)}</h3>{"".join(parts)}<div class="legend">{legend}</div></div>'


def page(snapshot):
    panels = panels_of(snapshot)
    note = (
        f"Rendered from live-check data: a real Prometheus scraping `edgepool demo` (two workers, one 4x "
        f"slowed) and a real node-exporter on one 2-core VM, {snapshot.get('end', 0) - snapshot.get('start', 0):.0f} s "
        f"at {snapshot.get('step', 2)} s steps. {snapshot.get('note', '')[:1].upper() + snapshot.get('note', '')[1:]}."
    )
    body = "".join(table(t, s) if kind == "table" else chart(t, u, s) for t, kind, u, s in panels)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:13px sans-serif; margin:16px; }}
h2 {{ font-size:16px; margin:0 0 4px; }} .note {{ color:#8e8e9e; margin:0 0 12px; max-width:1300px; }}
.grid-wrap {{ display:grid; grid-template-columns:repeat(2, {W + 20}px); gap:10px; }}
.panel:first-child {{ grid-column: 1 / span 2; }}
.panel {{ background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:8px 10px; }}
h3 {{ font-size:13px; margin:0 0 4px; font-weight:500; }} .none {{ color:#8e8e9e; }}
.grid {{ stroke:#2c3235; }} .axis {{ fill:#8e8e9e; font-size:10px; }}
.legend span {{ display:inline-block; margin:2px 12px 0 0; font-size:11px; }}
table {{ border-collapse:collapse; font-size:11px; }} td, th {{ border-bottom:1px solid #2c3235; padding:3px 8px; text-align:left; }}
.legend i {{ display:inline-block; width:12px; height:3px; margin:0 4px 3px 0; }}
</style></head><body><h2>edgepool · Devices</h2><p class="note">{html.escape(note)}</p>
<div class="grid-wrap">{body}</div></body></html>"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshot")
    ap.add_argument("out")
    ap.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = ap.parse_args()
    snapshot = json.loads(Path(args.snapshot).read_text(encoding="utf-8"))
    panels = panels_of(snapshot)
    tables = sum(kind == "table" for _, kind, _, _ in panels)
    charts = (len(panels) - tables + 1) // 2
    with tempfile.TemporaryDirectory(prefix="edgepool-render-") as tmp:
        doc = Path(tmp) / "devices.html"
        doc.write_text(page(snapshot), encoding="utf-8")
        out = Path(args.out).resolve()
        size = f"{2 * (W + 20) + 50},{100 + tables * 140 + charts * (H + 70)}"
        cmd = [args.browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={size}", f"--screenshot={out}", doc.as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0 or not out.exists():
            print(r.stderr, file=sys.stderr)
            return 1
    print(f"wrote {out} ({size} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
