"""CLI commands: ``arcfleet lab up`` (a simulated fleet on loopback) and ``lab agent-shim``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from fleet.cli.state_option import state_dir_option
from fleet.errors import Problem, ScenarioError, UsageError
from fleet.lab.scenario import (
    Scenario,
    ScenarioKind,
    ScenarioPlan,
    builtin_plan_path,
    load_plan,
)


def _plan(value: str) -> ScenarioPlan:
    """A scenario file, a built-in file name (``mix``) or one scenario name for every host."""
    path = Path(value)
    if path.exists():
        return load_plan(path)
    builtin = builtin_plan_path(value)
    if builtin.exists():
        return load_plan(builtin)
    if value in {k.value for k in ScenarioKind} and value != ScenarioKind.AZCM.value:
        return ScenarioPlan(default=Scenario(ScenarioKind(value)))
    raise ScenarioError(
        Problem(value, None, "--scenario", "no such file, built-in scenario file or scenario name")
    )

F = TypeVar("F", bound=Callable[..., Any])


@click.group("lab")
def lab_group() -> None:
    """A simulated fleet on loopback: SSH and WinRM hosts running an azcmagent simulator."""


def _fleet_options(*, hosts: int, windows: int) -> Callable[[F], F]:
    """--hosts, --windows and --scenario, shared by ``lab up`` and ``lab demo``."""

    def decorate(func: F) -> F:
        func = click.option(
            "--scenario",
            default="mix",
            show_default=True,
            help="Scenario file, 'mix', or one scenario name for every host.",
        )(func)
        func = click.option(
            "--windows",
            type=click.IntRange(min=0),
            default=windows,
            show_default=True,
            help="Windows hosts (WinRM).",
        )(func)
        return click.option(
            "--hosts",
            "linux",
            type=click.IntRange(min=0),
            default=hosts,
            show_default=True,
            help="Linux hosts (SSH).",
        )(func)

    return decorate


@lab_group.command("up")
@_fleet_options(hosts=10, windows=0)
@click.option(
    "--inventory-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the inventory (default: <work-dir>/inventory.yaml).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host filesystems, keys and secrets (default: a temporary directory).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="SSH port on every host address (0: pick a free one).",
)
@click.option(
    "--winrm-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="WinRM (HTTP) port on every Windows host address (0: pick a free one).",
)
@click.option(
    "--subnet", default="127.77", show_default=True, help="Host addresses are <subnet>.x.y."
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Extra seconds every connect takes.",
)
@click.option(
    "--unreachable",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Extra inventory hosts at addresses where nothing listens.",
)
@click.option(
    "--simulate-arm",
    is_flag=True,
    help="The simulated agents sign in and create or delete their machine resources through "
    "the lab's fake Entra ID and ARM, so name conflicts, missing roles and expired secrets or "
    "tokens come from its state. Without it, each host's scenario decides alone.",
)
def lab_up(
    linux: int,
    windows: int,
    scenario: str,
    inventory_out: Path | None,
    work_dir: Path | None,
    port: int,
    winrm_port: int,
    subnet: str,
    latency: float,
    unreachable: int,
    simulate_arm: bool,
) -> None:
    """Serve a lab fleet in the foreground until Ctrl-C or SIGTERM."""
    from fleet.lab.fleet import LabFleet

    plan = _plan(scenario)
    if linux + windows == 0:
        raise UsageError(Problem("<command line>", None, "--hosts", "need at least one host"))
    temporary = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="arcfleet-lab-")) if work_dir is None else work_dir
    try:
        lab = LabFleet(
            root,
            hosts=linux,
            windows=windows,
            plan=plan,
            subnet=subnet,
            port=port,
            winrm_port=winrm_port,
            latency_s=latency,
            unreachable=unreachable,
            inventory_path=inventory_out,
            simulate_arm=simulate_arm,
        )
    except ValueError as exc:
        raise UsageError(Problem("<command line>", None, "--subnet", str(exc))) from None
    try:
        asyncio.run(_serve(lab))
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


async def _serve(lab: object) -> None:
    from fleet.lab.fleet import LabFleet

    assert isinstance(lab, LabFleet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with lab:
        linux = sum(1 for h in lab.hosts.values() if h.os == "linux")
        windows = len(lab.hosts) - linux
        click.echo(
            f"lab: {linux} Linux hosts over SSH on port {lab.ssh_port}"
            + (f", {windows} Windows hosts over WinRM on port {lab.winrm_port}" if windows else "")
            + (f", {len(lab.unreachable)} unreachable" if lab.unreachable else "")
        )
        click.echo(f"lab: work dir {lab.work_dir}")
        click.echo(f"lab: inventory {lab.inventory_path}")
        click.echo(f"lab: Azure (fake Entra ID + ARM) at {lab.azure.url}, CA "
                   f"{lab.azure.certificates.ca_file}; the inventory names it"
                   + ("; the agents create their machines there" if lab.simulate_arm else ""))
        click.echo(f"run: arcfleet onboard -i {lab.inventory_path}")
        click.echo("lab: serving; Ctrl-C or SIGTERM stops it", err=True)
        await stop.wait()
    click.echo("lab: stopped", err=True)


@lab_group.command(
    "agent-shim",
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    },
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def agent_shim(args: tuple[str, ...]) -> None:
    """The azcmagent simulator as a program (see fleet/lab/agent/shim.py for its environment)."""
    from fleet.lab.agent.shim import main

    main(list(args))


@lab_group.command("demo")
@_fleet_options(hosts=40, windows=10)
@click.option(
    "--subnet", default="127.78", show_default=True, help="Host addresses are <subnet>.x.y."
)
@state_dir_option
def lab_demo(linux: int, windows: int, scenario: str, subnet: str, state_dir: Path) -> None:
    """Onboard a mixed lab fleet, check every diagnosis, fix the causes, rerun the failures."""
    from fleet.lab.demo import run_demo

    plan = _plan(scenario)
    with tempfile.TemporaryDirectory(prefix="arcfleet-demo-") as work_dir:
        code = run_demo(
            work_dir=Path(work_dir),
            state_dir=state_dir,
            plan=plan,
            linux=linux,
            windows=windows,
            subnet=subnet,
            console=Console(stderr=True),
        )
    raise SystemExit(code)


COMMANDS: list[click.Command] = [lab_group]
