"""Pydantic models of the raw arcfleet inventory format (``arcfleet: 1``).

These describe what a file may say, not what a host ends up with: every field is optional so a
layer (defaults, a group, a host) can set just what it changes. ``extra="forbid"`` everywhere, so
a typo is an error instead of a silently ignored key. Relative paths are resolved against the
directory in the validation context (``{"base_dir": Path}``), i.e. the inventory file's directory.
Secrets are only ever references: a literal value is refused with a message that does not echo it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fleet.inventory import rules
from fleet.inventory.model import Cloud, OsFamily, Transport
from fleet.inventory.regions import normalize_location

LITERAL_SECRET = (
    "a literal secret is refused; reference it instead: {env: VARIABLE_NAME} or {file: PATH}"
)
# Keys people reach for when they mean "the secret itself"; refused wherever they appear.
_LITERAL_SECRET_KEYS = ("client_secret", "secret_value", "password", "value")


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Expand ``~`` and anchor a relative path at the inventory file's directory."""
    path = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    return path


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        # YAML `key: null` (or `key:` with nothing after it) means "not set here", as a key that
        # is absent: the layers below it still apply. (The field validators expect values.)
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class SecretRefSpec(_Spec):
    env: str | None = None
    file: Path | None = None
    keyvault: str | None = None  # https://VAULT.vault.azure.net/secrets/NAME[/VERSION]

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if any(key in data for key in _LITERAL_SECRET_KEYS):
                raise ValueError(LITERAL_SECRET)
            return data
        raise ValueError(LITERAL_SECRET)

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c == "_" for c in value) or value[0].isdigit():
            raise ValueError("environment variable name must be letters, digits and underscores")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("keyvault")
    @classmethod
    def _keyvault(cls, value: str) -> str:
        return _check(value, rules.check_keyvault_url)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRefSpec:
        if sum(v is not None for v in (self.env, self.file, self.keyvault)) != 1:
            raise ValueError("give exactly one of env, file or keyvault")
        return self


class ServicePrincipalSpec(_Spec):
    client_id: str
    secret: SecretRefSpec | None = None
    certificate_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(key in data for key in _LITERAL_SECRET_KEYS):
            raise ValueError(f"service_principal: {LITERAL_SECRET}")
        return data

    @field_validator("client_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        return _check(value, rules.check_guid)

    @field_validator("certificate_file")
    @classmethod
    def _cert(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @model_validator(mode="after")
    def _one_credential(self) -> ServicePrincipalSpec:
        if (self.secret is None) == (self.certificate_file is None):
            raise ValueError(
                "give exactly one of secret ({env: ..} or {file: ..}) or certificate_file"
            )
        return self


def _check(value: str, check: Any) -> str:
    message = check(value)
    if message:
        raise ValueError(message)
    return value


class SshSpec(_Spec):
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    jump_hosts: list[str] | None = None
    become: bool | None = None
    connect_timeout_s: float | None = Field(default=None, gt=0, le=3600)
    compression: bool | None = None

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return _check(value, lambda v: rules.check_plain_text(v, "user"))

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _paths(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("jump_hosts")
    @classmethod
    def _jumps(cls, value: list[str]) -> list[str]:
        for hop in value:
            _check(hop, rules.check_jump_host)
        return value


class WinrmSpec(_Spec):
    user: str | None = None
    password: SecretRefSpec | None = None
    auth: Literal["ntlm", "kerberos", "credssp", "basic"] | None = None
    scheme: Literal["http", "https"] | None = None
    cert_validation: bool | None = None
    allow_basic_over_http: bool | None = None
    ca_file: Path | None = None
    allow_unverified_tls: bool | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("user is empty or contains control characters")
        return value


class AzureSpec(_Spec):
    tenant_id: str | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    location: str | None = None
    cloud: Cloud | None = None
    resource_name: str | None = None
    tags: dict[str, str] | None = None
    correlation_id: str | None = None
    private_link_scope: str | None = None
    gateway_id: str | None = None
    proxy_url: str | None = None
    proxy_bypass: list[str] | None = None
    service_principal: ServicePrincipalSpec | None = None
    auth: Literal["service_principal", "token"] | None = None
    create_resource_group: bool | None = None
    endpoints_file: Path | None = None

    @field_validator("endpoints_file")
    @classmethod
    def _endpoints_file(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("tenant_id", "subscription_id", "correlation_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        return _check(value, rules.check_guid)

    @field_validator("resource_group")
    @classmethod
    def _rg(cls, value: str) -> str:
        return _check(value, rules.check_resource_group)

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        return normalize_location(_check(value, rules.check_location))

    @field_validator("cloud", mode="before")
    @classmethod
    def _cloud(cls, value: Any) -> Any:
        if isinstance(value, str):
            for cloud in Cloud:
                if cloud.value.lower() == value.strip().lower():
                    return cloud
            raise ValueError(
                "unknown cloud; use one of " + ", ".join(c.value for c in Cloud)
            )
        return value

    @field_validator("resource_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check(value, rules.check_resource_name)

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_scalars(cls, value: Any) -> Any:
        # YAML turns `tier: 1` into an int; a tag value is text to Azure.
        if value is None:
            return {}
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(item, bool):
                    item = "true" if item else "false"
                elif isinstance(item, int | float):
                    item = str(item)
                elif item is None:
                    item = ""
                out[str(key) if isinstance(key, int | float | bool) else key] = item
            return out
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = rules.check_tags(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("private_link_scope")
    @classmethod
    def _pls(cls, value: str) -> str:
        return _check(value, lambda v: rules.check_arm_id(v, "privateLinkScopes"))

    @field_validator("gateway_id")
    @classmethod
    def _gateway(cls, value: str) -> str:
        return _check(value, lambda v: rules.check_arm_id(v, "gateways"))

    @field_validator("proxy_url")
    @classmethod
    def _proxy(cls, value: str) -> str:
        return _check(value, rules.check_proxy_url)

    @field_validator("proxy_bypass", mode="before")
    @classmethod
    def _bypass(cls, value: Any) -> Any:
        # "ARM,AAD" as azcmagent writes it, or a YAML list.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        names: list[str] = []
        for item in items:
            name = rules.proxy_bypass_name(item) if isinstance(item, str) else None
            if name is None:
                raise ValueError(
                    f"{str(item)[:40]!r} is not a proxy bypass name; use any of "
                    + ", ".join(rules.PROXY_BYPASS_NAMES)
                )
            if name not in names:
                names.append(name)
        return names


class SettingsSpec(_Spec):
    """What defaults, a group and a host may all set."""

    transport: Transport | None = None
    os: OsFamily | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    ssh: SshSpec | None = None
    winrm: WinrmSpec | None = None
    azure: AzureSpec | None = None


class GroupSpec(SettingsSpec):
    # Built when an arcfleet file is first read: an Ansible inventory never needs it.
    model_config = ConfigDict(defer_build=True)
    children: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)


class HostSpec(SettingsSpec):
    address: str | None = None
    groups: list[str] = Field(default_factory=list)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _check(value, lambda v: rules.check_plain_text(v, "address"))


class ArcfleetFileSpec(_Spec):
    model_config = ConfigDict(defer_build=True)  # as GroupSpec
    arcfleet: Literal[1]
    defaults: SettingsSpec | None = None
    groups: dict[str, GroupSpec | None] | None = None
    hosts: dict[str, HostSpec | None] | None = None


def layer_of(spec: SettingsSpec) -> dict[str, Any]:
    """The settings a spec sets explicitly, as nested dicts (membership keys left out)."""
    return spec.model_dump(
        exclude_unset=True, exclude_none=True, exclude={"children", "hosts", "groups", "address"}
    )
