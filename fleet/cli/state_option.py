"""The ``--state-dir`` option every command that touches the run store accepts, with the
``--store`` and ``--store-password`` options that choose a shared PostgreSQL store instead.

``--store`` and ``--store-password`` are not passed to the command functions: they are kept in
the click context, and :func:`store_location` turns them, with ``--state-dir``, into the store
to open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from fleet.store.locate import StoreLocation

DEFAULT_STATE_DIR: Final = Path(".arcfleet")
STATE_DIR_ENVVAR: Final = "ARCFLEET_STATE_DIR"
STORE_ENVVAR: Final = "ARCFLEET_STORE"
STORE_PASSWORD_ENVVAR: Final = "ARCFLEET_STORE_PASSWORD"
_META_KEY: Final = "arcfleet.store"

F = TypeVar("F", bound=Callable[..., Any])


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if param.name:
        ctx.meta.setdefault(_META_KEY, {})[param.name] = value
    return value


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
_store = click.option(
    "--store",
    "store_url",
    envvar=STORE_ENVVAR,
    show_envvar=True,
    expose_value=False,
    callback=_remember,
    metavar="postgresql://USER@HOST:PORT/DB",
    help="A shared PostgreSQL run store instead of the SQLite file in --state-dir (run "
    "folders stay in --state-dir). The password comes from ~/.pgpass, PGPASSWORD or "
    "--store-password, never from the URL.",
)
_store_password = click.option(
    "--store-password",
    "store_password",
    envvar=STORE_PASSWORD_ENVVAR,
    show_envvar=True,
    expose_value=False,
    callback=_remember,
    metavar="env:VAR|file:PATH",
    help="Where the --store password is (a reference, never the password itself).",
)


def store_options(func: F) -> F:
    """--state-dir, --store and --store-password, for the commands that read or write runs."""
    return state_dir_option(_store(_store_password(func)))


def store_location(state_dir: Path) -> StoreLocation:
    """The store this command's options chose (SQLite in ``state_dir`` unless --store)."""
    from fleet.store.locate import StoreLocation

    ctx = click.get_current_context(silent=True)
    given: dict[str, str | None] = ctx.meta.get(_META_KEY, {}) if ctx is not None else {}
    return StoreLocation(
        state_dir=state_dir, url=given.get("store_url") or None,
        password_ref=given.get("store_password") or None,
    )
