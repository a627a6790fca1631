import subprocess
import sys

from fleet import __version__


def test_version_command_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleet", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
