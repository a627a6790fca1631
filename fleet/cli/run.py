"""``arcfleet onboard | preflight | offboard | rerun``: run a playbook over the fleet."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from fleet.cli.display import JsonLines, LiveDisplay
from fleet.cli.options import (
    allow_secret_env_option,
    azure_override_options,
    inventory_option,
    limit_option,
)
from fleet.cli.state_option import store_location, store_options
from fleet.cli.store import hosts_of_site, run_site_worker, site_options
from fleet.engine.outcome import Attempt, HostOutcome, OutcomeSink
from fleet.engine.playbook import BUILTIN, Mode, Playbook, load_playbook
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
from fleet.transport.ssh import DEFAULT_KNOWN_HOSTS, HostKeyPolicy, check_known_hosts

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# --limit values that select hosts from the run store rather than from the inventory.
RUN_SELECTIONS = ("@failed", "@ready")
_NAMED_HOSTS = 3


def connect_pacing(request: RunRequest, playbook: Playbook) -> tuple[float, int]:
    """Connect rate and burst. ``--connect-rate N`` alone means N per second from the start:
    its burst is N (at least 1), not the playbook's, or a rate of 1 would still start the
    playbook's whole burst at once. ``--connect-burst`` sets the burst explicitly."""
    pacing = playbook.pacing
    if request.connect_rate is None:
        return pacing.connect_rate_per_s, request.connect_burst or pacing.connect_burst
    burst = request.connect_burst or max(1, int(request.connect_rate))
    return request.connect_rate, burst


def _one_per_reference(problems: Sequence[Problem]) -> list[Problem]:
    """Problems that differ only by host (many hosts share one secret reference, e.g. a
    missing environment variable) as one problem naming the file and how many hosts."""
    hosts: dict[tuple[str, str | None, str], list[str]] = {}
    for problem in problems:
        key = (problem.file, problem.field, problem.message)
        hosts.setdefault(key, [])
        if problem.host:
            hosts[key].append(problem.host)
    merged = []
    for (file, field_name, message), names in hosts.items():
        if len(names) <= 1:
            merged.append(Problem(file, names[0] if names else None, field_name, message))
            continue
        shown = ", ".join(names[:_NAMED_HOSTS])
        more = f", +{len(names) - _NAMED_HOSTS} more" if len(names) > _NAMED_HOSTS else ""
        merged.append(
            Problem(file, None, field_name, f"{message} (referenced by {len(names)} hosts: "
                    f"{shown}{more})")
        )
    return merged


@dataclass
class RunRequest:
    """Everything a run needs, as given on the command line (or recalled for a rerun)."""

    inventories: list[str]
    playbook: str | None = None
    limit: str | None = None
    forks: int | None = None
    connect_rate: float | None = None
    connect_burst: int | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    azure: dict[str, Any] = field(default_factory=dict)
    azure_check: bool = True  # --no-azure-check turns the Azure preflight off
    register_providers: bool = False
    # Security opt-ins hold for the command line that gives them: a rerun or resume does not
    # recall them (they are not in options()), the operator gives them again.
    allow_secret_env: tuple[str, ...] = ()

    def options(self) -> dict[str, object]:
        return {
            "inventories": self.inventories,
            "playbook": self.playbook,
            "limit": self.limit,
            "forks": self.forks,
            "connect_rate": self.connect_rate,
            "connect_burst": self.connect_burst,
            "known_hosts": self.known_hosts,
            "accept_new_host_keys": self.accept_new_host_keys,
            "azure": self.azure,
            "azure_check": self.azure_check,
            "register_providers": self.register_providers,
        }

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RunRequest:
        return cls(
            inventories=list(options.get("inventories") or []),
            playbook=options.get("playbook"),
            limit=options.get("limit"),
            forks=options.get("forks"),
            connect_rate=options.get("connect_rate"),
            connect_burst=options.get("connect_burst"),
            known_hosts=options.get("known_hosts"),
            # Recorded for the record only: trust on first use is asked for again (see above).
            accept_new_host_keys=False,
            azure=dict(options.get("azure") or {}),
            azure_check=bool(options.get("azure_check", True)),
            register_providers=bool(options.get("register_providers")),
        )


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by onboard, preflight, offboard and (as overrides) rerun."""
    decorators = [
        click.option(
            "--playbook",
            help="Built-in name (onboard, preflight, offboard, reconnect) or a playbook file. "
            "[default: the command's own built-in playbook; rerun: the run's]",
        ),
        limit_option,
        click.option(
            "--forks",
            type=click.IntRange(1, 5000),
            help="Agent operations (azcmagent connect/disconnect) at once; as many hosts "
            "again are opened and preflighted ahead. [default: the playbook's pacing.forks, "
            "50 in the built-in playbooks]",
        ),
        click.option(
            "--connect-rate",
            type=click.FloatRange(0),
            help="Connects started per second across the fleet (token bucket; 0 = unpaced, "
            "lab only). Its burst is the same number unless --connect-burst is given. "
            "[default: the playbook's pacing.connect_rate_per_s, 5 for onboard]",
        ),
        click.option(
            "--connect-burst",
            type=click.IntRange(1),
            help="Connects that may start at once before --connect-rate applies. [default: "
            "the --connect-rate value; without --connect-rate the playbook's "
            "pacing.connect_burst, 100 for onboard]",
        ),
        click.option(
            "--known-hosts",
            type=click.Path(dir_okay=False),
            help=f"known_hosts file for SSH host keys [default: {DEFAULT_KNOWN_HOSTS}]",
        ),
        click.option(
            "--accept-new-host-keys",
            is_flag=True,
            help="Trust on first use: add "
            "unknown host keys to known_hosts. A changed key is still refused. Not carried "
            "over to rerun or --resume: give it again.",
        ),
        allow_secret_env_option,
        azure_override_options,
        click.option(
            "--no-azure-check",
            is_flag=True,
            help="Do not ask Azure first (credential, providers, resource group, region, "
            "role, names); regions are then checked for syntax only.",
        ),
        click.option(
            "--register-providers",
            is_flag=True,
            help="Register the Azure Arc resource providers when the Azure preflight finds "
            "them unregistered (needs */register/action on the subscription).",
        ),
        click.option(
            "--json", "json_lines", is_flag=True, help="One JSON object per host outcome on stdout."
        ),
        store_options,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _absolute(path: str | None, *, keep: Sequence[str] = ()) -> str | None:
    """A file option as an absolute path: a rerun or resume may start from another directory."""
    if path is None or path in keep:
        return path
    return str(Path(path).resolve())


def _given(
    inventories: Sequence[Path], azure_overrides: dict[str, Any], flags: dict[str, Any]
) -> RunRequest:
    """The run options given on this command line (see :func:`run_options`)."""
    return RunRequest(
        inventories=[str(Path(p).resolve()) for p in inventories],
        playbook=_absolute(flags.get("playbook"), keep=BUILTIN),
        limit=flags.get("limit"),
        forks=flags.get("forks"),
        connect_rate=flags.get("connect_rate"),
        connect_burst=flags.get("connect_burst"),
        known_hosts=_absolute(flags.get("known_hosts")),
        accept_new_host_keys=bool(flags.get("accept_new_host_keys")),
        azure=azure_overrides,
        azure_check=not flags.get("no_azure_check"),
        register_providers=bool(flags.get("register_providers")),
        allow_secret_env=tuple(flags.get("allow_secret_env") or ()),
    )


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
            [Path(p) for p in request.inventories], azure_overrides=request.azure or None
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
        if not hosts:
            self.console.print("nothing to do: no host left to run", markup=False)
            return EXIT_OK
        policy = HostKeyPolicy(
            known_hosts=Path(request.known_hosts) if request.known_hosts else DEFAULT_KNOWN_HOSTS,
            accept_new=request.accept_new_host_keys,
        )
        check_known_hosts(hosts, policy, flag="--known-hosts")
        secrets = SecretBook(allowed_env=request.allow_secret_env)
        try:
            secrets.preload(hosts, need_sp=playbook.mode is not Mode.PREFLIGHT)
        except UsageError as exc:
            raise UsageError(_one_per_reference(exc.problems)) from None
        rate, burst = connect_pacing(request, playbook)
        options = RunOptions(
            playbook=playbook,
            forks=request.forks or playbook.pacing.forks,
            connect_rate_per_s=rate,
            connect_burst=burst,
            earlier_steps=earlier_steps or {},
        )
        factory = TransportFactory(policy, connect_timeout_s=playbook.deadlines.connect_timeout_s)
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
            transcripts = TranscriptWriter(record.folder)
            options.transcript_path = {h.name: str(transcripts.path_for(h.name)) for h in hosts}
            view: LiveDisplay | JsonLines = (
                JsonLines() if self.json_lines else LiveDisplay(len(hosts), self.console)
            )
            settled = {}
            if playbook.mode in (Mode.ONBOARD, Mode.PREFLIGHT):
                from fleet.azure.step import azure_preflight_step

                settled = azure_preflight_step(
                    hosts,
                    secrets,
                    check=request.azure_check,
                    register_providers=request.register_providers,
                    db_path=None if store.url else store.db_path,
                    run_id=record.id,
                    console=self.console,
                )
            sinks: list[OutcomeSink] = [RunStoreSink(store, record.id), transcripts, view]
            fleet = FleetRun(
                hosts,
                options,
                factory=factory,
                secrets=secrets,
                # Host-derived text is cleaned once, before any sink stores or shows it.
                sink=SanitizingSink(FanoutSink(sinks)),
                settled=settled,
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
                store.finish_run(record.id, status)
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
        request = _given(inventories, azure_overrides, kwargs)
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
    recalled = _recall(record)
    recalled.inventories = request.inventories or recalled.inventories
    _override(recalled, request)
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


def _recall(record: RunRecord) -> RunRequest:
    """The request a recorded run was made with, its playbook named explicitly: a run on the
    default playbook recorded no --playbook, and the default of a rerun is onboard, so a
    rerun of a preflight or offboard run would otherwise connect hosts."""
    request = RunRequest.from_options(record.options)
    if request.playbook is None:
        request.playbook = record.playbook
    return request


def _override(request: RunRequest, given: RunRequest) -> None:
    """Options given on this command line win over the recalled ones (not the host set)."""
    request.azure.update(given.azure)
    if given.connect_rate is not None and given.connect_burst is None:
        request.connect_burst = None  # a new rate brings its own burst (see connect_pacing)
    for key in ("playbook", "forks", "connect_rate", "connect_burst", "known_hosts"):
        if getattr(given, key) is not None:
            setattr(request, key, getattr(given, key))
    request.accept_new_host_keys = given.accept_new_host_keys
    request.allow_secret_env = given.allow_secret_env
    if not given.azure_check:
        request.azure_check = False
    if given.register_providers:
        request.register_providers = True


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
    request = _recall(root_record)
    _override(request, _given((), azure_overrides, kwargs))
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
    rerun_command,
]
