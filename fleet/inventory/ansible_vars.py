"""One host's (or group's) Ansible variables -> one arcfleet settings layer.

Ansible merges variables first and only then lets the connection plugin read them; so does
arcfleet: :mod:`fleet.inventory.ansible_precedence` computes a host's variables as Ansible does,
and :func:`vars_layer` reads them here. Where Ansible gives a setting several names
(``ansible_user`` and ``ansible_ssh_user``), the names are read in the plugin's documented order
and the last one set wins, as in Ansible's config manager. Only variables that say how to reach a
host and arcfleet's own ``arc_*`` variables are read; anything arcfleet cannot honour is refused
with the variable named (docs/inventory.md has the table). An unknown ``arc_*`` variable is an
error.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.inventory.spec import HostSpec, SettingsSpec, layer_of
from fleet.inventory.tree import InventoryTree, Layer, validation_problems
from fleet.inventory.vault_values import VaultSecret, VaultValue

MAX_LINE = 65_536
_USE_REFERENCE = (
    "set arc_winrm_password_env=VARIABLE_NAME or arc_winrm_password_file=PATH "
    "(or {{ lookup('env', 'NAME') }})"
)
LITERAL_PASSWORD = "holds a literal password, which arcfleet refuses; " + _USE_REFERENCE

# Connection plugin -> arcfleet transport.
_CONNECTIONS = {
    "ssh": "ssh", "smart": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh",
    "ansible.builtin.ssh": "ssh", "ansible.builtin.paramiko_ssh": "ssh",
    "winrm": "winrm", "ansible.builtin.winrm": "winrm",
    "psrp": "psrp", "ansible.builtin.psrp": "psrp", "ansible.windows.psrp": "psrp",
}
# Each plugin's names for one option, in its documented order: the last one set wins.
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "address": {"ssh": ("ansible_host", "ansible_ssh_host"),
                "winrm": ("ansible_host", "ansible_winrm_host"),
                "psrp": ("ansible_host", "ansible_psrp_host")},
    "port": {"ssh": ("ansible_port", "ansible_ssh_port"),
             "winrm": ("ansible_port", "ansible_winrm_port"),
             "psrp": ("ansible_port", "ansible_psrp_port")},
    "user": {"ssh": ("ansible_user", "ansible_ssh_user"),
             "winrm": ("ansible_user", "ansible_winrm_user"),
             "psrp": ("ansible_user", "ansible_psrp_user")},
    "password": {"ssh": ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
                 "winrm": ("ansible_password", "ansible_winrm_pass", "ansible_winrm_password"),
                 "psrp": ("ansible_password", "ansible_winrm_pass", "ansible_winrm_password")},
}
# arcfleet elevates with `sudo -n sh -c SCRIPT` (one session per host): sudo must not prompt.
_NO_SUDO_PASSWORD = (
    "sudo passwords are not supported (arcfleet runs `sudo -n`, which never prompts); give the "
    "login user passwordless sudo for `sh` (NOPASSWD; a rule for azcmagent alone is not enough, "
    "see docs/security.md) or log in as root"
)
# Variables Ansible would apply and arcfleet cannot: refused, never silently dropped.
_REFUSED: dict[str, str] = {
    "ansible_become_password": _NO_SUDO_PASSWORD,
    "ansible_become_pass": _NO_SUDO_PASSWORD,
    "ansible_sudo_pass": _NO_SUDO_PASSWORD,
    "ansible_become_exe": "arcfleet always runs sudo from the PATH; remove this variable",
    "ansible_private_key": "an inline private key is not supported; use "
                           "ansible_ssh_private_key_file",
    "ansible_ssh_private_key": "an inline private key is not supported; use "
                               "ansible_ssh_private_key_file",
    "ansible_private_key_passphrase": "encrypted private keys are not supported; use a key "
                                      "without a passphrase or an ssh-agent",
    "ansible_ssh_private_key_passphrase": "encrypted private keys are not supported; use a key "
                                          "without a passphrase or an ssh-agent",
    "ansible_psrp_ca_cert": "a custom CA bundle is not applied by arcfleet's WinRM transport "
                            "yet; add the CA to the system trust store",
    "ansible_psrp_cert_trust_path": "a custom CA bundle is not applied by arcfleet's WinRM "
                                    "transport yet; add the CA to the system trust store",
    "ansible_winrm_cert_pem": "WinRM certificate authentication is not supported; use ntlm, "
                              "kerberos, credssp or basic",
    "ansible_winrm_cert_key_pem": "WinRM certificate authentication is not supported; use ntlm, "
                                  "kerberos, credssp or basic",
    "ansible_psrp_certificate_pem": "WinRM certificate authentication is not supported",
    "ansible_psrp_certificate_key_pem": "WinRM certificate authentication is not supported",
    "ansible_winrm_path": "arcfleet always uses /wsman",
    "ansible_psrp_path": "arcfleet always uses /wsman",
    "ansible_psrp_proxy": "WinRM through a proxy is not supported",
}
_WINRM_AUTH = {"ntlm": "ntlm", "kerberos": "kerberos", "credssp": "credssp",
               "basic": "basic", "plaintext": "basic", "ssl": "basic"}
_PSRP_AUTH = {"ntlm": "ntlm", "kerberos": "kerberos", "credssp": "credssp", "basic": "basic",
              # pywinrm has no SPNEGO transport; negotiate falls back to NTLM in Windows too.
              "negotiate": "ntlm"}
_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})


class Conversion:
    """Builds one settings layer from Ansible variables, remembering which variable set what."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.errors: list[tuple[str, str]] = []
        self.priority: int | None = None

    def set(self, path: str, value: Any, var: str) -> None:
        parts = path.split(".")
        target = self.values
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        self.labels[path] = var

    def error(self, var: str, message: str) -> None:
        self.errors.append((var, message))


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def ansible_bool(value: Any) -> bool | None:
    """Ansible's ``boolean()``: None for a value it would not accept."""
    if isinstance(value, bool):
        return value
    text = text_of(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _last_set(variables: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    found = None
    for name in names:
        if variables.get(name) is not None:
            found = (name, variables[name])
    return found


# ---------------------------------------------------------------- single variables


def _password(conv: Conversion, var: str, value: Any) -> None:
    if value is None or value == "":
        return
    if isinstance(value, str):
        from fleet.inventory.templating import secret_lookup

        reference = secret_lookup(value)
        if reference is not None:
            conv.set("winrm.password", reference, var)
            return
    if isinstance(value, VaultSecret):
        # Decrypted by the ansible engine: a secret held in memory, never shown or stored.
        conv.set("winrm.password", {"vault": var, "value": value}, var)
        return
    if isinstance(value, VaultValue):
        conv.error(var, "is vault-encrypted; read it with --inventory-engine ansible and "
                   "--vault-password-file (or " + _USE_REFERENCE + ")")
        return
    conv.error(var, LITERAL_PASSWORD)


def _tags(conv: Conversion, var: str, value: Any) -> None:
    if isinstance(value, dict):
        conv.set("azure.tags", value, var)
        return
    text = text_of(value).strip()
    if text.startswith("{"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            conv.set("azure.tags", parsed, var)
            return
        conv.error(var, "is not a valid dict; write k=v,k2=v2")
        return
    tags: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, tag_value = item.partition("=")
        if not sep or not key.strip():
            conv.error(var, "must be k=v,k2=v2 (each item needs a name and '=')")
            return
        tags[key.strip()] = tag_value.strip()
    conv.set("azure.tags", tags, var)


def _setter(path: str) -> Callable[[Conversion, str, Any], None]:
    return lambda conv, var, value: conv.set(path, value, var)


def _sp_field(name: str) -> Callable[[Conversion, str, Any], None]:
    def apply(conv: Conversion, var: str, value: Any) -> None:
        target = conv.values.setdefault("azure", {}).setdefault("service_principal", {})
        if name != "client_id" and ("secret" in target or "certificate_file" in target):
            conv.error(var, "give only one of arc_sp_secret_env, arc_sp_secret_file, "
                       "arc_sp_secret_keyvault and arc_sp_certificate_file")
            return
        if name == "secret_env":
            target["secret"] = {"env": text_of(value)}
        elif name == "secret_file":
            target["secret"] = {"file": text_of(value)}
        elif name == "secret_keyvault":
            target["secret"] = {"keyvault": text_of(value)}
        else:
            target[name] = text_of(value) if name == "client_id" else value
        spec_field = "secret" if name.startswith("secret") else name
        conv.labels[f"azure.service_principal.{spec_field}"] = var
        conv.labels.setdefault("azure.service_principal", var)

    return apply


def _password_ref(kind: str) -> Callable[[Conversion, str, Any], None]:
    def apply(conv: Conversion, var: str, value: Any) -> None:
        if "password" in conv.values.get("winrm", {}):
            conv.error(var, f"the WinRM password is already given by "
                       f"{conv.labels['winrm.password']}; give one reference")
            return
        conv.set("winrm.password", {kind: text_of(value)}, var)

    return apply


# arcfleet's own variables; documented in docs/inventory.md.
ARC_VARS: dict[str, Callable[[Conversion, str, Any], None]] = {
    "arc_resource_name": _setter("azure.resource_name"),
    "arc_tags": _tags,
    "arc_location": _setter("azure.location"),
    "arc_resource_group": _setter("azure.resource_group"),
    "arc_tenant_id": _setter("azure.tenant_id"),
    "arc_subscription_id": _setter("azure.subscription_id"),
    "arc_cloud": _setter("azure.cloud"),
    "arc_correlation_id": _setter("azure.correlation_id"),
    "arc_private_link_scope": _setter("azure.private_link_scope"),
    "arc_gateway_id": _setter("azure.gateway_id"),
    "arc_proxy_url": _setter("azure.proxy_url"),
    "arc_proxy_bypass": _setter("azure.proxy_bypass"),
    "arc_auth": _setter("azure.auth"),
    "arc_create_resource_group": _setter("azure.create_resource_group"),
    "arc_sp_client_id": _sp_field("client_id"),
    "arc_sp_secret_env": _sp_field("secret_env"),
    "arc_sp_secret_file": _sp_field("secret_file"),
    "arc_sp_secret_keyvault": _sp_field("secret_keyvault"),
    "arc_sp_certificate_file": _sp_field("certificate_file"),
    "arc_winrm_password_env": _password_ref("env"),
    "arc_winrm_password_file": _password_ref("file"),
    "arc_winrm_allow_basic_over_http": _setter("winrm.allow_basic_over_http"),
    "arc_winrm_allow_unverified_tls": _setter("winrm.allow_unverified_tls"),
    "arc_known_hosts": _setter("ssh.known_hosts"),
    "arc_connect_timeout_s": _setter("ssh.connect_timeout_s"),
    "arc_ssh_compression": _setter("ssh.compression"),
    "arc_os": _setter("os"),
}


# ---------------------------------------------------------------- the whole set


def _connection(conv: Conversion, variables: Mapping[str, Any]) -> str:
    value = variables.get("ansible_connection")
    if value is None:
        return "ssh"  # Ansible's default connection plugin
    kind = _CONNECTIONS.get(text_of(value).strip().lower())
    if kind is None:
        conv.error("ansible_connection",
                   "unsupported connection; arcfleet speaks ssh, winrm and psrp (as winrm)")
        return "ssh"
    conv.set("transport", "ssh" if kind == "ssh" else "winrm", "ansible_connection")
    return kind


def _become(conv: Conversion, variables: Mapping[str, Any]) -> None:
    if variables.get("ansible_become") is not None:
        become = ansible_bool(variables["ansible_become"])
        if become is None:
            conv.error("ansible_become", "must be a boolean (true/false, yes/no)")
        else:
            conv.set("ssh.become", become, "ansible_become")
    for name in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
        if variables.get(name) is not None and ansible_bool(variables[name]) is False:
            conv.error(name, "arcfleet always checks host keys; remove this setting and give "
                       "the hosts' keys in known_hosts (arc_known_hosts)")
    method = variables.get("ansible_become_method")
    if method is not None and text_of(method).strip() not in ("sudo", "ansible.builtin.sudo"):
        conv.error("ansible_become_method", "only sudo is supported (arcfleet runs `sudo -n`)")
    for var in ("ansible_become_user", "ansible_sudo_user"):
        user = variables.get(var)
        if user is not None and text_of(user).strip() not in ("", "root"):
            conv.error(var, "only root is supported: azcmagent must run as root")


def _winrm(conv: Conversion, variables: Mapping[str, Any], kind: str, user: str | None) -> None:
    port_set = _last_set(variables, _ALIASES["port"][kind])
    port = text_of(port_set[1]).strip() if port_set else None
    if kind == "psrp":
        protocol = variables.get("ansible_psrp_protocol")
        if protocol is not None:
            scheme = text_of(protocol).strip().lower()
            if scheme not in ("http", "https"):
                conv.error("ansible_psrp_protocol", "must be http or https")
            else:
                conv.set("winrm.scheme", scheme, "ansible_psrp_protocol")
        else:
            conv.set("winrm.scheme", "http" if port == "5985" else "https",
                     port_set[0] if port_set else "ansible_psrp_protocol")
        if protocol is not None and port_set is None:
            conv.set("port", 5986 if text_of(protocol).strip().lower() == "https" else 5985,
                     "ansible_psrp_protocol")
        auth_var, auth_map = "ansible_psrp_auth", _PSRP_AUTH
        auth_value: Any = variables.get(auth_var, "negotiate")
        cert_var = "ansible_psrp_cert_validation"
    else:
        scheme_value = variables.get("ansible_winrm_scheme")
        if scheme_value is not None:
            scheme = text_of(scheme_value).strip().lower()
            if scheme not in ("http", "https"):
                conv.error("ansible_winrm_scheme", "must be http or https")
            else:
                conv.set("winrm.scheme", scheme, "ansible_winrm_scheme")
        else:
            # Ansible's winrm plugin: http exactly when the port is 5985.
            conv.set("winrm.scheme", "http" if port == "5985" else "https",
                     port_set[0] if port_set else "ansible_winrm_scheme")
        if port_set is None:
            conv.set("port", 5986, "ansible_port")  # the plugin's default, whatever the scheme
        auth_var, auth_map = "ansible_winrm_transport", _WINRM_AUTH
        # The plugin's default: kerberos for a UPN, else basic (ssl/plaintext).
        auth_value = variables.get(auth_var)
        if auth_value is None:
            auth_value = "kerberos" if user and "@" in user else "basic"
        cert_var = "ansible_winrm_server_cert_validation"
    items = auth_value if isinstance(auth_value, list) else text_of(auth_value).split(",")
    for item in items:
        auth = auth_map.get(text_of(item).strip().lower())
        if auth:
            conv.set("winrm.auth", auth, auth_var)
            break
        if text_of(item).strip().lower() == "certificate":
            conv.error(auth_var, "WinRM certificate authentication is not supported; use ntlm, "
                       "kerberos, credssp or basic")
            return
    else:
        conv.error(auth_var, "unsupported WinRM transport; use ntlm, kerberos, credssp or basic")
    validation = variables.get(cert_var)
    if validation is not None:
        text = text_of(validation).strip().lower()
        flag = ansible_bool(validation) if kind == "psrp" else None
        if text == "ignore" or flag is False:
            conv.set("winrm.cert_validation", False, cert_var)
        elif text == "validate" or flag is True:
            conv.set("winrm.cert_validation", True, cert_var)
        else:
            conv.error(cert_var, "must be 'validate' or 'ignore'")
    ca_bundle = variables.get("ansible_winrm_ca_trust_path")
    if kind != "psrp" and ca_bundle not in (None, ""):
        conv.set("winrm.ca_file", text_of(ca_bundle), "ansible_winrm_ca_trust_path")


def convert(
    variables: Mapping[str, Any], *, partial: bool = False, ssh_config: Path | None = None,
    host_name: str | None = None,
) -> Conversion:
    """Read one merged set of variables as Ansible's connection plugin would.

    ``partial``: the variables of one group or file, checked on their own; what depends on the
    host's connection (set perhaps elsewhere) is left to the check of the merged variables.
    """
    conv = Conversion()
    for key in variables:
        if key.startswith("arc_") and key not in ARC_VARS:
            conv.error(key, "unknown arcfleet variable (see docs/inventory.md for arc_* names)")
        elif key in _REFUSED and variables[key] not in (None, ""):
            conv.error(key, _REFUSED[key])
    if variables.get("ansible_group_priority") is not None:
        try:
            conv.priority = int(text_of(variables["ansible_group_priority"]))
        except ValueError:
            conv.error("ansible_group_priority", "must be an integer")
    kind = _connection(conv, variables)
    address = _last_set(variables, _ALIASES["address"][kind])
    if address is not None:
        conv.set("address", text_of(address[1]), address[0])
    port = _last_set(variables, _ALIASES["port"][kind])
    if port is not None:
        conv.set("port", port[1], port[0])
    user_set = _last_set(variables, _ALIASES["user"][kind])
    user = text_of(user_set[1]) if user_set else None
    if user_set is not None:
        conv.set("ssh.user" if kind == "ssh" else "winrm.user", user, user_set[0])
    for name in ("ansible_private_key_file", "ansible_ssh_private_key_file"):
        if variables.get(name) is not None:
            conv.set("ssh.key_file", text_of(variables[name]), name)
    if kind == "ssh":
        from fleet.inventory.ssh_config import apply_ssh_options

        apply_ssh_options(conv, variables, ssh_config if not partial else None,
                          address[1] if address else host_name)
    _become(conv, variables)
    if kind != "ssh":
        _winrm(conv, variables, kind, user)
    elif partial:
        for name in ("ansible_winrm_transport", "ansible_winrm_server_cert_validation"):
            if variables.get(name) is not None:
                _winrm(conv, {k: variables[k] for k in (name, "ansible_winrm_scheme")
                              if k in variables}, "winrm", user)
    arc_password = any(variables.get(n) is not None
                       for n in ("arc_winrm_password_env", "arc_winrm_password_file"))
    for name in ARC_VARS:
        if variables.get(name) is not None:
            ARC_VARS[name](conv, name, variables[name])
    # A literal password is refused wherever it is, whichever plugin would read it.
    from fleet.inventory.templating import secret_lookup

    literal = set()
    for name in sorted({n for aliases in _ALIASES["password"].values() for n in aliases}):
        value = variables.get(name)
        if value not in (None, "") and not isinstance(value, VaultSecret) and not (
                isinstance(value, str) and secret_lookup(value)):
            _password(conv, name, value)
            literal.add(name)
    password = _last_set(variables, _ALIASES["password"][kind])
    if password is None or password[0] in literal or (partial and
                                                      "ansible_connection" not in variables):
        return conv
    if kind == "ssh":
        conv.error(password[0], "SSH password login is not supported; use a key "
                   "(ansible_ssh_private_key_file) or an ssh-agent")
    elif arc_password:
        conv.error(password[0], "the WinRM password is already given by "
                   f"{conv.labels.get('winrm.password', 'an arc_winrm_password_* variable')}"
                   "; give one reference")
    else:
        _password(conv, password[0], password[1])
    return conv


def vars_layer(
    variables: Mapping[str, Any], *, base_dir: Path, source: str, host: str | None,
    prefix: str, tree: InventoryTree, labels_source: Mapping[str, str] | None = None,
    partial: bool = False, ssh_config: Path | None = None,
) -> tuple[Layer, int | None]:
    """Convert one set of Ansible variables into a validated settings layer.

    ``labels_source`` maps a variable to the file that set it (for a host's merged variables),
    so a problem names the file the bad value is in.
    """
    conv = convert(variables, partial=partial, ssh_config=ssh_config, host_name=host)

    def where(var: str) -> str:
        return (labels_source or {}).get(var, source)

    for var, message in conv.errors:
        tree.problem(where(var), host, prefix + var, message)
    broken = bool(conv.errors)
    if not conv.values:
        return Layer({}, source, broken=broken), conv.priority
    model = HostSpec if host is not None else SettingsSpec
    # A vault secret is no reference the spec knows; it skips validation and goes in as is.
    vault_password = conv.values.get("winrm", {}).get("password")
    if isinstance(vault_password, dict) and "vault" in vault_password:
        conv.values["winrm"].pop("password")
        if not conv.values["winrm"]:
            conv.values.pop("winrm")
    else:
        vault_password = None
    if host is None:
        conv.values.pop("address", None)  # a group's ansible_host is checked on its hosts
    if partial:
        # The client id and the credential may come from different places (a group and its
        # hosts): the service principal is checked on each host's merged variables.
        conv.values.get("azure", {}).pop("service_principal", None)
    try:
        spec = model.model_validate(conv.values, context={"base_dir": base_dir})
    except ValidationError as exc:
        for problem in validation_problems(exc, source, host, prefix, conv.labels):
            var = (problem.field or "")[len(prefix):]
            tree.problems.append(problem if labels_source is None else
                                 type(problem)(where(var), problem.host, problem.field,
                                               problem.message))
        return Layer({}, source, broken=True), conv.priority
    values = layer_of(spec)
    if isinstance(spec, HostSpec) and spec.address is not None:
        values["address"] = spec.address
    if vault_password is not None:
        secret = vault_password["value"]
        values.setdefault("winrm", {})["password"] = {
            "vault": vault_password["vault"], "value": secret.reveal()}
    return Layer(values, source, broken=broken), conv.priority


_OTHER_READ = (
    "ansible_connection", "ansible_private_key_file", "ansible_ssh_private_key_file",
    "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_become",
    "ansible_become_method", "ansible_become_user", "ansible_sudo_user",
    "ansible_winrm_scheme", "ansible_winrm_transport", "ansible_winrm_server_cert_validation",
    "ansible_winrm_ca_trust_path",
    "ansible_psrp_protocol", "ansible_psrp_auth", "ansible_psrp_cert_validation",
    "ansible_host_key_checking", "ansible_ssh_host_key_checking",
    "ansible_group_priority",
)


PASSWORD_VARS = frozenset(n for aliases in _ALIASES["password"].values() for n in aliases)


@cache
def read_variables() -> frozenset[str]:
    """Every ``ansible_*`` variable arcfleet reads or refuses."""
    names = set(_OTHER_READ) | set(_REFUSED)
    for by_kind in _ALIASES.values():
        for aliases in by_kind.values():
            names.update(aliases)
    return frozenset(names)
