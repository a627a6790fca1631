"""The HTML report: one self-contained file an operator can open, mail or attach to a ticket.

Everything is inline (CSS, the script, SVG charts); a Content-Security-Policy forbids every
fetch, and lets run only the page's own script (by its SHA-256), so even a string that escaped
escaping could not run or load anything. Every host-derived string goes through
:func:`html.escape` after :func:`fleet.text.clean` and redaction. The per-host table works
without the script; the script adds filters (status, category, code, text), sorting by any
column, and opening a row's transcript. Filters can be given in the address
(``report.html#status=failed&category=network``), so a link can show a filtered view.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Final

from fleet.redact import redact
from fleet.report import report_rows, write_private
from fleet.store import OutcomeRow, RunStore
from fleet.summary import Summary, summary
from fleet.text import clean

TRANSCRIPT_CAP_CHARS: Final = 32_000  # per host: the tail, where the outcome is
TIMELINE_MAX_HOSTS: Final = 2_000
_LEARN: Final = "https://learn.microsoft.com/en-us/azure/azure-arc/servers"
_CATEGORY_DOCS: Final = {
    "network": f"{_LEARN}/troubleshoot-networking",
    "permissions": f"{_LEARN}/prerequisites#required-permissions",
    "elevation": f"{_LEARN}/prerequisites",
    "host_prerequisite": f"{_LEARN}/prerequisites",
    "agent_missing": f"{_LEARN}/deployment-options",
    "throttled": "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/"
    "request-limits-and-throttling",
}
_DEFAULT_DOC: Final = f"{_LEARN}/troubleshoot-agent-onboard"
_OK: Final = ("connected", "already_connected", "disconnected", "ready")

_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.counts span{display:inline-block;margin:0 .4em .3em 0;padding:.15em .6em;border-radius:1em;
background:#eef1f4}.ok{color:#116329}.bad{color:#b42318}
code,pre{font-family:ui-monospace,monospace;font-size:12.5px}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.6em;margin:0;
max-height:30em;overflow:auto}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;
border-bottom:1px solid #e4e7eb;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f6f8fa;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.host{cursor:pointer}#hosts td:first-child{white-space:nowrap}tr.host:hover{background:#f3f6fa}
.filters label{margin-right:1em}.causes td{max-width:40em}
svg text{font:11px system-ui,sans-serif}
"""

_SCRIPT: Final = """
(function(){
var table=document.getElementById('hosts');
var rows=Array.prototype.slice.call(table.tBodies[0].querySelectorAll('tr.host'));
var sel={status:document.getElementById('f-status'),category:document.getElementById('f-category'),
code:document.getElementById('f-code')};var text=document.getElementById('f-text');
var shown=document.getElementById('shown');
function apply(){var n=0;var q=text.value.toLowerCase();rows.forEach(function(r){
var ok=['status','category','code'].every(function(k){
return !sel[k].value||r.dataset[k]===sel[k].value;})
&&(!q||r.textContent.toLowerCase().indexOf(q)>=0);r.hidden=!ok;
var t=r.nextElementSibling;if(!ok&&t&&t.classList.contains('transcript'))t.hidden=true;if(ok)n++;});
shown.textContent=String(n);}
Object.keys(sel).forEach(function(k){sel[k].addEventListener('change',apply);});
text.addEventListener('input',apply);
function fromHash(){var h=location.hash.replace(/^#/,'');h.split('&').forEach(function(p){
var kv=p.split('=');var k=decodeURIComponent(kv[0]||'');var v=decodeURIComponent(kv[1]||'');
if(sel[k])sel[k].value=v;if(k==='q')text.value=v;});apply();}
window.addEventListener('hashchange',fromHash);
rows.forEach(function(r){r.addEventListener('click',function(){var t=r.nextElementSibling;
if(t&&t.classList.contains('transcript'))t.hidden=!t.hidden;});});
var heads=table.tHead.rows[0].cells;Array.prototype.forEach.call(heads,function(th,i){
th.addEventListener('click',function(){var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');var num=th.dataset.type==='num';
rows.sort(function(a,b){var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
var c=num?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y);return asc?c:-c;});
var body=table.tBodies[0];rows.forEach(function(r){var t=r.nextElementSibling;body.appendChild(r);
if(t&&t.classList.contains('transcript'))body.appendChild(t);});});});
fromHash();
})();
"""


def _e(text: object) -> str:
    """Host-derived text, safe in element content and in quoted attributes."""
    return html.escape(clean(redact(str(text)), single_line=True), quote=True)


def _e_block(text: str) -> str:
    """Multi-line host-derived text (a transcript) for a <pre>."""
    return html.escape(clean(redact(text)), quote=True)


def _href(url: str) -> str:
    return _e(url) if url.startswith("https://") else _e(_DEFAULT_DOC)


def _doc_url(category: str, code: str | None) -> str:
    if code:
        from fleet.azcm.catalog import meanings

        entries = meanings(code)
        if entries and entries[0].doc_url:
            return entries[0].doc_url
    return _CATEGORY_DOCS.get(category, _DEFAULT_DOC)


def _transcript(row: OutcomeRow) -> str:
    if not row.log_file:
        return "(no transcript: the host was not started)"
    try:
        text = Path(row.log_file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(transcript {row.log_file} cannot be read: {exc.strerror})"
    if len(text) > TRANSCRIPT_CAP_CHARS:
        dropped = len(text) - TRANSCRIPT_CAP_CHARS
        text = f"[... first {dropped} characters left out; full file: {row.log_file}]\n" + (
            text[-TRANSCRIPT_CAP_CHARS:]
        )
    return text


def _bar_chart(by_category: dict[str, int]) -> str:
    if not by_category:
        return "<p>No host.</p>"
    peak = max(by_category.values())
    bar_h, gap, label_w, width = 18, 6, 150, 420
    height = len(by_category) * (bar_h + gap)
    parts = [
        f'<svg id="by-category" role="img" aria-label="hosts by category" '
        f'width="{label_w + width + 60}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (category, count) in enumerate(by_category.items()):
        y = i * (bar_h + gap)
        w = max(2, round(width * count / peak))
        colour = "#2da44e" if category in _OK else "#cf222e"
        parts.append(
            f'<g class="bar" data-category="{_e(category)}" data-count="{count}">'
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(category)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}">'
            f"<title>{_e(category)}: {count}</title></rect>"
            f'<text x="{label_w + w + 5}" y="{y + 13}">{count}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def _timeline(rows: list[OutcomeRow]) -> str:
    spans = []
    for row in rows:
        start, end = _parse(row.started_at), _parse(row.finished_at)
        if start is not None and end is not None:
            spans.append((start, end, row))
    if not spans:
        return "<p>No host has both a start and an end.</p>"
    spans.sort(key=lambda span: span[0])
    spans = spans[:TIMELINE_MAX_HOSTS]
    origin = spans[0][0]
    total = max((end - origin).total_seconds() for _, end, _ in spans) or 1.0
    width, lane = 860, 4 if len(spans) > 150 else 10
    height = len(spans) * lane + 24
    parts = [
        f'<svg id="timeline" role="img" aria-label="host durations" width="{width + 20}"'
        f' height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="{height - 6}">0 s</text>'
        f'<text x="{width}" y="{height - 6}" text-anchor="end">{total:.1f} s</text>'
    ]
    for i, (start, end, row) in enumerate(spans):
        x = round((start - origin).total_seconds() / total * width, 1)
        w = max(1.0, round((end - start).total_seconds() / total * width, 1))
        colour = "#2da44e" if row.category in _OK else "#cf222e"
        seconds = (end - start).total_seconds()
        parts.append(
            f'<rect x="{x}" y="{i * lane}" width="{w}" height="{max(lane - 1, 2)}" '
            f'fill="{colour}"><title>{_e(row.host)}: {_e(row.category)}, {seconds:.1f} s'
            "</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _options(values: list[str], field: str) -> str:
    items = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
    return (
        f'<label>{field} <select id="f-{field}"><option value="">all</option>{items}'
        "</select></label>"
    )


def _host_rows(rows: list[OutcomeRow]) -> str:
    out = []
    columns = 8
    for row in rows:
        code = row.azcm_code or ""
        duration = "" if row.duration_s is None else f"{row.duration_s:.1f}"
        cells = [
            (row.host, row.host),
            (row.status, row.status),
            (row.category, row.category),
            (code or "-", code),
            (row.attempts, row.attempts),
            (duration or "-", duration or "0"),
            (row.cause, row.cause),
            (row.fix, row.fix),
        ]
        status_class = "ok" if row.category in _OK else "bad"
        tds = "".join(f'<td data-v="{_e(value)}">{_e(shown)}</td>' for shown, value in cells)
        out.append(
            f'<tr class="host {status_class}" data-host="{_e(row.host)}" '
            f'data-status="{_e(row.status)}" data-category="{_e(row.category)}" '
            f'data-code="{_e(code)}">{tds}</tr>'
            f'<tr class="transcript" hidden><td colspan="{columns}">'
            f"<pre>{_e_block(_transcript(row))}</pre></td></tr>"
        )
    return "".join(out)


def _causes(result: Summary) -> str:
    if not result.top_causes:
        return "<p>No cause: every host reached the goal.</p>"
    body = "".join(
        f"<tr><td>{cause.hosts}</td><td>{_e(cause.category)}"
        f"{' ' + _e(cause.code) if cause.code else ''}</td><td>{_e(cause.cause)}</td>"
        f"<td>{_e(cause.fix)}</td><td><a href=\"{_href(_doc_url(cause.category, cause.code))}\" "
        'rel="noreferrer noopener">docs</a></td></tr>'
        for cause in result.top_causes
    )
    return (
        '<table class="causes"><thead><tr><th>hosts</th><th>category / code</th><th>cause</th>'
        f"<th>fix</th><th>docs</th></tr></thead><tbody>{body}</tbody></table>"
    )


def render_html(store: RunStore, root_run_id: str, *, state_dir: Path | None = None) -> str:
    """The whole report of a root run (and its reruns/resumes) as one HTML document."""
    rows = report_rows(store, root_run_id, all_hosts=True)
    result = summary(store, root_run_id, state_dir=state_dir, top=None)
    statuses = sorted({row.status for row in rows})
    categories = sorted({row.category for row in rows})
    codes = sorted({row.azcm_code for row in rows if row.azcm_code})
    counts = "".join(
        f'<span class="{"ok" if status in ("success", "ready") else "bad"}" '
        f'data-status="{_e(status)}">{_e(status)}: <b>{n}</b></span>'
        for status, n in result.by_status.items()
        if n
    )
    steps = "".join(
        f"<li>{_e(step.label)}: <code>{_e(step.command)}</code></li>" for step in result.next_steps
    ) or f"<li>every host is {_e(result.goal)}</li>"
    by_category = dict(Counter(row.category for row in rows).most_common())
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    title = f"arcfleet run {root_run_id}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p id="headline">{_e(result.headline())}</p>'
        f'<div class="counts" id="counts">{counts}</div>'
        f"<ul id=\"next\">{steps}</ul>"
        f"<h2>Hosts by category</h2>{_bar_chart(by_category)}"
        f"<h2>Timeline of host durations</h2>{_timeline(rows)}"
        f"<h2>Causes, with their fixes</h2>{_causes(result)}"
        "<h2>Hosts</h2>"
        f'<div class="filters">{_options(statuses, "status")}{_options(categories, "category")}'
        f'{_options(codes, "code")}<label>text <input id="f-text" type="search"></label> '
        f'<span><b id="shown">{len(rows)}</b> of {len(rows)} hosts shown; click a host for its '
        "transcript</span></div>"
        '<table id="hosts"><thead><tr><th>host</th><th>status</th><th>category</th>'
        '<th>code</th><th data-type="num">attempts</th><th data-type="num">duration s</th>'
        f"<th>cause</th><th>fix</th></tr></thead><tbody>{_host_rows(rows)}</tbody></table>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html_report(
    store: RunStore, root_run_id: str, path: Path, *, state_dir: Path | None = None
) -> Path:
    """Write the HTML report (owner-only, like every report); return its path."""
    write_private(path, render_html(store, root_run_id, state_dir=state_dir))
    return path
