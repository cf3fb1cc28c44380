"""Draws the benchmark plot: throughput and proxy CPU per operation of HAProxy
and hpgate, each relative to nginx on the same run (nginx = 1.0).
Plain SVG text, no plotting library."""
import statistics

COLORS = {"haproxy": "#8c6bb1", "hpgate": "#2b8cbe", "hpgate 2 threads": "#a6bddb"}


def ratios(rows, key):
    """case -> {path: median(path) / median(nginx)} for the paths that have both."""
    by_case = {}
    for r in rows:
        vals = [v for v in r[key] if v is not None]
        if vals:
            by_case.setdefault(r["case"], {})[r["path"]] = statistics.median(vals)
    out = {}
    for case, paths in by_case.items():
        base = paths.get("nginx")
        if base:
            out[case] = {p: paths[p] / base for p in COLORS if p in paths}
    return out


def panel(x0, title, data, better):
    bar, gap, label_w, scale_w = 10, 14, 190, 220
    top = 40
    hi = max([2.0] + [v for d in data.values() for v in d.values()])
    parts = [f'<text x="{x0}" y="20" font-weight="bold">{title}</text>',
             f'<text x="{x0}" y="34" font-size="10" fill="#555">nginx = 1.0; {better} is better</text>']
    y = top
    for case, d in data.items():
        parts.append(f'<text x="{x0}" y="{y + 12}" font-size="11">{case}</text>')
        for i, (path, v) in enumerate(d.items()):
            w = v / hi * scale_w
            yy = y + i * (bar + 2)
            parts.append(f'<rect x="{x0 + label_w}" y="{yy}" width="{w:.1f}" height="{bar}" fill="{COLORS[path]}"/>')
            parts.append(f'<text x="{x0 + label_w + w + 4:.1f}" y="{yy + 9}" font-size="10">{v:.2f}</text>')
        y += len(d) * (bar + 2) + gap
    one = x0 + label_w + 1 / hi * scale_w
    parts.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{y}" stroke="#333" stroke-dasharray="3,3"/>')
    return parts, y


def draw(rows):
    thr = ratios(rows, "value")
    cpu = ratios(rows, "cpu")
    if not thr:
        return None
    left, h1 = panel(10, "Throughput", thr, "longer")
    right, h2 = panel(480, "Proxy CPU per operation", cpu, "shorter")
    h = max(h1, h2) + 30
    legend = []
    for i, (path, color) in enumerate(COLORS.items()):
        legend.append(f'<rect x="{10 + i * 90}" y="{h - 18}" width="10" height="10" fill="{color}"/>')
        legend.append(f'<text x="{24 + i * 90}" y="{h - 9}" font-size="11">{path}</text>')
    body = "\n".join(left + right + legend)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="960" height="{h}" '
            f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')
