"""The offline agent bundle: what the operator downloaded once, checked on the jump host.

A bundle is a directory holding any of::

    install_linux_azcmagent.sh     Microsoft's Linux install script
    *.deb / *.rpm                  the azcmagent package for Debian-family / RPM-family hosts
    install_windows_azcmagent.ps1  Microsoft's Windows install script (not needed offline)
    *.msi                          the Windows agent installer (AzureConnectedMachineAgent.msi)

Every file's sha256 is computed once; the install stage records it in each host's transcript with
the upload. The MSI's Authenticode signature is checked with ``osslsigncode verify`` when that
tool is installed on the jump host; ``require_signed`` refuses an MSI whose signature did not
verify (or could not be checked). Nothing here trusts the file names beyond choosing a file.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fleet.azcm.install_linux import SCRIPT_NAME as LINUX_SCRIPT
from fleet.azcm.install_windows import SCRIPT_NAME as WINDOWS_SCRIPT
from fleet.errors import InputError, Problem

#: the largest file a bundle may hold (the agent packages are tens of MB)
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class BundleFile:
    kind: str  # linux-script | deb | rpm | windows-script | msi
    path: Path
    sha256: str
    size: int
    signature: str = ""  # MSI only: signed | unsigned | unverified: ... | not checked
    _data: list[bytes] = field(default_factory=list, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def data(self) -> bytes:
        """The file's bytes, read once and kept (every host gets the same upload)."""
        if not self._data:
            self._data.append(self.path.read_bytes())
        return self._data[0]


@dataclass(frozen=True)
class AgentBundle:
    directory: Path
    files: tuple[BundleFile, ...]

    def first(self, kind: str) -> BundleFile | None:
        return next((f for f in self.files if f.kind == kind), None)

    def manifest(self) -> list[dict[str, object]]:
        return [
            {"file": f.name, "kind": f.kind, "bytes": f.size, "sha256": f.sha256,
             **({"signature": f.signature} if f.kind == "msi" else {})}
            for f in self.files
        ]


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name == LINUX_SCRIPT:
        return "linux-script"
    if name == WINDOWS_SCRIPT.lower():
        return "windows-script"
    for suffix in ("deb", "rpm", "msi"):
        if name.endswith(f".{suffix}"):
            return suffix
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def msi_signature(path: Path) -> str:
    """The MSI's Authenticode state as ``osslsigncode verify`` sees it."""
    tool = shutil.which("osslsigncode")
    if tool is None:
        return "not checked (osslsigncode is not installed on the jump host)"
    try:
        done = subprocess.run(
            [tool, "verify", "-in", str(path)], capture_output=True, text=True, timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not checked ({exc})"
    text = done.stdout + done.stderr
    if done.returncode == 0 and "Signature verification: ok" in text:
        return "signed"
    if "No signature found" in text or "Initialization error" in text:
        return "unsigned"
    reason = next((ln.strip() for ln in text.splitlines() if "fail" in ln.lower()), "failed")
    return f"unverified: {reason[:200]}"


@cache
def load_bundle(directory: str, *, require_signed: bool = False) -> AgentBundle:
    """Check a bundle directory; every problem names the file. Raises InputError (exit 2)."""
    root = Path(directory)
    label = str(root)
    if not root.is_dir():
        raise InputError(Problem(label, None, "agent_bundle", "not a directory"))
    files: list[BundleFile] = []
    problems: list[Problem] = []
    for path in sorted(root.iterdir()):
        kind = _kind(path)
        if kind is None:
            continue
        if not path.is_file():
            problems.append(Problem(str(path), None, None, "not a regular file"))
            continue
        size = path.stat().st_size
        if size == 0 or size > MAX_FILE_BYTES:
            problems.append(Problem(str(path), None, None, f"unlikely size: {size} bytes"))
            continue
        signature = msi_signature(path) if kind == "msi" else ""
        if kind == "msi" and require_signed and signature != "signed":
            problems.append(Problem(str(path), None, None,
                                    f"Authenticode signature required, found: {signature}"))
            continue
        files.append(BundleFile(kind, path, _sha256(path), size, signature))
    kinds = {f.kind for f in files}
    if not kinds & {"linux-script", "msi"}:
        problems.append(Problem(label, None, "agent_bundle",
                                f"holds neither {LINUX_SCRIPT} nor an .msi"))
    if "linux-script" in kinds and not kinds & {"deb", "rpm"}:
        problems.append(Problem(label, None, "agent_bundle",
                                f"{LINUX_SCRIPT} without a .deb or .rpm package"))
    for kind in ("deb", "rpm", "msi"):
        if sum(1 for f in files if f.kind == kind) > 1:
            problems.append(Problem(label, None, "agent_bundle",
                                    f"more than one .{kind}: keep one version per kind"))
    if problems:
        raise InputError(problems)
    return AgentBundle(root, tuple(files))
