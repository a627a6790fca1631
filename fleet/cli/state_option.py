"""The ``--state-dir`` option every command that touches the run store accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

DEFAULT_STATE_DIR: Final = Path(".arcfleet")
STATE_DIR_ENVVAR: Final = "ARCFLEET_STATE_DIR"

state_dir_option = click.option(
    "--state-dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=STATE_DIR_ENVVAR,
    default=DEFAULT_STATE_DIR,
    show_default=True,
    show_envvar=True,
    help="Directory of the run store (SQLite journal, run folders with transcripts).",
)
