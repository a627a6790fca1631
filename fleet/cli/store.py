"""``arcfleet store migrate`` and the site worker behind ``arcfleet onboard --site NAME``.

A site worker joins the shared run (the latest running claimed run of its kind in the
PostgreSQL store, or a new one it creates), adds its site's hosts to it, and works them with
:class:`fleet.engine.claims.ClaimLoop`. See docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fleet.cli.state_option import store_location, store_options
from fleet.errors import Problem, StoreError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from fleet.azcm.diagnosis import Diagnosis
    from fleet.azure.tokens import TokenMinter
    from fleet.cli.run import _Executor
    from fleet.cli.run_request import RunRequest
    from fleet.engine.breaker import Confirmer
    from fleet.engine.claims import ClaimLoop
    from fleet.engine.outcome import Attempt, HostOutcome
    from fleet.engine.playbook import Mode, Playbook
    from fleet.engine.secrets import SecretBook
    from fleet.inventory.model import ResolvedHost
    from fleet.store.sqlite import RunStore

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_LEASE_S = 60.0


def site_options(func: F) -> F:
    """``--site`` and ``--lease`` for onboard, preflight and offboard."""
    func = click.option(
        "--site",
        metavar="GROUP",
        help="Work only this site's hosts (an inventory group) as one worker of a shared "
        "run: needs --store postgresql://...; start one worker per site and jump host.",
    )(func)
    return click.option(
        "--lease",
        "lease_s",
        type=click.FloatRange(1, 3600),
        metavar="SECONDS",
        help="With --site: how long a host stays claimed by a worker that stopped renewing "
        "(a dead worker's hosts are resumed by another worker after this).  [default: "
        f"{DEFAULT_LEASE_S:.0f}]",
    )(func)


def run_site_worker(
    executor: _Executor,
    request: RunRequest,
    *,
    site: str,
    lease_s: float | None,
    kind: str,
    mode: Mode | None,
) -> int:
    """Work ``site``'s hosts of the shared run; the exit code of the run command."""
    from fleet.cli.run_request import connect_pacing
    from fleet.engine.claims import ClaimLoop, ClaimSink
    from fleet.engine.runner import FanoutSink, FleetRun, RunOptions
    from fleet.engine.secrets import SecretBook
    from fleet.engine.transcript import TranscriptWriter
    from fleet.logs import close_run_log, configure_run_log
    from fleet.redact import redact
    from fleet.report import write_failures_csv
    from fleet.store.postgres import PostgresRunStore
    from fleet.summary import summary
    from fleet.text import SanitizingSink
    from fleet.transport.factory import TransportFactory
    from fleet.transport.ssh_keys import (
        DEFAULT_KNOWN_HOSTS,
        ClientKeys,
        HostKeyPolicy,
        check_client_keys,
        check_known_hosts,
    )

    location = store_location(executor.state_dir)
    if not location.shared:
        raise UsageError(Problem(str(executor.state_dir), None, "--site",
                                 "a site worker needs a shared --store postgresql://...; "
                                 "on one jump host, use --limit GROUP"))
    if request.limit == "@failed":
        raise UsageError(Problem("--limit", None, "--site",
                                 "use rerun --site to rerun one site's failed hosts"))
    playbook, hosts, digest, playbook_ref = executor.plan(request, only=None, mode=mode)
    mine = [h for h in hosts if site in h.groups]
    if not mine:
        raise UsageError(Problem(", ".join(request.inventories), None, "--site",
                                 f"no host of the inventory is in group {site!r}"))
    console: Console = executor.console
    # The same input checks as a single jump host's run (fleet/cli/run.py).
    policy = HostKeyPolicy(
        known_hosts=Path(request.known_hosts) if request.known_hosts else DEFAULT_KNOWN_HOSTS,
        accept_new=request.accept_new_host_keys,
    )
    check_known_hosts(mine, policy, flag="--known-hosts")
    client_keys = ClientKeys()
    check_client_keys(mine, client_keys)
    from fleet.cli.run import _check_azure_changes

    _check_azure_changes(request, playbook.mode, mine)
    secrets = SecretBook(allowed_env=request.allow_secret_env)
    secrets.preload(mine, need_sp=playbook.mode.value != "preflight")
    forks = request.forks or playbook.pacing.forks
    rate, burst = connect_pacing(request, playbook)
    base = RunOptions(
        playbook=playbook, forks=forks, connect_rate_per_s=rate, connect_burst=burst,
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with executor_open_store(executor) as store:
        assert isinstance(store, PostgresRunStore)
        record = store.join_or_start_claimed_run(
            kind=kind,
            command_line=[redact(a) for a in ["arcfleet", *sys.argv[1:]]],
            inventory_paths=request.inventories,
            inventory_digest=digest,
            playbook=playbook_ref,
            options=request.options(),
            hosts=[(h.name, h.address, h.transport.value, h.os.value) for h in hosts],
            site=site,
            site_hosts=[h.name for h in mine],
        )
        configure_run_log(record.folder / f"run-{site}-{os.getpid()}.log")
        transcripts = TranscriptWriter(record.folder)
        base.transcript_path = {h.name: str(transcripts.path_for(h.name)) for h in mine}
        from fleet.cli.display import JsonLines, LiveDisplay

        view: LiveDisplay | JsonLines = (
            JsonLines() if executor.json_lines else LiveDisplay(len(mine), console)
        )
        # The Azure preflight for this site's hosts, as a single jump host's run does (the
        # shared store keeps no check rows: the terminal and the run log are the record).
        settled, confirmer, minter = _azure_for_site(executor, request, playbook, mine,
                                                     secrets, record.id)
        claim_sink = ClaimSink(store, record.id, worker)
        # Host-derived text is cleaned once, before any sink stores or shows it.
        sink = SanitizingSink(FanoutSink([claim_sink, transcripts, view]))

        def make_fleet(
            batch: list[ResolvedHost], earlier: dict[str, tuple[Attempt, ...]]
        ) -> FleetRun:
            factory = TransportFactory(
                policy, connect_timeout_s=playbook.deadlines.connect_timeout_s,
                client_keys=client_keys,
            )
            return FleetRun(batch, replace(base, earlier_steps=earlier), factory=factory,
                            secrets=secrets, sink=sink,
                            settled={h.name: settled[h.name] for h in batch
                                     if h.name in settled},
                            confirmer=confirmer,
                            access_tokens=minter.token_for if minter is not None else None)

        loop = ClaimLoop(store, record.id, site=site, worker=worker,
                         hosts={h.name: h for h in mine}, make_fleet=make_fleet,
                         batch=2 * forks, lease_s=lease_s or DEFAULT_LEASE_S)
        console.print(f"run {record.id}: site {site}, {len(mine)} hosts, worker {worker}, "
                      f"playbook {playbook.name}, forks {forks}",
                      markup=False, highlight=False, soft_wrap=True)
        try:
            with view:
                outcomes = asyncio.run(_loop_with_signals(loop))
        finally:
            claim_sink.flush()  # attempts and steps of the loop's last turn
            transcripts.flush()
            if minter is not None:
                minter.close()
            close_run_log()
        root = record.root_run_id
        csv_path = write_failures_csv(store, root, run_id=record.id)
        console.print(summary(store, root, state_dir=executor.state_dir), soft_wrap=True)
        console.print(f"failures CSV: {csv_path}", markup=False, highlight=False,
                      soft_wrap=True)
    if loop.stopped:
        return 130
    return 0 if all(o.status.value == "success" for o in outcomes) else 1


def _azure_for_site(executor: _Executor, request: RunRequest, playbook: Playbook,
                    hosts: list[ResolvedHost], secrets: SecretBook, run_id: str,
                    ) -> tuple[dict[str, Diagnosis], Confirmer | None, TokenMinter | None]:
    """The Azure preflight's stopped hosts, the breaker's confirmer and token mode's minter."""
    settled: dict[str, Diagnosis] = {}
    confirmer: Confirmer | None = None
    mode = playbook.mode.value
    if mode in ("onboard", "preflight"):
        from fleet.azure.confirm import AzureConfirmer
        from fleet.azure.step import azure_preflight_step

        settled = azure_preflight_step(
            hosts, secrets, check=request.azure_check,
            register_providers=request.register_providers, delete_stale=request.delete_stale,
            create_resource_groups=mode == "onboard", db_path=None, run_id=run_id,
            console=executor.console)
        confirmer = AzureConfirmer(hosts, secrets) if request.azure_check else None
    minter: TokenMinter | None = None
    if mode in ("onboard", "offboard") and any(h.azure.auth == "token" for h in hosts):
        from fleet.azure.tokens import TokenMinter

        minter = TokenMinter(hosts, secrets)
    return settled, confirmer, minter


def hosts_of_site(store: RunStore, root_run_id: str, hosts: list[str], site: str) -> list[str]:
    """``hosts`` of ``root_run_id`` that belong to ``site`` (``rerun --site``)."""
    from fleet.store.postgres import PostgresRunStore

    if not isinstance(store, PostgresRunStore):
        raise UsageError(Problem(str(store.state_dir), None, "--site",
                                 "sites are kept by a shared --store postgresql://... only"))
    sites = store.host_sites(root_run_id)
    if site not in sites.values():
        known = ", ".join(sorted({s for s in sites.values() if s})) or "none"
        raise UsageError(Problem(store.url or "", None, "--site",
                                 f"run {root_run_id} has no site {site!r} (sites: {known})"))
    return [host for host in hosts if sites.get(host) == site]


def executor_open_store(executor: _Executor) -> RunStore:
    from fleet.cli.run import _open_store

    return _open_store(executor.state_dir)


async def _loop_with_signals(loop: ClaimLoop) -> list[HostOutcome]:
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(sig, loop.request_stop)
    try:
        return await loop.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            running.remove_signal_handler(sig)


@click.group("store")
def store_group() -> None:
    """The run store: schema migrations (SQLite in --state-dir, or a shared PostgreSQL)."""


@store_group.command("migrate")
@store_options
def migrate_cmd(state_dir: Path) -> None:
    """Create the store or bring its schema to this arcfleet's version; print the versions."""
    location = store_location(state_dir)
    try:
        location.check()
        if location.shared:
            from fleet.store.postgres import PostgresRunStore
            from fleet.store.postgres_schema import migrate

            assert location.url is not None
            conn = PostgresRunStore.connect(location.url, password=location.password())
            try:
                before, after = migrate(conn)
            finally:
                conn.close()
        else:
            from fleet.store.sqlite import DB_NAME, RunStore

            before = 0
            db_path = state_dir / DB_NAME
            if db_path.exists():
                probe = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
                try:
                    before = int(probe.execute("PRAGMA user_version").fetchone()[0])
                finally:
                    probe.close()
            with RunStore.open(state_dir):
                pass
            from fleet.store.sqlite_schema import SCHEMA_VERSION

            after = SCHEMA_VERSION
    except (StoreError, sqlite3.Error) as exc:
        option = "--store" if location.shared else "--state-dir"
        raise UsageError(Problem(location.describe(), None, option, str(exc))) from None
    what = "already at" if before == after else f"migrated from {before} to"
    click.echo(f"{location.describe()}: schema {what} version {after}")


COMMANDS: list[click.Command] = [store_group]
