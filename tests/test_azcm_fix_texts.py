"""Fix texts are true: every flag they name exists (arcfleet's own CLI, azcmagent's documented
flags, the install scripts', az CLI's), every setting they name is a playbook or inventory field,
and no text promises a feature arcfleet does not have."""

from __future__ import annotations

import re

import click
import pytest

from fleet.azcm import findings
from fleet.azcm.catalog import all_entries
from fleet.azcm.patterns import PATTERNS
from fleet.cli import cli
from fleet.engine.install_policy import InstallPolicy
from fleet.engine.playbook import Breaker, Pacing, Playbook

# azcmagent (reference section 5), the Linux install script (7.2) and `az provider register`
DOCUMENTED = {"--config", "--force-local-only", "--help", "--json", "--location",
              "--private-link-scope", "--resource-name", "--altdownload", "--tempdir",
              "--namespace", "--desiredversion"}
# The install stage exists now (issue 14): fix texts name it by its real settings instead.
NEVER = ("--concurrency", "become password", "mint a")


def _arcfleet_flags() -> set[str]:
    flags: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            flags.update(o for o in getattr(param, "opts", []) if o.startswith("--"))
        if isinstance(command, click.Group):  # a lazy group loads each command here
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    walk(sub)

    walk(cli)
    return flags


def _texts() -> list[str]:
    texts = [e.fix for e in all_entries()] + [p.fix for p in PATTERNS]
    texts += [p.cause for p in PATTERNS]
    texts += [findings.agent_missing("x").fix, findings.elevation_required("x").fix]
    from fleet.engine import install_stage

    texts += [install_stage._bundle_lacks("x").fix,
              install_stage._proxy_with_credentials().fix,
              install_stage._not_answering("x").fix]
    return texts


@pytest.mark.parametrize("text", _texts())
def test_fix_text_names_only_what_exists(text: str) -> None:
    known = DOCUMENTED | _arcfleet_flags()
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]+", text):
        assert flag in known, (flag, text)
    for setting in re.findall(r"`(pacing|breaker)\.(\w+)`", text):
        model = Pacing if setting[0] == "pacing" else Breaker
        assert setting[1] in model.model_fields, setting
    for field in re.findall(r"playbook's `(\w+)`", text):
        assert field in Playbook.model_fields, field
    for policy in re.findall(r"`install: ([\w-]+)`", text):
        assert policy in {p.value for p in InstallPolicy}, policy
    for command in re.findall(r"`arcfleet (\w+)", text):
        assert command in cli.list_commands(click.Context(cli)), command
    lowered = text.lower()
    assert not any(bad in lowered for bad in NEVER), text


def test_every_fail_verdict_of_a_pattern_or_code_has_a_docs_link() -> None:
    for pattern in PATTERNS:
        assert pattern.doc_url.startswith("https://"), pattern.name
    for entry in all_entries():
        assert entry.doc_url.startswith("https://"), entry.code
