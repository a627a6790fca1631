"""The ``arcfleet`` command line. Each command group lives in its own module."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import resource
import sys
import threading
import traceback

import click

from fleet import __version__
from fleet.errors import ArcfleetError, InputError
from fleet.redact import redact, redacted_output
from fleet.text import pipe_safe_output

# Each command's module, and its one-line help for ``arcfleet --help``. A command's module (and
# what it needs: asyncssh, pywinrm, pydantic models, rich tables, the AZCM catalog) is imported
# only when that command runs, so --version and --help start at once. tests/test_cli_start.py
# checks this table against the commands themselves.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "codes": (
        "fleet.cli.codes", "Explain AZCM codes, list the catalog, or diagnose a saved output."
    ),
    "agent": (
        "fleet.cli.agent", "The Connected Machine agent itself: check an offline install bundle."
    ),
    "install": (
        "fleet.cli.run", "Install or upgrade the agent on every host; do not connect."
    ),
    "inventory": (
        "fleet.cli.inventory", "Read, check and show inventories (arcfleet YAML, Ansible INI/YAML)."
    ),
    "lab": (
        "fleet.cli.lab",
        "A simulated fleet on loopback: SSH and WinRM hosts running an azcmagent simulator.",
    ),
    "offboard": ("fleet.cli.run", "Disconnect every host from Azure Arc."),
    "onboard": ("fleet.cli.run", "Connect every host to Azure Arc."),
    "preflight": ("fleet.cli.run", "Check every host is ready; change nothing."),
    "report": (
        "fleet.cli.report",
        "Report a run (default: the latest first run) with all its reruns, from the store.",
    ),
    "rerun": (
        "fleet.cli.run",
        "Run again only the hosts that did not end connected, with the same options.",
    ),
    "runs": ("fleet.cli.report", "List the recorded runs, oldest first."),
    "show": ("fleet.cli.report", "One host's history across runs, with its transcript file(s)."),
    "store": (
        "fleet.cli.store",
        "The run store: schema migrations (SQLite in --state-dir, or a shared PostgreSQL).",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their module when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*LAZY_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            from fleet.cli.defaults import document_defaults

            module = importlib.import_module(LAZY_COMMANDS[cmd_name][0])
            for command in module.COMMANDS:
                if str(command.name) not in self.commands:
                    document_defaults(command)  # every option's --help says its default
                    self.commands[str(command.name)] = command
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The one-line helps from the table: asking each command would import every module.
        # Truncated as click does (click.Group.format_commands).
        limit = formatter.width - 6 - max(len(name) for name in LAZY_COMMANDS)
        rows = [
            (name, click.Command(name, help=LAZY_COMMANDS[name][1]).get_short_help_str(limit))
            for name in sorted(LAZY_COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arcfleet")
@click.option("--debug", is_flag=True, help="Show Python tracebacks (secrets still redacted).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Onboard a fleet of servers to Azure Arc; every host ends connected or diagnosed."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _show_traceback(exc: BaseException) -> None:
    # Python's own printing would bypass redaction; the traceback is text like any other output.
    text = "".join(traceback.format_exception(exc))
    click.echo(redact(text).rstrip("\n"), err=True)


def disable_core_dumps() -> None:
    """A core dump of this process would hold the secrets it read; children inherit the limit."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def entry() -> None:
    """The ``arcfleet`` program (console script and ``python -m fleet``): :func:`main`, then exit
    without the interpreter's teardown.

    Tearing down the modules and objects of a finished run (asyncssh, the Azure SDK, pydantic,
    one object graph per host) took 0.15-0.3 s of every run's wall time, after everything was
    written. What teardown would still do is done here first: the threads still running are
    joined, the atexit functions run (logging's flush, finalizers), stdout and stderr flushed.
    Tests call :func:`main` in-process; this one is for whole processes only.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    leave(code)


def leave(code: object) -> None:
    """Exit like ``sys.exit(code)`` after what interpreter shutdown does that matters, but skip
    the teardown of modules and objects (see :func:`entry`)."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        # A profiler, debugger or coverage tool runs this program and writes what it found
        # once the program is over (``python -m cProfile -m fleet``): the ordinary exit lets it.
        sys.exit(code)  # type: ignore[arg-type]
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("text") prints the text and exits 1
        with contextlib.suppress(OSError, ValueError):
            print(code, file=sys.stderr)
        status = 1
    # CPython's own first two steps of shutdown, in its order: wake and join the threads (idle
    # executor workers end only when told to), then the atexit functions. Without them (another
    # interpreter), the ordinary exit does everything.
    shutdown_threads = getattr(threading, "_shutdown", None)
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exit_functions is None:
        sys.exit(status)
    shutdown_threads()
    run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> None:
    disable_core_dumps()
    args = sys.argv[1:] if argv is None else argv
    # Everything the CLI prints passes the one output filter, whoever prints it; a reader that
    # goes away (`| head`) stops the printing, not the run.
    with pipe_safe_output(), redacted_output():
        _main(args)


def _main(args: list[str]) -> None:
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="arcfleet", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except InputError as exc:
        # One line per problem; every problem names its file, host and field.
        for problem in exc.problems:
            click.echo(f"error: {redact(str(problem))}", err=True)
        sys.exit(2)
    except ArcfleetError as exc:
        if debug:
            _show_traceback(exc)
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line unless --debug
        if debug:
            _show_traceback(exc)
            sys.exit(1)
        click.echo(
            f"internal error: {type(exc).__name__}: {redact(str(exc))} (rerun with --debug)",
            err=True,
        )
        sys.exit(1)
