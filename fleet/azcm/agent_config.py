"""What arcfleet tells the agent about its target: the ``--config`` file and the agent settings.

Every connect option goes into the JSON file given to ``azcmagent connect --config FILE``: the
credentials, the Azure ids, and the target options (resource name, tags, cloud, correlation id,
private link scope, gateway id). The command line is then the same short line on every host, so no
shell or Windows command-line quoting can change a value: a tag value ending in ``\\`` once made
azcmagent.exe (a Go program reading the Windows command line) swallow every later option.

Keys are azcmagent's flag names without the dashes, as ``--config`` expects (reference 5.1: "a
series of key-value pairs where the key matches an available command line option"); the file is
JSON, which ``--config`` reads. :func:`shown_config` is the same content with the credentials
masked, for the transcript.

:func:`agent_settings` is what ``azcmagent config set`` applies before connect (reference 6.3, no
service restart needed): the proxy and its bypass list.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass

from fleet.inventory.model import ResolvedHost

#: In a config sent to a host script, the certificate's path is this mark: only the script
#: knows its private directory, and puts the path there (see :func:`script_stdin`).
CERT_PATH_MARK = "@ARCFLEET_CERT_PATH@"

#: keys whose values are credentials: masked in :func:`shown_config`
SECRET_KEYS = frozenset({"service-principal-secret", "access-token"})
SHOWN_MASK = "<redacted>"

PROXY_URL = "proxy.url"
PROXY_BYPASS = "proxy.bypass"
#: the host script's step that reads the agent's proxy in preflight (``config get proxy.url``)
PROXY_GET_STEP = "proxy"


@dataclass(frozen=True)
class Credential:
    """How the agent authenticates: exactly the fields that apply are set.

    ``cert_path`` is the certificate's path *on the host* (the jump host's file is copied into
    the private directory first); ``access_token`` is a token minted on the jump host.
    """

    secret: str | None = None
    cert_path: str | None = None
    access_token: str | None = None


def format_tags(tags: Mapping[str, str]) -> str:
    """azcmagent's ``Name=Value,...`` form; a name or value with whitespace is enclosed in single
    quotes, as its ``--tags`` syntax wants. (Validation refuses ``'``, ``,`` and ``"`` in tags,
    and ``=`` in names, so nothing else needs escaping.)"""

    def part(text: str) -> str:
        return f"'{text}'" if any(c.isspace() for c in text) else text

    return ",".join(f"{part(k)}={part(v)}" for k, v in tags.items())


def tags_value(host: ResolvedHost) -> str | None:
    """The ``tags`` value for ``host`` (None when there are none)."""
    return format_tags(host.azure.tags) or None


def target_options(host: ResolvedHost) -> dict[str, str]:
    """The non-credential connect options, keyed by azcmagent flag name (no dashes)."""
    azure = host.azure
    pairs: dict[str, str | None] = {
        "tenant-id": azure.tenant_id,
        "subscription-id": azure.subscription_id,
        "resource-group": azure.resource_group,
        "location": azure.location,
        "cloud": azure.cloud.value,
        "resource-name": host.resource_name,
        "tags": tags_value(host),
        "correlation-id": azure.correlation_id,
        "private-link-scope": azure.private_link_scope,
        "gateway-id": azure.gateway_id,
    }
    return {key: value for key, value in pairs.items() if value}


def config_body(host: ResolvedHost, credential: Credential) -> dict[str, object]:
    """The ``--config`` content as a dict: credentials first, then the target options."""
    body: dict[str, object] = {"verbose": True}
    sp = host.azure.service_principal
    if credential.access_token is not None:
        body["access-token"] = credential.access_token
    elif sp is not None:
        body["service-principal-id"] = sp.client_id
        if credential.secret is not None:
            body["service-principal-secret"] = credential.secret
        elif credential.cert_path is not None:
            body["service-principal-cert"] = credential.cert_path
    body.update(target_options(host))
    return body


def connect_config(
    host: ResolvedHost,
    secret: str | None,
    cert_path: str | None = None,
    *,
    access_token: str | None = None,
) -> bytes:
    """The ``--config`` JSON for ``azcmagent connect`` (and disconnect) on ``host``.

    ``cert_path`` is the host-side path of the service principal's certificate; it is used when
    there is no ``secret``. An ``access_token`` replaces the service principal entirely.
    """
    credential = Credential(secret=secret, cert_path=cert_path, access_token=access_token)
    # ASCII with \u escapes: the same bytes whatever encoding a host tool assumes.
    return _dump(config_body(host, credential), ascii_only=True)


def disconnect_config(
    host: ResolvedHost,
    secret: str | None,
    cert_path: str | None = None,
    *,
    access_token: str | None = None,
) -> bytes:
    """The ``--config`` JSON for ``azcmagent disconnect``: the credentials, and the tenant the
    service principal signs in to (as before: a reconnect disconnects from the inventory's
    tenant). Its other flags are credential ones (reference 5.3); connect's target options
    (tags, resource name, ...) are not among them and are left out."""
    credential = Credential(secret=secret, cert_path=cert_path, access_token=access_token)
    body = config_body(host, credential)
    allowed = {"verbose", "access-token", "service-principal-id", "service-principal-secret",
               "service-principal-cert", "tenant-id"}
    return _dump({k: v for k, v in body.items() if k in allowed}, ascii_only=True)


def shown_config(config: bytes) -> str:
    """``config`` (as :func:`connect_config` made it) with every credential value masked: what
    the transcript shows of the file."""
    try:
        body = json.loads(config)
    except ValueError:
        return "<unreadable config>"
    if not isinstance(body, dict):
        return "<unreadable config>"
    masked = {k: (SHOWN_MASK if k in SECRET_KEYS else v) for k, v in body.items()}
    return _dump(masked, ascii_only=False).decode("utf-8")


def script_stdin(config: bytes, certificate: bytes | None = None) -> bytes:
    """What a host script reads on stdin: the config as one line of JSON, then (when the service
    principal uses a certificate) the certificate file base64-encoded. The script reads the line
    with its shell's ``read`` (which stops at the newline), writes the certificate from the rest
    (``base64 -d``) next to the config, and replaces :data:`CERT_PATH_MARK` with its path."""
    line = json.dumps(json.loads(config), separators=(",", ":")).encode("ascii")
    if certificate is None:
        return line + b"\n"
    return line + b"\n" + base64.encodebytes(certificate)


def agent_settings(host: ResolvedHost) -> list[tuple[str, str]]:
    """``azcmagent config set KEY VALUE`` pairs to apply before connect, in order."""
    azure = host.azure
    settings: list[tuple[str, str]] = []
    if azure.proxy_url:
        settings.append((PROXY_URL, azure.proxy_url))
        if azure.proxy_bypass:
            settings.append((PROXY_BYPASS, ",".join(azure.proxy_bypass)))
    return settings


def setting_step(key: str) -> str:
    """The host script's step name for ``config set KEY`` (``set-proxy-url``)."""
    return "set-" + key.replace(".", "-")


def is_setting_step(name: str) -> bool:
    return name.startswith("set-")


def proxy_report(host: ResolvedHost, configured: str | None) -> tuple[str, dict[str, str]]:
    """What preflight says about the agent's proxy: a sentence and its fields."""
    if configured is None:
        return "", {}
    wanted = host.azure.proxy_url or ""
    have = configured.strip()
    matches = _same_proxy(have, wanted)
    fields = {"proxy_configured": have or "(none)", "proxy_matches": "yes" if matches else "no"}
    if matches:
        text = f"agent proxy {have}, as the inventory says" if have else "no agent proxy"
    elif wanted:
        text = (f"agent proxy is {have or 'not set'}, the inventory says {wanted}: onboard sets "
                "proxy.url before it connects")
    else:
        # Nothing in the inventory: arcfleet leaves the agent's own setting alone.
        text = f"agent proxy {have} (the inventory sets none; onboard leaves it as it is)"
        fields["proxy_matches"] = "not set in inventory"
    return text, fields


def _same_proxy(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _dump(body: dict[str, object], *, ascii_only: bool) -> bytes:
    return json.dumps(body, indent=2, ensure_ascii=ascii_only).encode("utf-8")
