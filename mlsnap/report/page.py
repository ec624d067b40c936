"""The HTML of ``mlsnap report``: one file, every script and style inline, nothing fetched.

Charts are Vega-Lite specs drawn by Vega, Vega-Lite and Vega-Embed, inlined from the bundle that
``vl-convert-python`` (the ``mlsnap[report]`` extra) ships. Recorded text is untrusted: it enters
the tables through ``html.escape`` (control characters shown as escapes first), and the charts
through JSON in a ``<script type="application/json">`` element whose ``<``, ``>`` and ``&`` are
``\\u`` escapes, so no text can end that element. A Content-Security-Policy allows only this
page's own two scripts (by hash) and no network at all: even a slip in the escaping could not run
an injected script or load anything.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mlsnap.errors import MissingExtra, MlsnapError
from mlsnap.fsutil import human_size
from mlsnap.jsonout import jsonable
from mlsnap.textsafe import escape

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}
MAX_TABLE_CELL = 200  # characters of a param value shown in a table cell


@dataclass(frozen=True)
class Library:
    """The charting library's JavaScript, ready to inline, and the versions it holds."""

    script: str
    versions: str


def charting_library() -> Library:
    """Vega + Vega-Lite + Vega-Embed as one script, from vl-convert-python (cached per version:
    building the bundle takes vl-convert ~2 s, reading it back ~1 ms)."""
    try:
        import vl_convert
    except ImportError:
        raise MissingExtra("mlsnap report", "the charting library (vl-convert-python)",
                           "report") from None
    versions = (f"vega {vl_convert.get_vega_version()}, vega-lite "
                f"{vl_convert.get_vegalite_versions()[-1]}, vega-embed "
                f"{vl_convert.get_vega_embed_version()}")
    cache = _cache_dir() / f"vega-bundle-{hashlib.sha1(versions.encode()).hexdigest()[:16]}.js"
    try:
        script = cache.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        script = ""
    if "window.vegaEmbed=" not in script:
        script = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;")
        try:
            from mlsnap.fsutil import atomic_write

            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, script.encode("utf-8"))
        except OSError:
            pass  # no cache: the next report builds the bundle again
    if "</script" in script.lower() or "<!--" in script:
        raise MlsnapError(f"{cache}: the charting library's script cannot be inlined in HTML "
                          "safely; delete the file and run the command again")
    return Library(script, versions)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlsnap"


# --------------------------------------------------------------------------- text into HTML


def text(value: Any) -> str:
    """Recorded text for the page: control characters as escapes, then HTML-escaped."""
    return html.escape(escape(str(value)), quote=True)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        shown = str(value).lower()
    elif isinstance(value, float):
        shown = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        shown = json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)
    else:
        shown = str(value)
    if len(shown) > MAX_TABLE_CELL:
        shown = shown[:MAX_TABLE_CELL - 1] + "…"
    return text(shown)


def _shown(value: str) -> str:
    """Recorded text for a chart (drawn as text, never as markup): control characters and
    bidirectional overrides shown as escapes, as on a terminal; long values cut."""
    shown = escape(value)
    return shown if len(shown) <= MAX_TABLE_CELL else shown[:MAX_TABLE_CELL - 1] + "…"


def script_json(value: Any) -> str:
    """JSON that can sit inside ``<script type="application/json">``: nothing in it can close
    the element or start a comment, whatever the recorded text holds."""
    raw = json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, esc in _JSON_ESCAPES.items():
        raw = raw.replace(char, esc)
    return raw


def _anchor(commit: str) -> str:
    return f"snap-{commit}" if all(c in "0123456789abcdef" for c in commit) else "snap-invalid"


def _digest(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _asset(name: str) -> str:
    return resources.files("mlsnap.report").joinpath("assets", name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the page


def render(data: dict[str, Any], library: Library) -> str:
    """The whole page."""
    page_js = _asset("page.js")
    snaps = data["snapshots"]
    charts = chart_data(data)
    csp = ("default-src 'none'; "
           f"script-src {_digest(library.script)} {_digest(page_js)} 'unsafe-eval'; "
           "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
           "base-uri 'none'; form-action 'none'")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(data["names"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mlsnap report: {text(data['title'])}</title>",
        f"<style>{_asset('page.css')}</style></head><body>",
        f"<header><h1>mlsnap report: {text(data['title'])}</h1>",
        (f"<p>{len(snaps)} snapshot(s) of {text(names)}, oldest first in the charts, newest "
        f"first in the tables; generated {generated} by mlsnap {text(data['version'])} "
        f"({text(library.versions)}).</p>"),
        ("<p>Click a point to see its snapshot below. Shapes: ● snapshot, ◆ tagged, ■ HEAD, "
        "▲ best value of that metric.</p></header><main>"),
        ("<noscript><p class=\"empty\">The charts need JavaScript; the tables below do not."
        "</p></noscript>"),
    ]
    if data["notes"]:
        parts.append('<ul class="notes">' + "".join(f"<li>{text(n)}</li>" for n in data["notes"])
                     + "</ul>")
    parts.append('<div class="controls"><label><input type="checkbox" id="log-scale"> log '
                 'scale (symlog where values reach 0 or below)</label><label>x axis: '
                 '<select id="x-axis"><option value="order">snapshot order</option>'
                 '<option value="date">date</option></select></label></div>')
    parts += _metrics_section(data)
    parts += _scatter_section(data)
    parts += _curves_section(data, charts)
    parts += _sizes_section(charts)
    parts += _params_table(data)
    parts += _snapshots_table(data)
    parts.append("</main>")
    parts.append(f'<script type="application/json" id="mlsnap-data">{script_json(charts)}'
                 "</script>")
    parts.append(f"<script>{library.script}</script>")
    parts.append(f"<script>{page_js}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def chart_data(data: dict[str, Any]) -> dict[str, Any]:
    """What the page script draws: only what charts and tooltips need, by snapshot number."""
    snaps = data["snapshots"]
    params = []
    for key in data["params_differ"]:
        values = []
        for s in snaps:
            if s["error"] is None and key in s["params"]:
                v = s["params"][key]
                if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    v = json.dumps(jsonable(v))
                values.append([s["i"], _shown(v) if isinstance(v, str) else v])
        params.append({"key": _shown(key), "values": values})
    by_metric: dict[str, list[list[Any]]] = {}
    for p in data["curves"]:
        by_metric.setdefault(p["metric"], []).append([p["s"], p["step"], p["value"], p["path"]])
    return {
        "snapshots": [{"i": s["i"], "commit": s["commit"], "short": s["short"],
                       "name": s["name"], "created": s["created"],
                       "message": _shown(s["message"]), "tags": [_shown(t) for t in s["tags"]],
                       "head": s["head"]} for s in snaps],
        "metrics": [{"key": _shown(m["key"]), "best": m["best"], "values": m["values"]}
                    for m in data["metrics"]],
        "params": params,
        "curve_metrics": [{"key": _shown(k), "points": v} for k, v in sorted(by_metric.items())],
        "sizes": [[s["i"], a["path"], a["size"]] for s in snaps for a in s["artifacts"]],
    }


def _best_link(data: dict[str, Any], m: dict[str, Any]) -> str:
    snaps = data["snapshots"]
    links = [f'<a href="#{_anchor(snaps[i]["commit"])}">{text(snaps[i]["short"])}</a>'
             for i in m["best_snapshots"][:3]]
    more = len(m["best_snapshots"]) - 3
    return ", ".join(links) + (f" and {more} more" if more > 0 else "")


def _metrics_section(data: dict[str, Any]) -> list[str]:
    out = ['<section id="metrics"><h2>Metrics across snapshots</h2>']
    if not data["metrics"]:
        out.append('<p class="empty">No snapshot records a numeric metric.</p>')
    out.append('<div class="grid">')
    for n, m in enumerate(data["metrics"]):
        how = "lower is better" if m["lower"] else "higher is better"
        out.append(f'<div><h3>{text(m["key"])} <span class="how">({how}; best '
                   f'{cell(m["best"])} at {_best_link(data, m)})</span></h3>'
                   f'<div class="chart" data-metric="{n}" data-points="{len(m["values"])}">'
                   "</div></div>")
    out.append("</div></section>")
    return out


def _options(labels: list[str], chosen: int) -> str:
    return "".join(f'<option value="{i}"{" selected" if i == chosen else ""}>{text(label)}'
                   "</option>" for i, label in enumerate(labels))


def _scatter_defaults(data: dict[str, Any]) -> tuple[int, int]:
    """(param, metric) shown first: the metric most snapshots record, and the param most of
    those snapshots record."""
    metrics = data["metrics"]
    m = max(range(len(metrics)), key=lambda n: (len(metrics[n]["values"]), -n))
    having = {i for i, _ in metrics[m]["values"]}
    snaps = data["snapshots"]
    keys = data["params_differ"]
    counts = [sum(1 for i in having if k in snaps[i]["params"]) for k in keys]
    p = max(range(len(keys)), key=lambda n: (counts[n], -n))
    return p, m


def _scatter_section(data: dict[str, Any]) -> list[str]:
    out = ['<section id="scatter"><h2>Params against a metric</h2>']
    if not data["params_differ"] or not data["metrics"]:
        out.append('<p class="empty">Nothing to plot: ' + (
            "no param differs between these snapshots." if data["params_differ"] == []
            else "no numeric metric.") + "</p></section>")
        return out
    param, metric = _scatter_defaults(data)
    out.append(f'<div class="controls"><label>param: <select id="scatter-param">'
               f'{_options(data["params_differ"], param)}</select></label><label>metric: '
               f'<select id="scatter-metric">'
               f'{_options([m["key"] for m in data["metrics"]], metric)}'
               "</select></label></div>")
    out.append('<div class="chart" id="chart-scatter"></div></section>')
    return out


def _curves_section(data: dict[str, Any], charts: dict[str, Any]) -> list[str]:
    out = ['<section id="curves"><h2>Learning curves (Checkpointer indexes)</h2>']
    if not charts["curve_metrics"]:
        out.append('<p class="empty">No snapshot here records a folder written by '
                   "<code>mlsnap.Checkpointer</code> (its <code>index.yaml</code>) in the local "
                   "DVC cache.</p>")
    out.append('<div class="grid">')
    for n, c in enumerate(charts["curve_metrics"]):
        out.append(f'<div><h3>{text(c["key"])} <span class="how">against step</span></h3>'
                   f'<div class="chart" data-curve="{n}" data-points="{len(c["points"])}">'
                   "</div></div>")
    out.append("</div></section>")
    return out


def _sizes_section(charts: dict[str, Any]) -> list[str]:
    out = ['<section id="sizes"><h2>Artifact sizes</h2>']
    if not charts["sizes"]:
        out.append('<p class="empty">No snapshot records an artifact.</p></section>')
        return out
    out.append('<div class="chart" id="chart-sizes"></div></section>')
    return out


def _params_table(data: dict[str, Any]) -> list[str]:
    snaps = data["snapshots"]
    keys = data["params_differ"]
    metrics = data["metrics"]
    best = {(m["key"], i) for m in metrics for i in m["best_snapshots"]}
    out = ['<section id="params"><h2>Params that differ, and metrics</h2>',
           (f'<p>{len(keys)} param(s) differ between these snapshots (identical ones are left '
           "out); the best value of each metric is highlighted.</p>"),
           '<div class="scroll"><table><thead><tr><th>#</th><th>commit</th><th>name</th>'
           + "".join(f"<th>{text(k)}</th>" for k in keys)
           + "".join(f"<th>{text(m['key'])} {'↓' if m['lower'] else '↑'}</th>" for m in metrics)
           + "</tr></thead><tbody>"]
    for s in reversed(snaps):
        if s["error"]:
            continue
        cells = [f'<td class="num">{s["i"] + 1}</td>',
                 f'<td><a href="#{_anchor(s["commit"])}"><code>{text(s["short"])}</code></a></td>',
                 f"<td>{text(s['name'])}</td>"]
        cells += [f"<td>{cell(s['params'].get(k))}</td>" for k in keys]
        for m in metrics:
            mark = ' best" title="best ' + text(m["key"]) if (m["key"], s["i"]) in best else ""
            cells.append(f'<td class="num{mark}">{cell(s["metrics"].get(m["key"]))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div></section>")
    return out


def _tags(s: dict[str, Any]) -> str:
    marks = ['<span class="tag head">HEAD</span>'] if s["head"] else []
    marks += [f'<span class="tag">{text(t)}</span>' for t in s["tags"]]
    return "".join(marks) or "-"


def _restore(s: dict[str, Any]) -> str:
    short, name = text(s["short"]), text(s["name"])
    return (f"<code>git checkout {short} &amp;&amp; mlsnap pull --name {name}</code>"
            f"<code>mlsnap get {short} --name {name} -o {name}-{short}</code>")


def _changes(s: dict[str, Any]) -> str:
    lines = []
    shared = s["shared"]
    if shared and shared["shared"]:
        lines.append(f"{human_size(shared['shared'])} of {human_size(shared['total'])} "
                     "unchanged since the previous snapshot (stored once)")
    env = s["env"]
    if env and (env["changes"] or env["more"]):
        lines.append("environment: " + text("; ".join(env["changes"]))
                     + (f" and {env['more']} more package(s)" if env["more"] else ""))
    for f in s["files"]:
        if "error" in f:
            lines.append(f"{text(f['path'])}: {text(f['error'])}")
            continue
        told = []
        for what in ("added", "removed", "changed"):
            part = f[what]
            if part["count"]:
                more = part["count"] - len(part["first"])
                told.append(f"{part['count']} {what} ({text(', '.join(part['first']))}"
                            + (f" and {more} more" if more > 0 else "") + ")")
        lines.append(f"{text(f['path'])}/: " + ("; ".join(told) or "same files"))
    return "<br>".join(lines) or "-"


def _snapshots_table(data: dict[str, Any]) -> list[str]:
    out = ['<section id="snapshots"><h2>Snapshots</h2>',
           ('<div class="scroll"><table><thead><tr><th>#</th><th>commit</th><th>date (UTC)</th>'
           "<th>name</th><th>marks</th><th>message</th><th>artifacts</th>"
           "<th>since the previous one</th><th>restore</th></tr></thead><tbody>")]
    for s in reversed(data["snapshots"]):
        first = (f'<tr id="{_anchor(s["commit"])}"><td class="num">{s["i"] + 1}</td>'
                 f'<td><code title="{text(s["commit"])}">{text(s["short"])}</code></td>'
                 f"<td>{text(s['created'][:16].replace('T', ' '))}</td>"
                 f"<td>{text(s['name'])}</td>")
        if s["error"]:
            out.append(first + f'<td colspan="5" class="err">{text(s["error"])}</td></tr>')
            continue
        artifacts = "<br>".join(f"{text(a['path'])} ({human_size(a['size'])})"
                                for a in s["artifacts"]) or "-"
        code = (f"<br><span class=\"how\">code {text((s['code'] or '')[:7])}"
                f"{' (dirty)' if s['dirty'] else ''}</span>")
        note = " [collected]" if s["collected"] else ""
        out.append(first + f"<td>{_tags(s)}</td><td class=\"msg\">{text(s['message']) or '-'}"
                   f"{note}{code}</td><td>{artifacts}</td><td class=\"msg\">{_changes(s)}</td>"
                   f'<td class="cmd">{_restore(s)}</td></tr>')
    out.append("</tbody></table></div></section>")
    return out
