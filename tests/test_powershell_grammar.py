"""Every PowerShell script arcfleet sends parses with the real PowerShell grammar
(tree-sitter-powershell): no ERROR or MISSING node, hostile inventory values included; and the
file upload reads its stdin without a cmdlet (issue 16 item 5)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from fleet.azcm import windows_private
from fleet.azcm.commands import ScriptParams
from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.azcm.install_windows import WindowsInstall, uninstall_script
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport
from fleet.transport.powershell import (
    PRELUDE,
    put_file_script,
    read_tail_script,
    script_bootstrap,
)

tree_sitter = pytest.importorskip("tree_sitter")
tree_sitter_powershell = pytest.importorskip("tree_sitter_powershell")

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
CMDS = WindowsAgentCommands()
AGENT = r"C:\Program Files\AzureConnectedMachineAgent\azcmagent.exe"
PRIVATE = r"C:\Windows\Temp\arcfleet-0123456789abcdef0123456789abcdef"
# Values an inventory may hold (tag validation refuses double quotes).
HOSTILE = [
    "plain", "it's", "‘curly’ ’quotes‚‛", "$(Remove-Item C:\\ -Recurse)", "`n`$x", "a;b|c&d",
    "@{x=1}", "${env:PATH}", "#comment", "<# block #>", "line\nbreak", "tab\there", "ü–漢字",
]


def _nodes(node: object) -> Iterator[object]:
    yield node
    for child in node.children:  # type: ignore[attr-defined]
        yield from _nodes(child)


def _problems(script: str) -> list[str]:
    tree = PARSER.parse((PRELUDE + script).encode("utf-8"))
    return [f"{n.type} at {n.start_point}: {n.text[:60]!r}"  # type: ignore[attr-defined]
            for n in _nodes(tree.root_node)
            if n.type == "ERROR" or n.is_missing]  # type: ignore[attr-defined]


def _host(value: str) -> ResolvedHost:
    return ResolvedHost(
        name="w1", address="127.30.0.9", port=5986, transport=Transport.WINRM,
        os=OsFamily.WINDOWS,
        azure=AzureTarget(resource_name=value, tags={"k": value, value: "v"},
                          correlation_id=value))


def _scripts(value: str) -> dict[str, str]:
    config = CMDS.config_path(PRIVATE)
    return {
        "check_elevation": CMDS.check_elevation(),
        "locate_agent": CMDS.locate_agent(),
        "version": CMDS.version(AGENT),
        "show_json": CMDS.show_json(AGENT),
        "make_private_dir": CMDS.make_private_dir(),
        "connect": CMDS.connect(AGENT, config, _host(value)),
        "disconnect": CMDS.disconnect(AGENT, config, force_local_only=False),
        "disconnect_local": CMDS.disconnect(AGENT, None, force_local_only=True),
        "config_set_proxy": CMDS.config_set(AGENT, "proxy.url", "http://proxy.corp:3128"),
        "config_set_value": CMDS.config_set(AGENT, "proxy.bypass", value),
        "config_get_proxy": CMDS.config_get(AGENT, "proxy.url"),
        "restart": CMDS.restart_agent_service(),
        "remove_dir": CMDS.remove_dir(PRIVATE),
        # After a stop before the script's workdir record: the planned name under TEMP.
        "remove_planned_dir": CMDS.remove_dir(CMDS.planned_private_dir(ScriptParams(
            boundary="b" * 32, mode="connect", cap=1, log_tail_bytes=1, cleanup_after_s=60))),
        "put_file": put_file_script(config, private=True),
        "put_file_env": put_file_script(r"%ProgramData%\x\" + value", private=False),
        "read_tail": read_tail_script(CMDS.log_path, 65536),
        "read_tail_value": read_tail_script("C:\\logs\\" + value, 10),
        # The install stage's own scripts (issue 14); the proxy URL comes from the inventory.
        "msiexec": _install(value).msiexec_script(),
        "msi_log_errors": _install(value).log_errors_script(),
        "install_script": _install(value).script_run(),
        "install_script_offline": WindowsInstall(PRIVATE, offline_msi=True).script_run(),
        "install_output": _install(value).read_output_script(),
        "uninstall": uninstall_script(),
    }


def _install(value: str) -> WindowsInstall:
    return WindowsInstall(PRIVATE, proxy_url=f"http://proxy.example:3128/{value}")


@pytest.mark.parametrize("value", HOSTILE)
def test_every_script_parses_without_error(value: str) -> None:
    problems = {name: p for name, script in _scripts(value).items() if (p := _problems(script))}
    assert not problems


def test_the_timed_cleanup_fragments_and_the_task_action_parse() -> None:
    scripts = {
        "timer": "$dir = 'C:\\x'\n" + windows_private.timed_cleanup_lines(900),
        "sweep": windows_private.sweep_lines(900),
        "cancel": "$dir = 'C:\\x'\n" + windows_private.cancel_lines(),
    }
    # The action the task runs, as the host builds it with -f (the path as base64).
    for profile in ("Administrator", "O'Brien", "‘curly’"):
        directory = f"C:\\Users\\{profile}\\AppData\\Local\\Temp\\arcfleet-{'0' * 32}"
        encoded = base64.b64encode(directory.encode("utf-16-le")).decode("ascii")
        scripts[profile] = windows_private._TASK_CLEANUP.format(encoded, "arcfleet-" + "0" * 32)
    problems = {name: p for name, script in scripts.items() if (p := _problems(script))}
    assert not problems


@pytest.mark.parametrize("value", HOSTILE)
def test_the_host_script_parses_with_hostile_values(value: str) -> None:
    params = ScriptParams(boundary="arcfleet-" + "0" * 32, mode="connect", cap=65536,
                          log_tail_bytes=65536, cleanup_after_s=840)
    script = CMDS.script_command(params, _host(value))
    assert not _problems(script)
    assert script_bootstrap() and not _problems(script_bootstrap())


def test_the_grammar_does_report_broken_scripts() -> None:
    # The check above can fail: an unbalanced quote or brace is an ERROR/MISSING node.
    assert _problems("$x = 'unterminated\n")
    assert _problems("if ($true) { Write-Output 1\n")


def test_the_upload_reads_stdin_without_a_cmdlet() -> None:
    script = put_file_script(CMDS.config_path(PRIVATE), private=True)
    tree = PARSER.parse(script.encode("utf-8"))
    variables = {n.text.decode().lower() for n in _nodes(tree.root_node)  # type: ignore[attr-defined]
                 if n.type == "variable"}  # type: ignore[attr-defined]
    assert "$input" not in variables  # `$input | Out-String` is bound (and logged) by a cmdlet
    assert "[Console]::In.ReadToEnd()" in script
    assert "Out-String" not in script
