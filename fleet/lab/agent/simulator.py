"""The azcmagent simulator: one invocation of ``azcmagent ARGS`` on a :class:`LabHost`.

It behaves like the real agent where arcfleet can see it: flags and ``--config`` (a JSON or YAML
file on the host, keys are flag names, the command line wins), elevation, the agent service,
persistent connection state, console output (``INFO`` lines, progress bar, ``AZCMnnnn: Name``),
the verbose log in logrus format, and exit status = the AZCM number. The host's scenario decides
which failure (if any) a connect runs into.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from fleet.lab.agent import arm_client
from fleet.lab.agent.catalog import code_info
from fleet.lab.agent.console import AgentConsole as _Console
from fleet.lab.agent.console import AgentFailure as _Failure
from fleet.lab.agent.console import AgentResult
from fleet.lab.agent.credentials import (
    aad_trace,
    aad_unknown_app,
    aad_unknown_tenant,
    aad_wrong_secret,
    check_credentials,
    flag_text,
)
from fleet.lab.agent.proxy import proxy_column, proxy_failure
from fleet.lab.agent.settings import config_command
from fleet.lab.agent.tags import TagSyntaxError, parse_tags
from fleet.lab.host import AgentState, ConnectCall, LabHost
from fleet.lab.scenario import ScenarioKind

AGENT_VERSION = "1.60.03293.2140"

VALUE_FLAGS = {
    "config", "subscription-id", "resource-group", "location", "tenant-id",
    "service-principal-id", "service-principal-secret", "service-principal-cert",
    "access-token", "resource-name", "cloud", "tags", "correlation-id", "private-link-scope",
    "gateway-id", "automanage-profile", "proxy", "os",
}
# Left out of what ConnectCall records: the lab keeps no credential after the call.
_CREDENTIAL_FLAGS = {"service-principal-secret", "access-token", "config"}
BOOL_FLAGS = {
    "verbose", "json", "log-stderr", "no-color", "help", "force-local-only", "use-device-code",
    "ignore-network-check", "enable-automatic-upgrade", "use-azcli", "enable-pls-check",
}
SHORT_FLAGS = {
    "-s": "subscription-id", "-g": "resource-group", "-l": "location", "-t": "tenant-id",
    "-i": "service-principal-id", "-p": "service-principal-secret", "-n": "resource-name",
    "-v": "verbose", "-j": "json", "-h": "help", "-f": "force-local-only",
}
REGIONS = {
    "westeurope", "northeurope", "eastus", "eastus2", "westus", "westus2", "westus3",
    "centralus", "uksouth", "ukwest", "francecentral", "germanywestcentral", "swedencentral",
    "southeastasia", "eastasia", "japaneast", "australiaeast", "canadacentral", "brazilsouth",
}
CLOUDS = {"AzureCloud", "AzureUSGovernment", "AzureChinaCloud"}



def _parse(argv: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """Positional words and flags. Raises _Failure(AZCM0023) on an unknown flag."""
    positional: list[str] = []
    flags: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            positional.extend(argv[i:])
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, eq, inline = word.partition("=")
        name = SHORT_FLAGS.get(name, name.lstrip("-")) if name.startswith("-") else name
        if name in BOOL_FLAGS:
            flags[name] = inline.lower() != "false" if eq else True
        elif name in VALUE_FLAGS:
            if eq:
                flags[name] = inline
            elif i < len(argv):
                flags[name] = argv[i]
                i += 1
            else:
                raise _Failure("AZCM0023", f"flag needs an argument: --{name}")
        else:
            raise _Failure("AZCM0023", f"unknown flag: {word.partition('=')[0]}")
    return positional, flags


def _read_config(host: LabHost, path: str) -> dict[str, str | bool]:
    local = host.local_path(path)
    try:
        text = local.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise _Failure("AZCM0019", f"open {path}: no such file or directory") from None
    except OSError as exc:
        raise _Failure("AZCM0019", f"open {path}: {exc.strerror}") from None
    try:
        body = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise _Failure("AZCM0023", f"unable to parse the configuration file {path}") from None
    if not isinstance(body, dict):
        raise _Failure("AZCM0023", f"the configuration file {path} must hold key-value pairs")
    result: dict[str, str | bool] = {}
    for key, value in body.items():
        if key not in VALUE_FLAGS | BOOL_FLAGS:
            raise _Failure("AZCM0023", f"unknown key {key!r} in configuration file {path}")
        result[str(key)] = value if isinstance(value, bool) else str(value)
    return result


async def run_agent(argv: list[str], host: LabHost, *, elevated: bool) -> AgentResult:
    """Run ``azcmagent`` with ``argv`` (arguments after the program name; a leading program
    name is tolerated) on ``host``. Cancelling the task stops the simulated process."""
    args = list(argv)
    if args and args[0].replace("\\", "/").rsplit("/", 1)[-1] in ("azcmagent", "azcmagent.exe"):
        args = args[1:]
    console = _Console()
    started = time.monotonic()
    config_path: str | None = None
    config_existed = False
    command = ""
    status: int | None = None  # None while running: a cancelled connect records None
    was_connected = host.state.connected
    flags: dict[str, str | bool] = {}
    try:
        try:
            positional, cli_flags = _parse(args)
            console.verbose = bool(cli_flags.get("verbose"))
            console.json_mode = bool(cli_flags.get("json"))
            console.log_stderr = bool(cli_flags.get("log-stderr"))
            command = positional[0] if positional else ""
            flags.update(cli_flags)
            if isinstance(cli_flags.get("config"), str):
                config_path = str(cli_flags["config"])
                config_existed = host.local_path(config_path).is_file()
                flags.update({**_read_config(host, config_path), **cli_flags})
                console.verbose = bool(flags.get("verbose"))
            status = await _dispatch(command, positional[1:], flags, host, console, elevated)
        except _Failure as failure:
            status = console.fail(failure)
        return console.result(status)
    finally:
        # Written even when cancelled (hang + signal), like the real agent's log.
        if console.log:
            host.append_log(console.log)
        if command == "connect":
            options = tuple((k, v) for k, v in flags.items() if k not in _CREDENTIAL_FLAGS)
            host.connect_calls.append(
                ConnectCall(tuple(argv), elevated, config_path, config_existed, status,
                            agent_was_connected=was_connected, started_at=started,
                            options=options,
                            credentials=tuple(sorted(k for k in flags
                                                     if k in _CREDENTIAL_FLAGS))))


async def _dispatch(command: str, rest: list[str], flags: dict[str, str | bool], host: LabHost,
                    console: _Console, elevated: bool) -> int:
    if flags.get("help") or command in ("", "help"):
        console.out.append("Azure Connected Machine Agent\n\nUsage:\n  azcmagent [command]\n\n"
                           "Available Commands:\n  check connect config disconnect logs show "
                           "version")
        return 0
    if command == "version":
        console.out.append(f"azcmagent version {host.agent_version or AGENT_VERSION}")
        return 0
    if command == "show":
        return _show(host, console, flags, rest)
    if command == "check":
        return _check(host, console)
    if command == "config":
        return config_command(host, console, rest, elevated)
    if command == "logs":
        return _logs(host, console, elevated)
    if command == "connect":
        return await _connect(host, console, flags, elevated)
    if command == "disconnect":
        return await _disconnect(host, console, flags, elevated)
    raise _Failure("AZCM0023", f'unknown command "{command}" for "azcmagent"')


def _show(host: LabHost, console: _Console, flags: dict[str, str | bool],
          rest: list[str]) -> int:
    state = host.state
    service = "running" if host.service_running else "stopped"
    himds = "starting" if host.service_running and not host.himds_ready else service
    body: dict[str, object] = {
        "resourceName": state.resource_name, "resourceGroup": state.resource_group,
        "resourceNamespace": "Microsoft.HybridCompute", "resourceId": state.resource_id,
        "subscriptionId": state.subscription_id, "tenantId": state.tenant_id,
        "vmId": state.vm_id, "correlationId": state.correlation_id, "location": state.location,
        "cloud": state.cloud, "agentVersion": host.agent_version or AGENT_VERSION,
        "status": state.status, "lastHeartbeat": state.connected_at,
        "agentErrorCode": "", "agentErrorDetails": "", "agentErrorTimestamp": "",
        "httpsProxy": host.agent_config.get("proxy.url", ""),
        "services": {"himds": himds, "arcproxy": service, "extensionservice": service,
                     "gcarcservice": service},
    }
    if rest:
        body = {k: v for k, v in body.items() if k in rest}
    if flags.get("json"):
        console.out.append(json.dumps(body))
        return 0
    labels = [
        ("Resource Name", state.resource_name), ("Resource Group Name", state.resource_group),
        ("Resource Namespace", "Microsoft.HybridCompute"), ("Resource Id", state.resource_id),
        ("Subscription ID", state.subscription_id), ("Tenant ID", state.tenant_id),
        ("VM ID", state.vm_id), ("Correlation ID", state.correlation_id),
        ("Location", state.location), ("Cloud", state.cloud),
        ("Agent Version", host.agent_version or AGENT_VERSION),
        ("Agent Logfile", host.log_path.replace("azcmagent.log", "himds.log")),
        ("Agent Status", state.status), ("Agent Last Heartbeat", state.connected_at),
        ("Agent Error Code", ""), ("Agent Error Details", ""), ("Agent Error Timestamp", ""),
        ("Using HTTPS Proxy", host.agent_config.get("proxy.url", "")),
    ]
    for label, value in labels:
        console.out.append(f"{label:<40}: {value}".rstrip())
    console.out.append("Dependent Service Status")
    for label in ("Agent Service (himds)", "Azure Arc Proxy (arcproxy)",
                  "Extension Service (extensionservice)", "GC Service (gcarcservice)"):
        console.out.append(f"  {label:<38}: {himds if 'himds' in label else service}")
    return 0


def _check(host: LabHost, console: _Console) -> int:
    kind = host.scenario.kind
    blocked = {
        ScenarioKind.LOGIN_UNREACHABLE: {"login"},
        ScenarioKind.LOGIN_FORBIDDEN: {"login"},
        ScenarioKind.NO_SUCH_HOST: {"login"},
        ScenarioKind.ARM_FORBIDDEN: {"management"},
        ScenarioKind.TRANSIENT: {"his"},
    }.get(kind, set())
    console.info("Testing connectivity to endpoints that are needed to connect to Azure... "
                 "This might take a few minutes.")
    console.out.append(f"{'ENDPOINT':<54}|{'REACHABLE':<11}|{'PRIVATE':<9}|{'TLS':<9}|PROXY")
    for url in ("https://agentserviceapi.guestconfiguration.azure.com",
                "https://gbl.his.arc.azure.com", "https://login.microsoftonline.com",
                "https://login.windows.net", "https://management.azure.com",
                "https://pas.windows.net", "https://westeurope-gas.guestconfiguration.azure.com"):
        down = any(word in url for word in blocked)
        reach, tls = ("false", "unknown") if down else ("true", "1.3")
        console.out.append(f"{url:<54}|{reach:<11}|{'false':<9}|{tls:<9}|{proxy_column(host)}")
    return 0


def _logs(host: LabHost, console: _Console, elevated: bool) -> int:
    if not elevated:
        raise _Failure("AZCM0018", code_info("AZCM0018").reason)
    name = f"azcmagent-logs-{time.strftime('%y%m%dT%H%M', time.gmtime())}-{host.name}.zip"
    (host.local_path("/tmp") / name).write_bytes(b"PK\x05\x06" + b"\0" * 18)
    console.info(f"Log collection complete. Log file: {name}")
    return 0


def _need_agent_ready(host: LabHost, elevated: bool) -> None:
    if not elevated:
        raise _Failure("AZCM0018", code_info("AZCM0018").reason)
    if not host.service_running:
        raise _service_stopped()
    if not host.himds_ready:
        # just installed: himds runs but does not answer yet
        raise _Failure("AZCM0064", "Failed to obtain change token: himds is not ready",
                       "Unable to communicate with the agent service (himds)")


def _service_stopped() -> _Failure:
    # What a stopped himds looks like: nothing listens on its local port.
    return _Failure("AZCM0064", 'Get "http://localhost:40342/agentstatus": dial tcp '
                    "127.0.0.1:40342: connect: connection refused",
                    "Unable to communicate with the agent service (himds)")


def _scenario_failure(host: LabHost, flags: dict[str, str | bool], name: str,
                      stage: str) -> _Failure | None:
    """The failure the host's scenario injects at ``stage`` (network, token, arm, create)."""
    scenario = host.scenario
    kind = scenario.kind
    tenant = flag_text(flags, "tenant-id") or host.target.tenant_id
    client = flag_text(flags, "service-principal-id") or host.target.client_id
    sub = flag_text(flags, "subscription-id") or host.target.subscription_id
    group = flag_text(flags, "resource-group") or host.target.resource_group
    scope = (f"/subscriptions/{sub}/resourcegroups/{group}/providers/"
             f"Microsoft.HybridCompute/machines/{name}")
    corr = uuid.uuid4()
    token_stage = "Failed to acquire authorization token from SPN"
    arm_stage = "Failed to AzcmagentConnect ARM resource"
    retried = host.connect_attempts <= scenario.fail_times
    if stage == "network" and kind is ScenarioKind.TRANSIENT and retried:
        return _Failure("AZCM0026", code_info("AZCM0026").reason,
                        "Failed to reach the Azure Arc service")
    if stage == "token":
        login = f"https://login.microsoftonline.com/{tenant}/oauth2/token?api-version=1.0"
        table = {
            ScenarioKind.WRONG_SECRET: aad_wrong_secret(client),
            ScenarioKind.EXPIRED_SECRET: (
                f"AADSTS7000222: The provided client secret keys for app '{client}' are "
                "expired. Visit the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials "
                "for added security: https://aka.ms/certCreds." + aad_trace()),
            ScenarioKind.UNKNOWN_APP: aad_unknown_app(client, tenant),
            ScenarioKind.UNKNOWN_TENANT: aad_unknown_tenant(tenant),
            ScenarioKind.LOGIN_UNREACHABLE: (
                f"Failed to execute the refresh request. Error = 'Post \\\"{login}\\\": dial "
                "tcp 40.126.9.7:443: connect: network is unreachable'"),
            ScenarioKind.LOGIN_FORBIDDEN: (
                f"Failed to execute the refresh request. Error = 'Post {login}: Forbidden'"),
            ScenarioKind.NO_SUCH_HOST: (
                f"Failed to execute the refresh request. Error = 'Post \\\"{login}\\\": dial "
                "tcp: lookup login.microsoftonline.com: no such host'"),
        }
        if kind in table:
            return _Failure("AZCM0041", table[kind], token_stage)
    if stage == "arm":
        if kind is ScenarioKind.CLOCK_AHEAD:
            now = datetime.now(UTC)
            return _Failure("AZCM0042", (
                f"RequestCorrelationId:{corr} Message: The access token expiry UTC time "
                f"'{(now - timedelta(minutes=5)):%m/%d/%Y %I:%M:%S %p}' is earlier than current "
                f"UTC time '{now:%m/%d/%Y %I:%M:%S %p}'. Code: ExpiredAuthenticationToken "
                "httpStatusCode:401"), arm_stage)
        if kind is ScenarioKind.RBAC_403:
            return _Failure("AZCM0042", (
                f"The client '{client}' with object id '{uuid.uuid5(uuid.NAMESPACE_OID, client)}'"
                " does not have authorization to perform action "
                f"'Microsoft.HybridCompute/machines/read' over scope '{scope}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials. "
                "Code: AuthorizationFailed Status Code=403"), "Get ARM Resource Response")
        if kind is ScenarioKind.UNREGISTERED_PROVIDER:
            return _Failure("AZCM0042", (
                f"RequestCorrelationId:{corr} Message: The subscription is not registered to "
                "use namespace 'Microsoft.HybridCompute'. See https://aka.ms/rps-not-found for "
                "how to register subscriptions. Code: MissingSubscriptionRegistration "
                "httpStatusCode:409"), arm_stage)
        if kind is ScenarioKind.ARM_FORBIDDEN:
            return _Failure("AZCM0042", (
                f"Get https://management.azure.com{scope}?api-version=2019-03-18-preview:  "
                "Forbidden"), arm_stage)
        if kind is ScenarioKind.THROTTLED and retried:
            wait = scenario.retry_after_s
            return _Failure("AZCM0042", (
                f"RequestCorrelationId:{corr} Message: Number of write requests for "
                f"subscription '{sub}' actor '{client}' on scope '{scope}' exceeded. Please "
                f"try again after '{wait}' seconds. Code: SubscriptionRequestsThrottled "
                f"httpStatusCode:429 Retry-After:{wait}"), arm_stage)
    if stage == "create" and kind is ScenarioKind.AZCM and scenario.code:
        info = code_info(scenario.code)
        return _Failure(scenario.code, scenario.message or info.reason,
                        "Failed to connect the machine to Azure")
    return None


async def _connect(host: LabHost, console: _Console, flags: dict[str, str | bool],
                   elevated: bool) -> int:
    _need_agent_ready(host, elevated)
    if host.state.holds_resource:
        raise _Failure("AZCM0067", code_info("AZCM0067").reason,
                       "Failed to connect the machine to Azure")
    if host.scenario.kind is ScenarioKind.HANG:
        console.info("Connecting machine to Azure... This might take a few minutes.")
        await asyncio.Event().wait()  # never set: runs until cancelled
    missing = [name for name in ("subscription-id", "resource-group", "location")
               if not flag_text(flags, name)]
    has_sp = bool(flag_text(flags, "service-principal-id"))
    if not has_sp and not flag_text(flags, "access-token"):
        missing.append("service-principal-id")
    if has_sp and not flag_text(flags, "tenant-id"):
        missing.append("tenant-id")
    if has_sp and not (flag_text(flags, "service-principal-secret")
                       or flag_text(flags, "service-principal-cert")):
        missing.append("service-principal-secret")
    if missing:
        quoted = '", "'.join(missing)
        raise _Failure("AZCM0016", f'required flag(s) "{quoted}" not set')
    location = flag_text(flags, "location")
    if location.lower() not in REGIONS:
        raise _Failure("AZCM0020", f"location '{location}' is not a supported region")
    cloud = flag_text(flags, "cloud") or "AzureCloud"
    if cloud not in CLOUDS:
        raise _Failure("AZCM0023", f"invalid cloud '{cloud}'")
    tags = flag_text(flags, "tags")
    try:
        parse_tags(tags) if tags else None
    except TagSyntaxError as exc:
        raise _Failure("AZCM0023", f"invalid tags '{tags}': {exc}") from None
    host.connect_attempts += 1
    host.save()
    name = flag_text(flags, "resource-name") or host.name
    correlation = flag_text(flags, "correlation-id") or str(uuid.uuid4())

    console.info(f"Cloud: {cloud}")
    console.info("Connecting machine to Azure... This might take a few minutes.")
    console.info("Testing connectivity to endpoints that are needed to connect to Azure... "
                 "This might take a few minutes.")
    latency = host.scenario.connect_latency_s + host.latency_s
    if latency > 0:
        await asyncio.sleep(latency)
    _raise_if(_scenario_failure(host, flags, name, "network"))
    _raise_if(proxy_failure(host, location=location, tenant=flag_text(flags, "tenant-id"),
                            subscription=flag_text(flags, "subscription-id")))
    console.debug("All endpoints are available... continue onboarding")
    console.progress(20)
    _raise_if(_scenario_failure(host, flags, name, "token"))
    check_credentials(host, flags)
    console.debug("Acquired access token from SPN")
    console.progress(30)
    _raise_if(_scenario_failure(host, flags, name, "arm"))
    if host.arm is not None:  # the lab's fake ARM decides (lab up --simulate-arm)
        await _through_arm(arm_client.on_connect(host.arm, flags, host.target.tenant_id, name))
    if host.scenario.kind is ScenarioKind.HUGE_OUTPUT:
        _huge(console, host.scenario.output_bytes)
    sub = flag_text(flags, "subscription-id")
    group = flag_text(flags, "resource-group")
    resource_id = (f"/subscriptions/{sub}/resourceGroups/{group}/providers/"
                   f"Microsoft.HybridCompute/machines/{name}")
    console.info("Creating resource in Azure...",
                 f"Correlation ID={correlation} Resource ID={resource_id}")
    _raise_if(_scenario_failure(host, flags, name, "create"))
    console.progress(60)
    console.progress(80)
    console.progress(100)
    host.state = AgentState(
        status="Connected", resource_name=name, resource_group=group, subscription_id=sub,
        tenant_id=flag_text(flags, "tenant-id"), location=location, cloud=cloud,
        correlation_id=correlation, vm_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, host.name)),
        connected_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), tags=tags)
    host.save()
    console.info("Connected machine to Azure")
    tenant = host.state.tenant_id
    console.info(f"Machine overview page: https://portal.azure.com/#@{tenant}/resource"
                 f"{resource_id}/overview")
    if console.json_mode:
        console.out.append(json.dumps({"status": "Connected", "resourceId": resource_id,
                                       "portalUrl": f"https://portal.azure.com/#@{tenant}"
                                       f"/resource{resource_id}/overview"}))
    return 0


async def _through_arm(call: Coroutine[Any, Any, None]) -> None:
    try:
        await call
    except arm_client.ArmRefused as exc:
        raise _Failure(exc.code, exc.reason, exc.stage) from None


def _huge(console: _Console, size: int) -> None:
    line = "DEBUG   Processing extension metadata chunk " + "x" * 60
    count = max(size // (len(line) + 8), 1)
    target = console.err if console.log_stderr else console.out
    target.extend(f"{line} {n:06d}" for n in range(count))


def _raise_if(failure: _Failure | None) -> None:
    if failure is not None:
        raise failure


async def _disconnect(host: LabHost, console: _Console, flags: dict[str, str | bool],
                elevated: bool) -> int:
    if not elevated:
        raise _Failure("AZCM0018", code_info("AZCM0018").reason)
    if flags.get("force-local-only"):
        host.state = AgentState()
        host.save()
        console.info("Disconnecting local agent configuration only (--force-local-only)")
        console.info("Successfully disconnected the machine locally")
        return 0
    if not host.service_running:
        raise _service_stopped()
    if not host.state.connected:
        raise _Failure("AZCM0063", "the machine is not connected to Azure",
                       "Failed to disconnect the machine")
    if not flag_text(flags, "access-token"):
        if not flag_text(flags, "service-principal-id"):
            raise _Failure("AZCM0016", 'required flag(s) "service-principal-id" not set')
        check_credentials(host, {**flags, "tenant-id": flag_text(flags, "tenant-id")
                                  or host.state.tenant_id})
    console.info("Deleting resource from Azure...", f"Resource ID={host.state.resource_id}")
    if host.arm is not None:
        state = host.state
        await _through_arm(arm_client.on_disconnect(
            host.arm, flags, state.tenant_id, state.subscription_id, state.resource_group,
            state.resource_name))
    host.state = AgentState()
    host.save()
    console.info("Disconnected machine from Azure")
    return 0
