"""The HTML report, rendered by a real browser (headless Chromium): counts, filters, escaping.

The report comes from a lab run in which one host's inventory name is a script tag; the test
reads the DOM Chromium builds after the page's own script ran (``--dump-dom``).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.hostile_support import arcfleet, edit_inventory, write_playbook

SUBNET = "127.88"
NASTY = "<script>document.body.setAttribute('data-pwned','1')</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Dom(HTMLParser):
    """The parts of the rendered DOM the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.scripts = 0
        self.body: dict[str, str | None] = {}
        self.bars: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._shown: list[str] | None = None
        self.shown = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "body":
            self.body = a
        if tag == "tr" and "host" in (a.get("class") or "").split():
            self.rows.append({**a, "first_cell": None})
            self._cell = []
        if tag == "g" and a.get("class") == "bar":
            self.bars.append(a)
        if tag == "b" and a.get("id") == "shown":
            self._shown = []
        for name in ("src", "srcset", "action"):
            if a.get(name):
                self.external.append(f"{tag} {name}={a[name]}")
        if tag == "link":
            self.external.append(f"link {a}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1]["first_cell"] = "".join(self._cell)
            self._cell = None
        if tag == "b" and self._shown is not None:
            self.shown = "".join(self._shown)
            self._shown = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._shown is not None:
            self._shown.append(data)


def rendered(page: Path, fragment: str, profile: Path) -> _Dom:
    """The DOM Chromium built for ``page`` (after its scripts ran)."""
    assert CHROMIUM is not None
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    return dom


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0002", Scenario(ScenarioKind.AZCM, code="AZCM0042")),))
    with LabFleet.in_thread(tmp / "lab", hosts=5, plan=plan, subnet=SUBNET,
                            unreachable=1) as lab:
        def rename(body: dict[str, dict[str, object]]) -> None:
            hosts = body["hosts"]
            # The name is not a usable Azure resource name: the inventory gives one.
            hosts["lab-0003"] = {**hosts["lab-0003"], "azure": {"resource_name": "lab-0003"}}
            body["hosts"] = {(NASTY if name == "lab-0003" else name): spec
                             for name, spec in hosts.items()}

        edit_inventory(lab, rename)
        done = arcfleet("onboard", "-i", lab.inventory_path, "--playbook",
                        write_playbook(tmp), "--state-dir", tmp / "state",
                        "--connect-rate", "0")
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("HTML report: ")]
    assert len(lines) == 1, done.stderr
    page = Path(lines[0].removeprefix("HTML report: "))
    assert page.name == "report.html" and (page.parent / "failures.csv").is_file()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    return page


def test_the_page_is_self_contained_and_escapes_host_names(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert NASTY not in text  # only its escaped form
    assert "&lt;script&gt;" in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for fetch in ("<link", "<img", " src=", "@import", "url("):
        assert fetch not in text, fetch


def test_report_html_option_writes_the_same_report(report: Path, tmp_path: Path) -> None:
    state = report.parent.parent.parent
    target = tmp_path / "again.html"
    done = arcfleet("report", "--html", target, "--state-dir", state)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8").count('<tr class="host') == 6


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                              "chromium; .ci/run installs it)")
def test_chromium_renders_counts_filters_and_shows_the_script_name_as_text(
    report: Path, tmp_path: Path,
) -> None:
    dom = rendered(report, "", tmp_path / "profile-all")
    assert len(dom.rows) == 6 and dom.shown == "6"
    assert all(row.get("hidden") is None for row in dom.rows)
    assert sum(int(bar["data-count"] or 0) for bar in dom.bars) == 6
    # The script-tag host name is a row whose first cell shows it as text; it never ran.
    (nasty,) = [row for row in dom.rows if row.get("data-host") == NASTY]
    assert nasty["first_cell"] == NASTY
    assert "data-pwned" not in dom.body and dom.scripts == 1
    assert dom.external == []

    failed = rendered(report, "status=failed", tmp_path / "profile-failed")
    visible = [row["data-host"] for row in failed.rows if row.get("hidden") is None]
    assert sorted(visible) == ["lab-0002", "lab-0006"] and failed.shown == "2"

    by_code = rendered(report, "code=AZCM0042", tmp_path / "profile-code")
    assert [r["data-host"] for r in by_code.rows if r.get("hidden") is None] == ["lab-0002"]

    by_text = rendered(report, "q=pwned", tmp_path / "profile-text")
    assert [r["data-host"] for r in by_text.rows if r.get("hidden") is None] == [NASTY]
