"""A lab Windows host's Task Scheduler and temporary directory: the cleanup arcfleet leaves behind.

arcfleet's private directory on Windows comes with a one-shot scheduled task registered through the
Task Scheduler COM API and a sweep of old leftovers (:mod:`fleet.azcm.windows_private`). The lab
recognises those fragments in the scripts it receives (:func:`parse_timer`, :func:`parse_sweep`:
regexes over the text, so a script that stops registering the task registers nothing here) and
simulates the effect: :class:`TaskScheduler` keeps each task, fires it when its time comes (on the
lab's event loop) or on demand (:meth:`TaskScheduler.fire_all`, so a test need not wait 15
minutes), and firing deletes the directory and then the task, as the real action does.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleet.lab.host import LabHost

_DIR_NAME = re.compile(r"arcfleet-[0-9a-f]{32}")
_TIMER = re.compile(
    r"^try \{\n    \$leaf = Split-Path -Leaf \$dir\n"
    r"    \$scheduler = New-Object -ComObject Schedule\.Service\n"
    r".*\n    \$at = \(Get-Date\)\.AddSeconds\((?P<after>\d+)\)\n"
    r".*\.DeleteTask\(''\{1\}'', 0\)' -f \$encodedDir, \$leaf\n"
    r".*\n    \$action\.Path = 'powershell\.exe'\n"
    r".*\n    \[void\]\$folder\.RegisterTaskDefinition\(\$leaf, \$task, 6, \$runAs, \$null, "
    r"\$logon\)\n\} catch \{\n.*\}\n$",
    re.DOTALL,
)
_SWEEP = re.compile(
    r"^\$cutoff = \(Get-Date\)\.ToUniversalTime\(\)\.AddSeconds\(-(?P<after>\d+)\)\n"
    r"foreach \(\$old in @\(Get-ChildItem -LiteralPath \$env:TEMP -Directory -Force "
    r"-ErrorAction SilentlyContinue\)\) \{\n"
    r"    if \(\$old\.Name -cmatch '\^arcfleet-\[0-9a-f\]\{32\}\$' "
    r"-and \$old\.CreationTimeUtc -lt \$cutoff\) \{\n"
    r"        Remove-Item -LiteralPath \$old\.FullName -Recurse -Force "
    r"-ErrorAction SilentlyContinue\n"
    r".*DeleteTask\(\$old\.Name, 0\) \} catch \{ \}\n    \}\n\}\n$",
    re.DOTALL,
)
_CANCEL = re.compile(
    r"^try \{ \$scheduler = New-Object -ComObject Schedule\.Service; \$scheduler\.Connect\(\); "
    r"\$scheduler\.GetFolder\('\\'\)\.DeleteTask\(\(Split-Path -Leaf \$dir\), 0\) \} "
    r"catch \{ \}\n$"
)


def parse_timer(text: str) -> int | None:
    """Seconds after which the task fires, if ``text`` is the timed-cleanup fragment."""
    match = _TIMER.match(text)
    return int(match.group("after")) if match else None


def parse_sweep(text: str) -> int | None:
    """The age (s) beyond which leftovers go, if ``text`` is the sweep fragment."""
    match = _SWEEP.match(text)
    return int(match.group("after")) if match else None


def is_cancel(text: str) -> bool:
    return _CANCEL.match(text) is not None


@dataclass
class ScheduledTask:
    name: str
    directory: str  # the Windows path the action removes
    run_as: str
    after_s: int
    handle: asyncio.TimerHandle | None = None


@dataclass
class TaskScheduler:
    """One lab host's scheduled tasks (only the ones arcfleet registers)."""

    host: LabHost
    tasks: dict[str, ScheduledTask] = field(default_factory=dict)
    #: history, for tests: every task registered, fired, deleted; every leftover swept
    registered: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)

    def register(self, directory: str, after_s: int, *, elevated: bool) -> None:
        name = directory.rstrip("\\").rsplit("\\", 1)[-1]
        task = ScheduledTask(name, directory, "S-1-5-18" if elevated else "user", after_s)
        old = self.tasks.pop(name, None)
        if old is not None and old.handle is not None:
            old.handle.cancel()
        task.handle = asyncio.get_running_loop().call_later(after_s, self.fire, name)
        self.tasks[name] = task
        self.registered.append(name)

    def delete(self, name: str) -> bool:
        task = self.tasks.pop(name, None)
        if task is None:
            return False
        if task.handle is not None:
            task.handle.cancel()
        self.deleted.append(name)
        return True

    def fire(self, name: str) -> bool:
        """Run the task's action now: remove the directory, then unregister the task."""
        task = self.tasks.pop(name, None)
        if task is None:
            return False
        if task.handle is not None:
            task.handle.cancel()
        self._remove(task.directory)
        self.fired.append(name)
        return True

    def fire_all(self) -> list[str]:
        """Fire every pending task, as if their time had come."""
        names = list(self.tasks)
        for name in names:
            self.fire(name)
        return names

    def pending(self) -> list[str]:
        return sorted(self.tasks)

    def sweep(self, temp_dir: str, older_than_s: int) -> None:
        """Remove ``arcfleet-<32 hex>`` directories in ``temp_dir`` created (the lab reads the
        modification time) more than ``older_than_s`` ago, and their tasks."""
        local = self.host.local_path(temp_dir)
        if not local.is_dir():
            return
        cutoff = time.time() - older_than_s
        for entry in local.iterdir():
            if _DIR_NAME.fullmatch(entry.name) and entry.is_dir() and (
                entry.stat().st_mtime < cutoff
            ):
                shutil.rmtree(entry, ignore_errors=True)
                self.delete(entry.name)
                self.swept.append(entry.name)

    def _remove(self, directory: str) -> None:
        local: Path = self.host.local_path(directory)
        if local.is_dir() and self.host.fs_root in local.parents:
            shutil.rmtree(local, ignore_errors=True)
