"""The ``arcfleet`` command line. Each command group lives in its own module."""

from __future__ import annotations

import sys
import traceback

import click

from fleet import __version__
from fleet.errors import ArcfleetError, InputError
from fleet.redact import redact, redacted_output


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arcfleet")
@click.option("--debug", is_flag=True, help="Show Python tracebacks (secrets still redacted).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Onboard a fleet of servers to Azure Arc; every host ends connected or diagnosed."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    # Imported here so each module can import ``cli`` without a cycle.
    from fleet.cli import codes, inventory, lab, report, run, store

    for module in (inventory, codes, lab, run, report, store):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _show_traceback(exc: BaseException) -> None:
    # Python's own printing would bypass redaction; the traceback is text like any other output.
    text = "".join(traceback.format_exception(exc))
    click.echo(redact(text).rstrip("\n"), err=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # Everything the CLI prints passes the one output filter, whoever prints it.
    with redacted_output():
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
