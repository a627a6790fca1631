"""``azcmagent config``: the agent's local settings (reference 5.5), in ``LabHost.agent_config``.

``get`` needs no elevation; ``set`` and ``clear`` do (AZCM0018), as on a real host.
"""

from __future__ import annotations

from fleet.lab.agent.catalog import code_info
from fleet.lab.agent.console import AgentConsole, AgentFailure
from fleet.lab.host import LabHost

CONFIG_KEYS = {
    "proxy.url", "proxy.bypass", "incomingconnections.enabled", "incomingconnections.ports",
    "extensions.allowlist", "extensions.blocklist", "extensions.enabled",
    "guestconfiguration.enabled", "config.mode", "automaticupgrade.enabled",
}


def config_command(host: LabHost, console: AgentConsole, rest: list[str], elevated: bool) -> int:
    action = rest[0] if rest else ""
    if action == "list":
        console.out.append("Local Configuration Settings")
        for key in sorted(CONFIG_KEYS):
            console.out.append(f"  {key:<36}: {host.agent_config.get(key, '')}".rstrip())
        return 0
    if action in ("get", "set", "clear") and len(rest) >= 2:
        key = rest[1]
        if key not in CONFIG_KEYS:
            raise AgentFailure("AZCM0023", f"unknown configuration property {key!r}")
        if action == "get":
            console.out.append(host.agent_config.get(key, ""))
            return 0
        if not elevated:
            raise AgentFailure("AZCM0018", code_info("AZCM0018").reason)
        if action == "set":
            if len(rest) < 3:
                raise AgentFailure("AZCM0016", "config set needs a property and a value")
            host.agent_config[key] = rest[2]
        else:
            host.agent_config.pop(key, None)
        host.save()
        console.info(f"Config property {key} updated")
        return 0
    raise AgentFailure("AZCM0016", "usage: azcmagent config get|set|clear|list [property] [value]")
