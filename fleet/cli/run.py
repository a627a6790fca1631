"""``arcfleet onboard | preflight | offboard | rerun``: run a playbook over the fleet."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from fleet.cli.display import JsonLines, LiveDisplay
from fleet.cli.options import (
    inventory_option,
)
from fleet.cli.run_request import (
    RUN_SELECTIONS,
    RunRequest,
    connect_pacing,
    given_request,
    one_per_reference,
    override_request,
    recall_request,
    run_options,
)
from fleet.cli.state_option import store_location
from fleet.cli.store import hosts_of_site, run_site_worker, site_options
from fleet.engine.outcome import Attempt, HostOutcome, OutcomeSink
from fleet.engine.playbook import Mode, Playbook, load_playbook
from fleet.engine.runner import FanoutSink, FleetRun, RunOptions
from fleet.engine.secrets import SecretBook
from fleet.engine.transcript import TranscriptWriter
from fleet.errors import Problem, StoreError, UsageError
from fleet.inventory import load_inventory, select_hosts
from fleet.inventory.model import ResolvedHost
from fleet.logs import close_run_log, configure_run_log
from fleet.redact import redact
from fleet.report import SETTLED, write_failures_csv
from fleet.store import RunRecord, RunStore, RunStoreSink
from fleet.summary import GOALS, summary
from fleet.text import SanitizingSink
from fleet.transport.factory import TransportFactory
from fleet.transport.ssh_keys import (
    DEFAULT_KNOWN_HOSTS,
    ClientKeys,
    HostKeyPolicy,
    check_client_keys,
    check_known_hosts,
)

if TYPE_CHECKING:
    from fleet.engine.install_bundle import AgentBundle

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Executor:
    """Plans and performs one run: load, validate, store, run, report."""

    def __init__(self, state_dir: Path, json_lines: bool, console: Console) -> None:
        self.state_dir = state_dir
        self.json_lines = json_lines
        self.console = console

    def plan(
        self, request: RunRequest, *, only: Sequence[str] | None, mode: Mode | None
    ) -> tuple[Playbook, list[ResolvedHost], str, str]:
        playbook = load_playbook(request.playbook if request.playbook else (mode or "onboard"))
        if mode is not None and playbook.mode is not mode:
            raise UsageError(
                Problem(
                    str(request.playbook),
                    None,
                    "mode",
                    f"this command needs a {mode.value} playbook",
                )
            )
        inventory = load_inventory(
            [Path(p) for p in request.inventories], azure_overrides=request.azure or None,
            engine=request.inventory_engine, vault=request.vault,
        )
        hosts = inventory.hosts
        if request.limit and request.limit not in RUN_SELECTIONS:
            hosts = select_hosts(inventory, request.limit)
        if only is not None:
            # In the order given (a resume puts the hosts that were in flight first).
            by_name = {h.name: h for h in hosts}
            hosts = [by_name[name] for name in dict.fromkeys(only) if name in by_name]
        return playbook, hosts, inventory.digest, request.playbook or playbook.name

    def execute(
        self,
        request: RunRequest,
        *,
        kind: str,
        mode: Mode | None,
        only: Sequence[str] | None = None,
        parent_run_id: str | None = None,
        earlier_steps: dict[str, tuple[Attempt, ...]] | None = None,
    ) -> int:
        playbook, hosts, digest, playbook_ref = self.plan(request, only=only, mode=mode)
        bundle = _agent_bundle(playbook)  # a bad bundle stops the run before any host
        if not hosts:
            self.console.print("nothing to do: no host left to run", markup=False)
            return EXIT_OK
        policy = HostKeyPolicy(
            known_hosts=Path(request.known_hosts) if request.known_hosts else DEFAULT_KNOWN_HOSTS,
            accept_new=request.accept_new_host_keys,
        )
        check_known_hosts(hosts, policy, flag="--known-hosts")
        client_keys = ClientKeys()
        check_client_keys(hosts, client_keys)
        _check_azure_changes(request, playbook.mode, hosts)
        secrets = SecretBook(allowed_env=request.allow_secret_env)
        try:
            secrets.preload(hosts, need_sp=playbook.mode not in (Mode.PREFLIGHT, Mode.INSTALL))
        except UsageError as exc:
            raise UsageError(one_per_reference(exc.problems)) from None
        rate, burst = connect_pacing(request, playbook)
        options = RunOptions(
            playbook=playbook,
            forks=request.forks or playbook.pacing.forks,
            connect_rate_per_s=rate,
            connect_burst=burst,
            earlier_steps=earlier_steps or {},
        )
        factory = TransportFactory(policy, connect_timeout_s=playbook.deadlines.connect_timeout_s,
                                   client_keys=client_keys)
        with _open_store(self.state_dir) as store:
            record = store.start_run(
                kind=kind,
                command_line=[redact(a) for a in ["arcfleet", *sys.argv[1:]]],
                inventory_paths=request.inventories,
                inventory_digest=digest,
                playbook=playbook_ref,
                options=request.options(),
                hosts=[(h.name, h.address, h.transport.value, h.os.value) for h in hosts],
                parent_run_id=parent_run_id,
            )
            configure_run_log(record.folder / "run.log")
            if bundle is not None:  # what was uploaded, by sha256, kept with the run
                (record.folder / "agent-bundle.json").write_text(
                    json.dumps(bundle.manifest(), indent=2), encoding="utf-8")
            transcripts = TranscriptWriter(record.folder)
            options.transcript_path = {h.name: str(transcripts.path_for(h.name)) for h in hosts}
            view: LiveDisplay | JsonLines = (
                JsonLines() if self.json_lines else LiveDisplay(len(hosts), self.console)
            )
            settled = {}
            confirmer = None
            if playbook.mode in (Mode.ONBOARD, Mode.PREFLIGHT):
                from fleet.azure.step import azure_preflight_step

                settled = azure_preflight_step(
                    hosts,
                    secrets,
                    check=request.azure_check,
                    register_providers=request.register_providers,
                    delete_stale=request.delete_stale,
                    create_resource_groups=playbook.mode is Mode.ONBOARD,
                    db_path=None if store.url else store.db_path,
                    run_id=record.id,
                    console=self.console,
                )
                if request.azure_check:
                    from fleet.azure.confirm import AzureConfirmer

                    confirmer = AzureConfirmer(hosts, secrets)
            minter = None
            # Tokens for the modes that connect or disconnect.
            if playbook.mode in (Mode.ONBOARD, Mode.OFFBOARD) and any(
                    h.azure.auth == "token" for h in hosts):
                from fleet.azure.tokens import TokenMinter

                minter = TokenMinter(hosts, secrets)
            store_sink = RunStoreSink(store, record.id)
            sinks: list[OutcomeSink] = [store_sink, transcripts, view]
            fleet = FleetRun(
                hosts,
                options,
                factory=factory,
                secrets=secrets,
                # Host-derived text is cleaned once, before any sink stores or shows it.
                sink=SanitizingSink(FanoutSink(sinks)),
                settled=settled,
                confirmer=confirmer,
                access_tokens=minter.token_for if minter is not None else None,
            )
            view.attach(fleet)
            self.console.print(
                f"run {record.id}: {len(hosts)} hosts, playbook {playbook.name}, "
                f"forks {options.forks}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            outcomes: list[HostOutcome] | None = None
            try:
                with view:
                    outcomes = asyncio.run(_run_with_signals(fleet))
            finally:
                # A run that raised did not finish its hosts: "crashed" keeps it resumable.
                status = "finished" if outcomes is not None else "crashed"
                if fleet.interrupted:
                    status = "interrupted"
                # Attempts of the loop's last turn (a stop ends it early).
                store_sink.flush()
                transcripts.flush()
                store.finish_run(record.id, status)
                if minter is not None:
                    minter.close()
                close_run_log()
            root = record.root_run_id
            csv_path = write_failures_csv(store, root, run_id=record.id)
            # soft_wrap: a narrow or absent terminal must not break the rerun command or the
            # path across lines; operators copy them verbatim.
            self.console.print(summary(store, root, state_dir=self.state_dir), soft_wrap=True)
            self.console.print(
                f"failures CSV: {csv_path}", markup=False, highlight=False, soft_wrap=True
            )
            from fleet.report_html import write_html_report

            html_path = write_html_report(
                store, root, csv_path.parent / "report.html", state_dir=self.state_dir
            )
            self.console.print(
                f"HTML report: {html_path}", markup=False, highlight=False, soft_wrap=True
            )
        if fleet.interrupted:
            return EXIT_INTERRUPTED
        # Every host settled: connected (disconnected for offboard), or ready after a preflight.
        return EXIT_OK if all(o.status.settled for o in outcomes) else EXIT_FAILED


def _check_azure_changes(request: RunRequest, mode: Mode, hosts: Sequence[ResolvedHost]) -> None:
    """--delete-stale and create_resource_group change Azure from the Azure preflight of an
    onboard: refused where they would not be applied (bad input, nothing contacted)."""
    problems: list[Problem] = []
    if request.delete_stale and (mode is not Mode.ONBOARD or not request.azure_check):
        problems.append(Problem("<command line>", None, "--delete-stale",
                                "applies to onboard with the Azure preflight (without "
                                "--no-azure-check)"))
    if not request.azure_check:
        problems += [Problem(h.source, h.name, "azure.create_resource_group",
                             "needs the Azure preflight: drop --no-azure-check, or create the "
                             "resource group and remove the setting")
                     for h in hosts if h.azure.create_resource_group]
    if problems:
        raise UsageError(list(dict.fromkeys(problems)))


def _agent_bundle(playbook: Playbook) -> AgentBundle | None:
    if playbook.agent_bundle is None or playbook.mode in (Mode.OFFBOARD, Mode.PREFLIGHT):
        return None
    from fleet.engine.install_bundle import load_bundle

    return load_bundle(playbook.agent_bundle, require_signed=playbook.agent_bundle_require_signed)


async def _run_with_signals(fleet: FleetRun) -> list[HostOutcome]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet.request_stop)
    try:
        return await fleet.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _open_store(state_dir: Path) -> RunStore:
    """The run store, before any host is contacted: a state directory that cannot be used is
    bad input (exit 2), named by the option that chose it."""
    location = store_location(state_dir)
    try:
        return location.open()
    except StoreError as exc:
        option = "--store" if location.shared else "--state-dir"
        raise UsageError(Problem(location.describe(), None, option, str(exc))) from None


def _console() -> Console:
    return Console(stderr=True)


def _failed_hosts(state_dir: Path) -> tuple[str, list[str]]:
    with _open_store(state_dir) as store:
        root = store.latest_run_id(root_only=True)
        if root is None:
            raise UsageError(Problem(str(state_dir), None, "--limit @failed", "no run recorded"))
        running = [r.id for r in store.runs_under(root) if r.status == "running"]
        if running:
            raise UsageError(
                Problem(
                    str(state_dir), None, "--limit @failed", f"run {running[-1]} is still running"
                )
            )
        return root, store.hosts_to_rerun(root)


def _ready_hosts(state_dir: Path) -> list[str]:
    """The hosts the latest preflight (with its reruns) found ready, in its order."""
    with _open_store(state_dir) as store:
        preflights = [r for r in store.list_runs() if r.kind == "preflight"]
        if not preflights:
            raise UsageError(
                Problem(str(state_dir), None, "--limit @ready", "no preflight run recorded")
            )
        root = preflights[-1].id
        running = [r.id for r in store.runs_under(root) if r.status == "running"]
        if running:
            raise UsageError(
                Problem(
                    str(state_dir), None, "--limit @ready", f"run {running[-1]} is still running"
                )
            )
        ready = [
            host for host, row in store.final_outcomes(root).items() if row.status == "ready"
        ]
        if not ready:
            raise UsageError(
                Problem(
                    str(state_dir), None, "--limit @ready", f"preflight {root} found no host ready"
                )
            )
        return ready


def _make_command(name: str, mode: Mode | None, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @inventory_option
    @click.option(
        "--resume",
        is_flag=True,
        help="Continue the latest interrupted or crashed "
        "run: finished hosts are not contacted again.",
    )
    @run_options
    @site_options
    def command(
        inventories: tuple[Path, ...],
        resume: bool,
        state_dir: Path,
        json_lines: bool,
        azure_overrides: dict[str, Any],
        site: str | None,
        lease_s: float | None,
        **kwargs: Any,
    ) -> None:
        console = _console()
        request = given_request(inventories, azure_overrides, kwargs)
        executor = _Executor(state_dir, json_lines, console)
        if site is None and lease_s is not None:
            raise UsageError(Problem("--lease", None, "--lease", "applies only with --site"))
        if site is not None:
            if resume:
                raise UsageError(Problem("--resume", None, "--site", "a site worker resumes "
                                         "its site's unfinished hosts by itself; drop --resume"))
            sys.exit(run_site_worker(executor, request, site=site, lease_s=lease_s, kind=name,
                                     mode=mode))
        if resume:
            sys.exit(_resume(executor, state_dir, request, mode))
        only: list[str] | None = None
        parent: str | None = None
        kind = name
        if request.limit == "@failed":
            parent, only = _failed_hosts(state_dir)
            kind = "rerun"
        elif request.limit == "@ready":
            if mode is not Mode.ONBOARD:
                raise UsageError(
                    Problem(str(state_dir), None, "--limit @ready", "only onboard takes @ready")
                )
            only = _ready_hosts(state_dir)
        sys.exit(executor.execute(request, kind=kind, mode=mode, only=only, parent_run_id=parent))

    return command


def _resume(executor: _Executor, state_dir: Path, request: RunRequest, mode: Mode | None) -> int:
    with _open_store(state_dir) as store:
        latest = store.latest_run_id(root_only=False)
        record = store.get_run(latest) if latest else None
        if record is None:
            raise UsageError(Problem(str(state_dir), None, "--resume", "no run recorded"))
        if record.status == "running":
            # Its process is alive (or ran on another machine): a second writer would contact
            # the same hosts at the same time.
            raise UsageError(
                Problem(str(state_dir), None, "--resume", f"run {record.id} is still running")
            )
        if record.status not in ("interrupted", "crashed"):
            raise UsageError(
                Problem(
                    str(state_dir),
                    None,
                    "--resume",
                    f"the latest run {record.id} finished; use rerun",
                )
            )
        in_flight, pending = store.unfinished_hosts(record.id)
        earlier = _earlier_steps(store, record, in_flight)
    recalled = recall_request(record)
    recalled.inventories = request.inventories or recalled.inventories
    override_request(recalled, request)
    # In-flight hosts go first. Each one's preflight reads `show --json`: a connect that
    # finished just before the crash counts as done and is not repeated into AZCM0067.
    # mode: `preflight --resume` must not continue an onboard run (it would connect hosts).
    return executor.execute(
        recalled,
        kind="resume",
        mode=mode,
        only=[*in_flight, *pending],
        parent_run_id=record.id,
        earlier_steps=earlier,
    )


def _earlier_steps(
    store: RunStore, record: RunRecord, hosts: Sequence[str]
) -> dict[str, tuple[Attempt, ...]]:
    """Per host, the steps recorded by ``record`` and the runs it resumed, oldest first.

    A host unfinished in a resume was unfinished in each run that resume continued, so its
    whole interrupted history is along that chain.
    """
    chain = [record]
    while chain[-1].kind == "resume" and chain[-1].parent_run_id:
        parent = store.get_run(chain[-1].parent_run_id)
        if parent is None:
            break
        chain.append(parent)
    result: dict[str, tuple[Attempt, ...]] = {}
    for host in hosts:
        steps = [
            Attempt(
                stage=row.stage,
                command=row.command,
                exit_status=row.exit_status,
                duration_s=row.duration_s,
                started_at=datetime.fromisoformat(row.started_at),
                remediation=row.remediation,
            )
            for run in reversed(chain)
            for row in store.attempts_for(run.id, host)
        ]
        if steps:
            result[host] = tuple(steps)
    return result


@click.command("rerun")
@click.argument("run_id", required=False)
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Only hosts whose latest category is this (repeatable), e.g. network.",
)
@click.option("--site", help="Only the hosts of this site (a run of site workers).")
@run_options
def rerun_command(
    run_id: str | None,
    categories: tuple[str, ...],
    site: str | None,
    state_dir: Path,
    json_lines: bool,
    azure_overrides: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Run again only the hosts that did not end connected, with the same options."""
    console = _console()
    with _open_store(state_dir) as store:
        root = store.resolve_run_id(run_id) if run_id else store.latest_run_id(root_only=True)
        record = store.get_run(root) if root else None
        if record is None:
            raise UsageError(
                Problem(
                    str(state_dir),
                    None,
                    "RUN_ID",
                    f"no run {run_id}" if run_id else "no run recorded",
                )
            )
        root = record.root_run_id
        root_record = store.get_run(root)
        assert root_record is not None
        running = [r.id for r in store.runs_under(root) if r.status == "running"]
        if running:
            # Two writers would contact the same hosts at once.
            raise UsageError(
                Problem(str(state_dir), None, "RUN_ID", f"run {running[-1]} is still running")
            )
        # Hosts that never finished (a crash or Ctrl-C) are included: their agent state is
        # read before anything is changed.
        hosts = store.hosts_to_rerun(root, set(categories) if categories else None)
        # A preflight's ready hosts need no second look (the store counts only success).
        final = store.final_outcomes(root)
        hosts = [h for h in hosts if h not in final or final[h].status not in SETTLED]
        if site is not None:
            hosts = hosts_of_site(store, root, hosts, site)
    request = recall_request(root_record)
    override_request(request, given_request((), azure_overrides, kwargs))
    request.limit = kwargs.get("limit")
    if not hosts:
        what = (
            f"no host is left in category {', '.join(categories)}"
            if categories
            else "every host is ready or already connected"
            if root_record.kind == "preflight"
            else f"every host is {GOALS.get(root_record.kind, 'connected')}"
        )
        console.print(f"run {root}: {what}; nothing to rerun", markup=False, soft_wrap=True)
        sys.exit(EXIT_OK)
    executor = _Executor(state_dir, json_lines, console)
    sys.exit(executor.execute(request, kind="rerun", mode=None, only=hosts, parent_run_id=root))


COMMANDS: list[click.Command] = [
    _make_command("onboard", Mode.ONBOARD, "Connect every host to Azure Arc."),
    _make_command("preflight", Mode.PREFLIGHT, "Check every host is ready; change nothing."),
    _make_command("offboard", Mode.OFFBOARD, "Disconnect every host from Azure Arc."),
    _make_command(
        "install", Mode.INSTALL, "Install or upgrade the agent on every host; do not connect."
    ),
    rerun_command,
]
