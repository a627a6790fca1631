"""Installing the agent on Windows: ``install_windows_azcmagent.ps1`` or, offline, ``msiexec``.

Online, Microsoft's script downloads and installs the MSI and writes its verdict to ``-OutFile``
as JSON (``{"status": "failed", "error": {"code": "AZCM01xx", "message": ...}}``). Offline,
arcfleet runs ``msiexec /i <msi> /qn /l*v <log>`` itself and maps msiexec's exit code to the code
the script would have used (the 2026 troubleshooting table). Either way success is checked with
``azcmagent version`` afterwards, never with ``$LASTEXITCODE``: a script that ends in ``return``
does not set it (reference section 7.2).

These are PowerShell texts for WinRM, kept apart from the connect script on purpose: the install
is its own command, so the connect path (step by step or one script) does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.azcm.diagnosis import Diagnosis
from fleet.azcm.install_linux import diagnose_code, parse_output
from fleet.transport.powershell import quote

SCRIPT_NAME = "install_windows_azcmagent.ps1"
ONLINE_URL = "https://aka.ms/azcmagent-windows"
MSI_NAME = "AzureConnectedMachineAgent.msi"
OUTPUT_NAME = "install.json"
MSI_LOG_NAME = "installationlog.txt"

#: msiexec exit codes and the AZCM code the install script reports for each (2026 table)
MSIEXEC_CODES: dict[int, str] = {
    1603: "AZCM0156",  # fatal error during installation
    112: "AZCM0158",  # not enough disk space
    1618: "AZCM0159",  # another installation is in progress (retried)
    1622: "AZCM0160",  # cannot open the installation log file
    1633: "AZCM0153",  # platform not supported (not x64)
}
#: msiexec success codes: 3010 = installed, a reboot is pending (the agent does not need it)
MSIEXEC_OK = frozenset({0, 3010})


@dataclass(frozen=True)
class WindowsInstall:
    """One install run in ``workdir`` (a private directory on the host)."""

    workdir: str
    proxy_url: str | None = None
    offline_msi: bool = False  # the MSI was uploaded to workdir\MSI_NAME

    @property
    def msi_path(self) -> str:
        return f"{self.workdir}\\{MSI_NAME}"

    @property
    def log_path(self) -> str:
        return f"{self.workdir}\\{MSI_LOG_NAME}"

    @property
    def output_path(self) -> str:
        return f"{self.workdir}\\{OUTPUT_NAME}"

    @property
    def script_path(self) -> str:
        return f"{self.workdir}\\{SCRIPT_NAME}"

    def msiexec_script(self) -> str:
        """Run msiexec and exit with its own code (Start-Process -Wait, so the exit code is the
        installer's, not the shell's)."""
        args = f"/i {_dq(self.msi_path)} /qn /l*v {_dq(self.log_path)}"
        return (
            f"$p = Start-Process -FilePath 'msiexec.exe' -ArgumentList {quote(args)} "
            "-Wait -PassThru -NoNewWindow\n"
            "exit $p.ExitCode\n"
        )

    def script_run(self) -> str:
        """Online: download Microsoft's script and run it with -OutFile (and -Proxy)."""
        lines = ["[Net.ServicePointManager]::SecurityProtocol = "
                 "[Net.SecurityProtocolType]::Tls12"]
        download = f"Invoke-WebRequest -UseBasicParsing -Uri {quote(ONLINE_URL)} " \
                   f"-OutFile {quote(self.script_path)}"
        if self.proxy_url:
            download += f" -Proxy {quote(self.proxy_url)}"
        lines.append(download)
        run = f"& {quote(self.script_path)} -OutFile {quote(self.output_path)}"
        if self.proxy_url:
            run += f" -Proxy {quote(self.proxy_url)}"
        if self.offline_msi:
            run += f" -AltDownload {quote(self.msi_path)}"
        lines += [run, "exit 0"]
        return "\n".join(lines) + "\n"

    def read_output_script(self) -> str:
        return (
            f"if (Test-Path -LiteralPath {quote(self.output_path)}) "
            f"{{ Get-Content -Raw -LiteralPath {quote(self.output_path)} }}\n"
        )

    def log_errors_script(self, lines: int = 20) -> str:
        """The msiexec log's last error lines (``Return value 3``, ``Error 1603``...)."""
        return (
            f"if (Test-Path -LiteralPath {quote(self.log_path)}) {{\n"
            f"  Get-Content -LiteralPath {quote(self.log_path)} | "
            "Select-String -Pattern 'error|return value 3' | "
            f"Select-Object -Last {int(lines)} | ForEach-Object {{ $_.Line }}\n"
            "}\n"
        )


def uninstall_script() -> str:
    """msiexec /x by the product's registry entry (the MSI is not needed to remove it)."""
    return (
        "$key = Get-ChildItem 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall' | "
        "Where-Object { $_.GetValue('DisplayName') -eq 'Azure Connected Machine Agent' } | "
        "Select-Object -First 1\n"
        "if (-not $key) { [Console]::Error.WriteLine('Azure Connected Machine Agent is not "
        "installed'); exit 0 }\n"
        "$p = Start-Process -FilePath 'msiexec.exe' -ArgumentList ('/x ' + $key.PSChildName + "
        "' /qn') -Wait -PassThru -NoNewWindow\n"
        "exit $p.ExitCode\n"
    )


def _dq(path: str) -> str:
    return f'"{path}"'


def msiexec_verdict(exit_status: int | None, log_errors: str) -> Diagnosis | None:
    """None on success; else the documented code for msiexec's exit status."""
    if exit_status in MSIEXEC_OK:
        return None
    code = MSIEXEC_CODES.get(exit_status if exit_status is not None else -1, "AZCM0149")
    line = next((ln for ln in reversed(log_errors.splitlines()) if ln.strip()), "")
    message = f"msiexec exited {exit_status}" + (f": {line.strip()[:400]}" if line else "")
    # AZCM0159 (another install running) is RETRY in the catalog: the stage retries it.
    return diagnose_code(code, message, platform="windows")


def script_verdict(output: str) -> Diagnosis | None:
    """The -OutFile JSON of install_windows_azcmagent.ps1: None on success, else the code's
    diagnosis. No JSON: None here; the ``azcmagent version`` check that follows decides."""
    doc = parse_output(output)
    if doc is None or doc.get("status") == "success":
        return None
    error = doc.get("error")
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    return diagnose_code(code, message, platform="windows")
