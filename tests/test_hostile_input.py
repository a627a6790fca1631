"""Hostile input: the playbook and scenario loaders answer any bytes with a result or a clean
InputError; shell metacharacters in inventory values reach a host as one literal argument.

(The inventory loaders and the classifier have their own fuzz suites:
tests/test_inventory_fuzz.py and tests/test_azcm_fuzz.py.)
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_support import (
    INPUT_SUBNET,
    all_command_lines,
    edit_inventory,
    lab_contacts,
    onboard,
    outcomes,
    write_playbook,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.azcm.agent_config import format_tags
from fleet.engine.playbook import Playbook, load_playbook, parse_playbook
from fleet.engine.transcript import TranscriptWriter
from fleet.errors import InventoryError, PlaybookError, ScenarioError
from fleet.inventory import load_inventory
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import ScenarioPlan, load_plan, plan_from_mapping

NASTY = ["\x00", "\x1b[31m", "\x1b]0;title\x07", "\x9b2J", "\ufeff", "\ud800", "\r", "\t",
         "\n", "[", "{", "}", ":", "- ", "&a", "*a", "!!python/object:os.system", "<<: *a",
         "'", '"', "\\", "~", ".inf", "-.inf", ".nan", "1e999", "0x10", "-1", "x" * 10_000,
         "9" * 400, "!!binary AAAA", "? ", "%YAML 1.1\n", "---\n", "...\n"]

PLAYBOOK_SEEDS = [
    (Path(__file__).resolve().parents[1] / "fleet/engine/playbooks/onboard.yaml").read_text(),
    "name: p\nmode: preflight\ndeadlines: {command_s: 1}\npacing: {forks: 2}\n",
    "name: p\nremediations: [restart_agent_service, wait_for_himds]\nbreaker: {threshold: 0}\n",
]
SCENARIO_SEEDS = [
    (Path(__file__).resolve().parents[1] / "fleet/lab/scenarios/mix.yaml").read_text(),
    "default: hang\nspread:\n  - {scenario: transient, fail_times: 2, count: 3}\nhosts:\n"
    "  lab-0001: {scenario: azcm, code: AZCM0044}\n  127.0.0.9: huge_output\n",
]

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> bytes:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.integers(0, 2))
        if how == 0:
            text = text[:at] + draw(st.sampled_from(NASTY)) + text[at:]
        elif how == 1:
            text = text[:at] + text[at + draw(st.integers(1, 30)):]
        else:
            text = text[:at] + draw(st.text(max_size=16)) + text[at:]
    data = text.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8
    if draw(st.booleans()):
        data += draw(st.binary(max_size=16))
    return data


HUGE = [b"name: " + b"p" * 1_000_000 + b"\n", b"[" * 60_000, b"{a: " * 30_000,
        b"- " * 50_000, b"&a [*a, " * 20_000, b"\x00" * 100_000, b"\xff\xfe" * 50_000,
        b"name: p\nattempts: " + b"9" * 100_000 + b"\n",
        b"a: &a [1]\n" + b"".join(b"b%d: &b%d [*a, *a, *a]\n" % (i, i) for i in range(30)),
        b"\x1b[31m" * 100_000]


def _check_playbook(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "playbook.yaml"
        path.write_bytes(data)
        try:
            playbook = load_playbook(path)
        except PlaybookError as exc:
            assert exc.problems and all(p.file == str(path) for p in exc.problems)
            assert all("\n" not in str(p) for p in exc.problems)  # one line per problem
        else:
            assert isinstance(playbook, Playbook)
    with contextlib.suppress(PlaybookError):
        parse_playbook(data.decode("utf-8", "replace"), "fuzz.yaml")


def _check_scenario(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_bytes(data)
        try:
            plan = load_plan(path)
        except ScenarioError as exc:
            assert exc.problems and all(p.file == str(path) for p in exc.problems)
            assert all("\n" not in str(p) for p in exc.problems)
        else:
            assert isinstance(plan, ScenarioPlan)
            plan.assign([f"h{i}" for i in range(5)], [f"127.0.0.{i}" for i in range(5)])


@FUZZ
@given(st.one_of(mutated(PLAYBOOK_SEEDS), st.binary(max_size=300),
                 st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_playbook_loader_any_bytes(data: bytes) -> None:
    _check_playbook(data)


@FUZZ
@given(st.one_of(mutated(SCENARIO_SEEDS), st.binary(max_size=300),
                 st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_scenario_loader_any_bytes(data: bytes) -> None:
    _check_scenario(data)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
              st.text(max_size=12), st.sampled_from(["hang", "azcm", "success", "AZCM0044"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(
                                ["scenario", "count", "code", "fail_times", "latency_s",
                                 "output_bytes", "default", "spread", "hosts", "name", "mode",
                                 "deadlines", "pacing", "attempts", "backoff"])), inner,
                                max_size=5)),
    max_leaves=25)


@FUZZ
@given(yaml_values)
def test_loaders_any_structure(value: Any) -> None:
    with contextlib.suppress(ScenarioError):
        plan_from_mapping(value, file="s.yaml")
    try:
        text = yaml.safe_dump(value)
    except yaml.YAMLError:
        return
    with contextlib.suppress(PlaybookError):
        parse_playbook(text, "p.yaml")


@pytest.mark.parametrize("data", HUGE, ids=lambda d: repr(d[:12]))
def test_huge_and_pathological_files(data: bytes) -> None:
    _check_playbook(data)
    _check_scenario(data)


def test_valid_files_still_load(tmp_path: Path) -> None:
    # The checks above must be able to see a valid result, not only errors.
    (tmp_path / "p.yaml").write_text(PLAYBOOK_SEEDS[1])
    (tmp_path / "s.yaml").write_text(SCENARIO_SEEDS[1])
    assert load_playbook(tmp_path / "p.yaml").deadlines.command_s == 1
    assert len(load_plan(tmp_path / "s.yaml").spread) == 3


# ---- shell metacharacters in values that end up on a command line ---------------------------

PWN = "$(touch {p})"
TICK = "`touch {p}`"


def test_metacharacters_reach_the_agent_as_one_literal_argument(tmp_path: Path) -> None:
    """Tags (names and values) and host names may hold shell and PowerShell metacharacters;
    on both transports they reach the agent simulator as exactly the inventory's text."""
    pwned = tmp_path / "pwned"
    tags = {
        "cmd": PWN.format(p=pwned),
        "tick": TICK.format(p=pwned),
        "semi": f"x; touch {pwned}; echo",
        "pipe": f"x | touch {pwned} && echo $HOME ${{env:TEMP}} %TEMP% > {pwned}",
        "$(touch x)`id`": "name-too",  # tag names may hold $ ( ) ` too
    }
    expected = format_tags(tags)
    # Host names are free text (but no whitespace) when azure.resource_name is set; they never
    # go into a command.
    linux_name, windows_name = "lin$(touch${ifs}pwned)", "win`id`;$(id)|&>x"
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1, subnet=INPUT_SUBNET) as lab:
        def poison(body: dict[str, Any]) -> None:
            body["defaults"]["azure"]["tags"] = tags
            hosts = body["hosts"]
            hosts[linux_name] = {**hosts.pop("lab-0001"), "azure": {"resource_name": "lin-1"}}
            hosts[windows_name] = {**hosts.pop("lab-0002"), "azure": {"resource_name": "win-1"}}

        edit_inventory(lab, poison)
        result = onboard(lab, tmp_path / "state", write_playbook(tmp_path))
        calls = lab.call(lambda: {n: list(h.connect_calls) for n, h in lab.hosts.items()})
        received = all_command_lines(lab)
    seen = outcomes(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h: o["category"] for h, o in seen.items()} == {
        linux_name: "connected", windows_name: "connected"}
    resource_names = {"lab-0001": "lin-1", "lab-0002": "win-1"}
    for name, host_calls in calls.items():  # lab-0001 over SSH, lab-0002 over WinRM
        assert len(host_calls) == 1, name
        (call,) = host_calls
        # The simulator got exactly the value the inventory holds, from the --config file.
        assert call.argv[-3:] == ("--config", call.config_path, "--verbose"), call.argv
        assert call.option("tags") == expected, (name, call)
        assert call.option("resource-name") == resource_names[name], call
    assert not any(linux_name in c or windows_name in c for c in received)
    assert not pwned.exists()
    transcripts = {p.name for p in (tmp_path / "state").glob("runs/*/transcripts/*.log")}
    assert len(transcripts) == 2
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") for n in transcripts)


@pytest.mark.parametrize(("where", "value", "field"), [
    ("name", "web$(touch /tmp/pwned)", "azure.resource_name"),
    ("name", "web`id`", "azure.resource_name"),
    ("resource_name", "x$(id)", "azure.resource_name"),
    ("correlation_id", "`touch /tmp/pwned`", "azure.correlation_id"),
    ("tag_name", "a/$(touch /tmp/pwned)", "azure.tags"),
    ("tag_value", "it's $(id)", "azure.tags"),
])
def test_metacharacters_refused_by_validation(tmp_path: Path, where: str, value: str,
                                              field: str) -> None:
    """Fields whose rules refuse these characters: a clean exit 2 naming file, host and field,
    and nothing contacted."""
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=INPUT_SUBNET) as lab:
        def poison(body: dict[str, Any]) -> None:
            hosts = body["hosts"]
            if where == "name":
                hosts[value] = hosts.pop("lab-0001")
                return
            azure = hosts["lab-0001"].setdefault("azure", {})
            if where == "tag_name":
                azure["tags"] = {value: "v"}
            elif where == "tag_value":
                azure["tags"] = {"k": value}
            else:
                azure[where] = value

        edit_inventory(lab, poison)
        result = onboard(lab, tmp_path / "state", write_playbook(tmp_path))
        contacts = lab_contacts(lab)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert str(lab.inventory_path) in lines[0]
    assert f"field {field}" in result.stderr, result.stderr
    assert "host " in lines[0]
    assert contacts == {}


@pytest.mark.parametrize("body", [
    b"arcfleet: 1\nhosts:\n  h1: {port: " + b"9" * 100_000 + b"}\n",
    b"all:\n  hosts:\n    h1:\n      ansible_port: " + b"9" * 100_000 + b"\n",
])
def test_inventory_with_an_integer_too_long_to_convert(tmp_path: Path, body: bytes) -> None:
    # Python refuses to convert integers of more than 4300 digits (ValueError): a clean error.
    path = tmp_path / "inventory.yaml"
    path.write_bytes(body)
    with pytest.raises(InventoryError) as caught:
        load_inventory([path], env={})
    assert all(p.file == str(path) for p in caught.value.problems)


def test_host_names_that_differ_only_in_unsafe_characters_get_their_own_transcripts(
    tmp_path: Path,
) -> None:
    writer = TranscriptWriter(tmp_path)
    names = ["web$1", "web_1", "web`1", "web/1", "web 1"]
    paths = {writer.path_for(name) for name in names}
    assert len(paths) == len(names)
    assert all(p.parent == writer.folder for p in paths)
    assert writer.path_for("lab-0001").name == "lab-0001.log"
