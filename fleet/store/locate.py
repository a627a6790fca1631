"""Which store a command uses: the SQLite file in ``--state-dir`` or a PostgreSQL database.

``--store postgresql://user@host:port/dbname`` (or ``ARCFLEET_STORE``) chooses PostgreSQL. The
password never travels in the URL (it would sit in argv and in shell history): libpq finds it in
``~/.pgpass`` or ``PGPASSWORD``, or ``--store-password`` names a secret reference
(``env:VAR`` or ``file:PATH``). psycopg is imported only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

from fleet.errors import StoreError

if TYPE_CHECKING:
    from fleet.store.sqlite import RunStore

POSTGRES_SCHEMES: Final = ("postgresql", "postgres")


def is_postgres(location: str | None) -> bool:
    return bool(location) and urlsplit(location or "").scheme in POSTGRES_SCHEMES


def redact_dsn(location: str) -> str:
    """The URL with any password replaced, for messages and the run record."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class StoreLocation:
    """A store as chosen on the command line; :meth:`open` connects to it."""

    state_dir: Path
    url: str | None = None  # postgresql://...; None: SQLite in state_dir
    password_ref: str | None = None  # env:VAR or file:PATH

    @property
    def shared(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        return redact_dsn(self.url) if self.url else str(self.state_dir)

    def check(self) -> None:
        """Refuse what cannot be used, before anything is contacted."""
        if self.url is None:
            if self.password_ref:
                raise StoreError("--store-password applies only to a postgresql:// --store")
            return
        if not is_postgres(self.url):
            raise StoreError(f"{self.describe()}: not a postgresql:// URL")
        if urlsplit(self.url).password is not None:
            raise StoreError(
                f"{self.describe()}: a password in the URL would be visible in the process "
                "list; use ~/.pgpass, PGPASSWORD or --store-password env:VAR|file:PATH"
            )
        if self.password_ref and not self.password_ref.startswith(("env:", "file:")):
            raise StoreError("--store-password must be env:VAR or file:PATH")

    def password(self) -> str | None:
        if not self.password_ref:
            return None
        from fleet.errors import SecretUnavailable
        from fleet.inventory.model import SecretRef
        from fleet.redact import register_secret

        kind, _, where = self.password_ref.partition(":")
        ref = SecretRef(env=where) if kind == "env" else SecretRef(file=Path(where))
        try:
            value = ref.resolve()
        except SecretUnavailable as exc:
            raise StoreError(f"--store-password: {exc}") from None
        register_secret(value)
        return value

    def open(self, *, create: bool = True) -> RunStore:
        """The store; both backends are :class:`~fleet.store.sqlite.RunStore`s (PostgreSQL's
        shares its statements)."""
        self.check()
        if self.url is None:
            from fleet.store.sqlite import RunStore

            return RunStore.open(self.state_dir, create=create)
        from fleet.redact import register_secret
        from fleet.store.postgres import PostgresRunStore

        # libpq reads PGPASSWORD itself; should the value surface anywhere, it is redacted.
        register_secret(os.environ.get("PGPASSWORD", ""))

        return PostgresRunStore.open(
            self.url, self.state_dir, password=self.password(), create=create
        )
