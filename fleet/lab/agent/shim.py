"""``arcfleet-lab-azcmagent``: the simulator as an ``azcmagent`` program on a real Linux host.

Put it on PATH as ``azcmagent`` (a wrapper script or symlink) on a host reached through a real
sshd. Per invocation it picks the simulated host by the address the client dialled (3rd field of
``SSH_CONNECTION``) and keeps that host's state under ``$ARCFLEET_LAB_ROOT/<address>/``:

- ``ARCFLEET_LAB_ROOT``      state and simulated filesystem root (default ``/tmp/arcfleet-lab``)
- ``ARCFLEET_LAB_SCENARIO``  scenario file (hosts keyed by address); default: all succeed
- ``$ARCFLEET_LAB_ROOT/target.json`` (optional) ``tenant_id``, ``subscription_id``,
  ``resource_group``, ``location``, ``client_id``, ``secret``, ``certificate_thumbprint``: the
  target the lab accepts; without it any service-principal secret is accepted.

Files under /tmp, /var/tmp and /home are the real ones (arcfleet's ``--config`` file); the agent's
log is kept in the simulated filesystem. Elevated when running as root.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from fleet.errors import ScenarioError
from fleet.lab.agent.simulator import run_agent
from fleet.lab.host import LabHost, LabTarget
from fleet.lab.scenario import Scenario, ScenarioPlan, load_plan

DEFAULT_ROOT = "/tmp/arcfleet-lab"
REAL_PREFIXES = ("/tmp/", "/var/tmp/", "/home/")


def dialled_address(environ: dict[str, str] | os._Environ[str]) -> str:
    fields = environ.get("SSH_CONNECTION", "").split()
    return fields[2] if len(fields) >= 4 else "127.0.0.1"


def _target(root: Path) -> LabTarget:
    path = root / "target.json"
    body: dict[str, str] = {}
    if path.exists():
        body = {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    known = {"tenant_id", "subscription_id", "resource_group", "location", "cloud",
             "client_id", "secret", "certificate_thumbprint"}
    return LabTarget(**{k: v for k, v in body.items() if k in known})


def build_host(environ: dict[str, str] | os._Environ[str]) -> LabHost:
    root = Path(environ.get("ARCFLEET_LAB_ROOT", DEFAULT_ROOT))
    address = dialled_address(environ)
    scenario_file = environ.get("ARCFLEET_LAB_SCENARIO")
    plan = load_plan(Path(scenario_file)) if scenario_file else ScenarioPlan(Scenario())
    # Only ``hosts`` (by address) and ``default`` apply: a lone host has no place in a spread.
    scenario = dict(plan.hosts).get(address, plan.default)
    host = LabHost(name=environ.get("ARCFLEET_LAB_HOSTNAME", address), address=address,
                   fs_root=root / address, target=_target(root),
                   state_file=root / address / "state.json", real_prefixes=REAL_PREFIXES)
    host.scenario = scenario
    if not host.load():  # first run, or the scenario changed: start from the scenario's state
        host.set_scenario(scenario)
    return host


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        host = build_host(os.environ)
    except (ScenarioError, OSError, ValueError) as exc:
        print(f"azcmagent (lab shim): {exc}", file=sys.stderr)
        sys.exit(1)
    result = asyncio.run(run_agent(args, host, elevated=os.geteuid() == 0))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.stdout.flush()
    sys.exit(result.exit_status)


if __name__ == "__main__":
    main()
