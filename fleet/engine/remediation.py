"""Remediations that take more than one command: waiting for himds, and a stale resource.

**Waiting for himds** (AZCM0064/0061/0065/0066, "himds not ready"): Microsoft's fix is to make
sure the agent service runs and, right after an install, to give it a minute. arcfleet polls
``azcmagent show`` until himds answers (exit 0 and the himds service not stopped or starting), up
to the playbook's ``himds_wait_s`` (default 120 s); if show reports himds (or arcproxy) stopped it
restarts the agent services once; then the connect is retried.

**A stale resource** (AZCM0067 on an agent whose status is Expired or Disconnected but which
still holds a resource id): the local state points at a resource the agent can no longer use.
The documented way out is ``azcmagent disconnect --force-local-only`` and a new connect, which the
engine applies only when the playbook allows ``disconnect_force_local_only`` (the ``reconnect``
playbook does); otherwise the host fails and the diagnosis says why nothing was done.

These functions drive the host through a :class:`StepRunner` (the host run's own recorded
``_run``), so every command lands in the transcript like any other step.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Protocol

from fleet.azcm.catalog import DISCONNECT_URL
from fleet.azcm.commands import AgentCommands
from fleet.azcm.diagnosis import Action, ActionKind, Category, Diagnosis, Remediation
from fleet.transport.base import CommandResult

#: what ``azcmagent show`` reports for a service that does not answer yet
NOT_READY = ("stopped", "starting", "start pending", "stop pending", "paused", "inactive",
             "failed", "unknown")
_TEXT_SERVICE = re.compile(
    r"^\s{0,8}(?:Agent Service \(himds\)|Azure Arc Proxy \(arcproxy\))\s{0,40}:\s{0,8}(.{0,40})$",
    re.MULTILINE,
)
STALE_STATUSES = ("expired", "disconnected")


class StepRunner(Protocol):
    def __call__(
        self, stage: str, command: str, *, timeout_s: float | None = ...,
        remediation: str | None = ...,
    ) -> Awaitable[CommandResult]: ...


def service_states(show_output: str) -> dict[str, str]:
    """himds / arcproxy state from ``azcmagent show`` (``--json`` or text), lower-cased."""
    start = show_output.find("{")
    if start >= 0:
        try:
            body: Any = json.loads(show_output[start : show_output.rfind("}") + 1])
        except ValueError:
            body = None
        if isinstance(body, dict):
            services = {str(k).lower(): v for k, v in body.items()}.get("services")
            if isinstance(services, dict):
                return {str(k).lower(): str(v).lower() for k, v in services.items()
                        if str(k).lower() in ("himds", "arcproxy")}
            return {}
    states: dict[str, str] = {}
    for match in _TEXT_SERVICE.finditer(show_output):
        name = "himds" if "himds" in match.group(0) else "arcproxy"
        states[name] = match.group(1).strip().lower()
    return states


def himds_answers(result: CommandResult) -> bool:
    if result.exit_status != 0:
        return False
    states = service_states(result.stdout)
    return states.get("himds", "running") not in NOT_READY


async def wait_for_himds(
    run: StepRunner, commands: AgentCommands, agent: str, *, limit_s: float,
    may_restart: bool = True,
) -> bool:
    """Poll ``azcmagent show`` until himds answers or ``limit_s`` passes; restart the agent
    services once when show says himds or arcproxy is stopped. True when himds answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    delay = 1.0
    restarted = not may_restart
    step = Remediation.WAIT_FOR_HIMDS.value
    while True:
        result = await run("remediate", commands.show_json(agent), remediation=step)
        if himds_answers(result):
            return True
        states = service_states(result.stdout)
        if not restarted and "stopped" in states.values():
            restarted = True
            await run("remediate", commands.restart_agent_service(),
                      remediation=Remediation.RESTART_AGENT_SERVICE.value)
            continue
        if loop.time() + delay > deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def stale_resource(diagnosis: Diagnosis, status: str, resource_id: str,
                   allowed: bool) -> Diagnosis | None:
    """AZCM0067 from an agent that is Expired/Disconnected but holds a resource id: a stale
    resource. None when the agent's state does not say so (a real conflict)."""
    if status.lower() not in STALE_STATUSES or not resource_id:
        return None
    cause = (f"The agent is {status} but still holds resource {resource_id}, so connect refuses "
             "(AZCM0067): the local state is stale.")
    if allowed:
        return replace(
            diagnosis, category=Category.STALE_RESOURCE,
            action=Action(ActionKind.REMEDIATE, Remediation.DISCONNECT_LOCAL),
            name="stale agent state", cause=cause,
            fix="arcfleet runs `azcmagent disconnect --force-local-only`, then connects again.",
            doc_url=DISCONNECT_URL, resource_id=resource_id, rule="engine:stale_0067",
        )
    return replace(
        diagnosis, category=Category.STALE_RESOURCE, action=Action(ActionKind.FAIL_HOST),
        name="stale agent state",
        cause=cause + " arcfleet did not disconnect it: this playbook does not allow "
        "disconnect_force_local_only.",
        fix="Rerun with the reconnect playbook (`--playbook reconnect`), or run `azcmagent "
        "disconnect --force-local-only` on the host and rerun it.",
        doc_url=DISCONNECT_URL, resource_id=resource_id, rule="engine:stale_0067",
    )
