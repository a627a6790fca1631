"""The end-of-run summary: counts, every cause (or the first N and how many more), and the one
command that moves the run towards its goal.

Each playbook speaks of its own goal: onboard of hosts *connected*, offboard of hosts
*disconnected*, preflight of hosts *ready* (and its next command onboards exactly those). After a
Ctrl-C or a crash the command is the resume of that run, and the fix of the interrupted hosts
names the same command.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleet.engine.outcome import HostStatus
from fleet.redact import redact
from fleet.report import DEFAULT_STATE_DIR, SETTLED, report_rows
from fleet.store import RunRecord, RunStore
from fleet.text import clean

# The goal of each root command, as the summary speaks of it.
GOALS: Final = {
    "onboard": "connected", "offboard": "disconnected", "preflight": "ready", "install": "ready",
}
TOP_CAUSES: Final = 5
_RESUMABLE: Final = ("interrupted", "crashed")
_AZURE_FLAGS: Final = (
    ("tenant_id", "--tenant-id"),
    ("subscription_id", "--subscription-id"),
    ("resource_group", "--resource-group"),
    ("location", "--location"),
    ("cloud", "--cloud"),
)


@dataclass(frozen=True)
class Cause:
    category: str
    code: str | None
    cause: str
    fix: str
    hosts: int
    example_host: str


@dataclass(frozen=True)
class NextStep:
    """A command the operator can copy, and what it does."""

    label: str
    command: str


@dataclass(frozen=True)
class Summary:
    """What an operator reads at the end of a run: counts, causes, the next command."""

    root_run_id: str
    runs: tuple[str, ...]  # the root and its reruns/resumes, in order
    status: str  # of the latest run
    total: int
    by_status: dict[str, int]
    by_category: dict[str, int]
    top_causes: tuple[Cause, ...]
    rerun_command: str | None  # None when no host needs a rerun
    command: str = "onboard"  # the root run's command: onboard | preflight | offboard
    reruns: int = 0
    resumes: int = 0
    more_causes: int = 0  # causes not listed in top_causes
    next_steps: tuple[NextStep, ...] = ()
    # The install stage: hosts per outcome (installed, upgraded, failed, would_install, ...).
    installs: dict[str, int] = field(default_factory=dict)

    @property
    def goal(self) -> str:
        return GOALS.get(self.command, "connected")

    def as_text(self) -> str:
        lines = [self._headline()]
        lines.append("  " + ", ".join(f"{k}: {n}" for k, n in self.by_status.items() if n))
        if self.installs:
            lines.append("  agent " + self._installs())
        if self.by_category:
            lines.append("by category:")
            lines.extend(f"  {category:<18} {n}" for category, n in self.by_category.items())
        if self.top_causes:
            lines.append("top causes:")
            for cause in self.top_causes:
                code = f" {cause.code}" if cause.code else ""
                lines.append(f"  {cause.hosts:>4} x {cause.category}{code}: {cause.cause}")
                if cause.fix:
                    lines.append(f"         fix: {cause.fix}")
            if self.more_causes:
                lines.append(f"  {self._more()}")
        lines.extend(self._tail())
        return clean(redact("\n".join(lines)))

    def headline(self) -> str:
        return self._headline()

    def _installs(self) -> str:
        return ", ".join(f"{kind.replace('_', ' ')}: {n}" for kind, n in self.installs.items())

    def _more(self) -> str:
        return f"+{self.more_causes} more causes (arcfleet report {self.root_run_id})"

    def _headline(self) -> str:
        extra = []
        if self.reruns:
            extra.append(f"{self.reruns} rerun{'s' if self.reruns > 1 else ''}")
        if self.resumes:
            extra.append(f"{self.resumes} resume{'s' if self.resumes > 1 else ''}")
        more = f" + {', '.join(extra)}" if extra else ""
        return f"run {self.root_run_id}{more} ({self.status}): {self.total} host(s)"

    def _tail(self) -> list[str]:
        if self.next_steps:
            return [f"{step.label}: {step.command}" for step in self.next_steps]
        if self.command == "preflight":
            return ["every host is already connected"]
        return [f"every host is {self.goal}"]

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [_plain(self._headline(), style="bold")]
        status_styles = {
            "success": "green",
            "ready": "green",
            "failed": "red",
            "skipped": "yellow",
            "interrupted": "magenta",
        }
        counts = Text("  ")
        for status, n in self.by_status.items():
            if n:
                counts.append(f"{status}: {n}  ", style=status_styles.get(status, ""))
        parts.append(counts)
        if self.installs:
            parts.append(_plain("  agent " + self._installs()))
        if self.by_category:
            table = Table(title="hosts by category", title_justify="left", show_edge=False)
            table.add_column("category")
            table.add_column("hosts", justify="right")
            for category, n in self.by_category.items():
                table.add_row(_plain(category), str(n))
            parts.append(table)
        if self.top_causes:
            causes = Table(title="top causes", title_justify="left", show_edge=False)
            causes.add_column("hosts", justify="right")
            causes.add_column("category / code", overflow="fold")
            causes.add_column("cause", overflow="fold")
            causes.add_column("fix", overflow="fold")
            for cause in self.top_causes:
                label = cause.category + (f" {cause.code}" if cause.code else "")
                causes.add_row(
                    str(cause.hosts), _plain(label), _plain(cause.cause), _plain(cause.fix)
                )
            parts.append(causes)
            if self.more_causes:
                parts.append(_plain(self._more(), style="yellow"))
        style = "bold" if self.next_steps else "green"
        parts.extend(_plain(line, style=style) for line in self._tail())
        return Group(*parts)


def _plain(text: str, style: str = "") -> Text:
    """Stored text as rich :class:`Text`: never parsed as markup, escapes already removed."""
    return Text(clean(redact(text), single_line=True), style=style)


def _state_flag(state_dir: Path | None) -> str:
    if state_dir is not None and Path(state_dir) != DEFAULT_STATE_DIR:
        return f" --state-dir {shlex.quote(str(state_dir))}"
    return ""


def rerun_command(root_run_id: str, state_dir: Path | None = None,
                  store_url: str | None = None) -> str:
    command = f"arcfleet rerun {root_run_id}{_state_flag(state_dir)}"
    if store_url:  # a shared store's URL never holds a password (it is refused there)
        command += f" --store {shlex.quote(store_url)}"
    return command


def _inventory_flags(record: RunRecord) -> str:
    return "".join(f" -i {shlex.quote(path)}" for path in record.inventory_paths)


def _recalled_flags(record: RunRecord) -> str:
    """The target overrides and host-key options the run was given (a preflight's onboard
    must aim where the preflight looked)."""
    options = record.options
    azure = options.get("azure")
    flags = []
    if isinstance(azure, dict):
        for key, flag in _AZURE_FLAGS:
            if azure.get(key):
                flags.append(f"{flag} {shlex.quote(str(azure[key]))}")
        tags = azure.get("tags")
        if isinstance(tags, dict):
            flags.extend(f"--tag {shlex.quote(f'{k}={v}')}" for k, v in tags.items())
    if options.get("known_hosts"):
        flags.append(f"--known-hosts {shlex.quote(str(options['known_hosts']))}")
    if options.get("accept_new_host_keys"):
        flags.append("--accept-new-host-keys")
    return "".join(f" {flag}" for flag in flags)


def onboard_ready_command(record: RunRecord, state_dir: Path | None = None) -> str:
    """``arcfleet onboard`` of exactly the hosts the preflight ``record`` found ready."""
    return (
        f"arcfleet onboard{_inventory_flags(record)} --limit @ready"
        f"{_recalled_flags(record)}{_state_flag(state_dir)}"
    )


def resume_command(command: str, record: RunRecord, state_dir: Path | None = None) -> str:
    return f"arcfleet {command}{_inventory_flags(record)} --resume{_state_flag(state_dir)}"


def _next_steps(
    command: str,
    root: RunRecord,
    latest_status: str,
    statuses: Sequence[str],
    state_dir: Path | None,
    store_url: str | None = None,
) -> tuple[NextStep, ...]:
    if latest_status in _RESUMABLE:
        return (
            NextStep(
                "resume the run (hosts that finished are not redone)",
                resume_command(command, root, state_dir),
            ),
        )
    steps = []
    if command == "preflight" and HostStatus.READY.value in statuses:
        steps.append(
            NextStep("onboard the hosts found ready", onboard_ready_command(root, state_dir))
        )
    if any(status not in SETTLED for status in statuses):
        goal = GOALS.get(command, "connected")
        what = "check again the hosts that are not ready" if command == "preflight" else (
            f"rerun the hosts that are not {goal}"
        )
        steps.append(NextStep(what, rerun_command(root.id, state_dir, store_url)))
    return tuple(steps)


def summary(
    store: RunStore,
    root_run_id: str,
    *,
    state_dir: Path | None = None,
    top: int | None = TOP_CAUSES,
) -> Summary:
    """The summary of a root run and its reruns/resumes, from the store.

    ``print``/``console.print`` it (rich renderable) or call ``.as_text()``. ``state_dir`` is
    the one the operator used; commands name it unless it is the default. ``top`` bounds the
    causes listed (None: all); the rest are counted in ``more_causes``.
    """
    rows = report_rows(store, root_run_id, all_hosts=True)
    runs = store.runs_under(root_run_id)
    root = store.get_run(root_run_id)
    command = root.kind if root is not None and root.kind in GOALS else "onboard"
    latest_status = runs[-1].status if runs else "unknown"
    by_status = {status.value: 0 for status in HostStatus}
    by_status.update(Counter(row.status for row in rows))
    by_category = dict(Counter(row.category for row in rows).most_common())
    steps = (
        _next_steps(command, root, latest_status, [row.status for row in rows], state_dir,
                    store.url)
        if root is not None
        else ()
    )
    resume = next((s.command for s in steps if "--resume" in s.command), None)
    groups: dict[tuple[str, str | None], list[str]] = {}
    texts: dict[tuple[str, str | None], Counter[tuple[str, str]]] = {}
    for row in rows:
        if row.status in SETTLED:
            continue
        key = (row.category, row.azcm_code)
        groups.setdefault(key, []).append(row.host)
        fix = row.fix
        if resume and row.status == HostStatus.INTERRUPTED.value:
            fix = f"resume the run: {resume}"  # the same command as printed below
        texts.setdefault(key, Counter())[(row.cause, fix)] += 1
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0][0]))
    shown = ranked if top is None else ranked[:top]
    causes = []
    for key, members in shown:
        # The most frequent cause/fix wording within the group represents it.
        (cause, fix), _ = texts[key].most_common(1)[0]
        causes.append(
            Cause(
                category=key[0],
                code=key[1],
                cause=cause,
                fix=fix,
                hosts=len(members),
                example_host=members[0],
            )
        )
    rerun = next((s.command for s in steps if s.command.startswith("arcfleet rerun")), None)
    kinds = Counter(run.kind for run in runs[1:])
    return Summary(
        root_run_id=root_run_id,
        runs=tuple(run.id for run in runs),
        status=latest_status,
        total=len(rows),
        by_status=by_status,
        by_category=by_category,
        top_causes=tuple(causes),
        rerun_command=rerun,
        command=command,
        reruns=sum(n for kind, n in kinds.items() if kind != "resume"),
        resumes=kinds.get("resume", 0),
        more_causes=len(ranked) - len(shown),
        next_steps=steps,
        installs=dict(Counter(row.install for row in rows if row.install).most_common()),
    )
