"""The simulated agent's calls to the lab's fake Entra ID and ARM (``lab up --simulate-arm``).

With an :class:`ArmLink` on a host, ``azcmagent connect`` signs in with what it was given (an
``access-token`` as is; a service-principal secret through the token endpoint), reads its machine
resource and creates it, and ``disconnect`` deletes it, the way the real agent does (reference
section 8: a GET of ``machines/<name>``, then a PUT). So a name already taken (AZCM0044), a missing
role (AuthorizationFailed), an unregistered provider, an expired secret or token, and throttling
come from the fake ARM's state. Failures carry the agent's code and message shapes.

Calls are blocking ``urllib`` requests run in a worker thread, so the lab's event loop keeps
serving the other hosts.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = "2024-07-10"
ARM_SCOPE = "https://management.azure.com/.default"
TOKEN_STAGE = "Failed to acquire authorization token from SPN"
ARM_STAGE = "Failed to AzcmagentConnect ARM resource"


@dataclass(frozen=True)
class ArmLink:
    """Where the lab's fake Azure answers, and the CA that signed its certificate."""

    url: str
    ca_file: str
    user_agent: str = "azcmagent-lab"  # what the fake's request log records as the caller


class ArmRefused(Exception):
    """What the agent would fail with: its AZCM code, the message and the stage."""

    def __init__(self, code: str, reason: str, stage: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.stage = stage


@dataclass(frozen=True)
class Credentials:
    """What the agent was given (from its flags or --config file)."""

    tenant_id: str
    client_id: str = ""
    secret: str = ""
    access_token: str = ""


def _request(link: ArmLink, method: str, path: str, *, token: str | None = None,
             form: dict[str, str] | None = None, body: dict[str, Any] | None = None
             ) -> tuple[int, dict[str, Any], dict[str, str]]:
    context = ssl.create_default_context(cafile=link.ca_file)
    data: bytes | None = None
    headers = {"Accept": "application/json", "User-Agent": link.user_agent}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(link.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            raw = response.read()
            status = response.status
            answer_headers = dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
        answer_headers = dict(exc.headers.items())
    except OSError as exc:
        raise ArmRefused("AZCM0026", f"Post \"{link.url}{path}\": {exc}",
                         "Failed to reach the Azure Arc service") from None
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {}, answer_headers


def _sign_in(link: ArmLink, creds: Credentials) -> str:
    if creds.access_token:
        return creds.access_token
    status, answer, _ = _request(link, "POST", f"/{creds.tenant_id}/oauth2/v2.0/token", form={
        "client_id": creds.client_id, "client_secret": creds.secret,
        "grant_type": "client_credentials", "scope": ARM_SCOPE})
    if status != 200 or "access_token" not in answer:
        text = str(answer.get("error_description") or answer.get("error") or status)
        raise ArmRefused("AZCM0041", text, TOKEN_STAGE)
    return str(answer["access_token"])


def _arm_failure(status: int, answer: dict[str, Any], headers: dict[str, str],
                 resource_id: str, creds: Credentials) -> ArmRefused:
    raw_error = answer.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    code = str(error.get("code") or status)
    message = str(error.get("message") or "")
    corr = uuid.uuid4()
    if status == 401:
        if creds.access_token:
            return ArmRefused("AZCM0012", "The access token provided is invalid: "
                              f"{message} Code: {code}", "Invalid Access Token")
        return ArmRefused("AZCM0041", f"{message} Code: {code}", TOKEN_STAGE)
    if status == 429:
        wait = headers.get("Retry-After", "1")
        return ArmRefused("AZCM0042", (
            f"RequestCorrelationId:{corr} Message: {message} Please try again after '{wait}' "
            f"seconds. Code: SubscriptionRequestsThrottled httpStatusCode:429 "
            f"Retry-After:{wait}"), ARM_STAGE)
    if status == 403:
        return ArmRefused("AZCM0042", f"{message} Code: {code} Status Code=403",
                          "Get ARM Resource Response")
    return ArmRefused("AZCM0042", f"RequestCorrelationId:{corr} Message: {message} Code: {code} "
                      f"httpStatusCode:{status} Resource ID={resource_id}", ARM_STAGE)


def _path(sub: str, group: str, name: str) -> str:
    return (f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.HybridCompute/"
            f"machines/{name}")


def create_machine_sync(link: ArmLink, creds: Credentials, sub: str, group: str, name: str,
                        location: str) -> None:
    """Sign in, GET the machine (it must not exist: AZCM0044), PUT it."""
    token = _sign_in(link, creds)
    path = _path(sub, group, name)
    query = f"?api-version={API_VERSION}"
    status, answer, headers = _request(link, "GET", path + query, token=token)
    if status == 200:
        raise ArmRefused("AZCM0044", (
            f"A resource with the name {name} already exists in resource group {group} "
            f"(status {answer.get('properties', {}).get('status', 'Unknown')}). Resource "
            f"ID={path}"), "Failed to create resource")
    if status != 404:
        raise _arm_failure(status, answer, headers, path, creds)
    status, answer, headers = _request(link, "PUT", path + query, token=token,
                                       body={"location": location,
                                             "properties": {"status": "Connected"}})
    if status not in (200, 201):
        raise _arm_failure(status, answer, headers, path, creds)


def delete_machine_sync(link: ArmLink, creds: Credentials, sub: str, group: str,
                        name: str) -> None:
    token = _sign_in(link, creds)
    path = _path(sub, group, name)
    status, answer, headers = _request(link, "DELETE", path + f"?api-version={API_VERSION}",
                                       token=token)
    if status not in (200, 202, 204):
        raise _arm_failure(status, answer, headers, path, creds)


async def create_machine(link: ArmLink, creds: Credentials, sub: str, group: str, name: str,
                         location: str) -> None:
    await asyncio.to_thread(create_machine_sync, link, creds, sub, group, name, location)


async def delete_machine(link: ArmLink, creds: Credentials, sub: str, group: str,
                         name: str) -> None:
    await asyncio.to_thread(delete_machine_sync, link, creds, sub, group, name)


def _text(flags: Mapping[str, str | bool], name: str) -> str:
    value = flags.get(name)
    return value if isinstance(value, str) else ""


def credentials_of(flags: Mapping[str, str | bool], tenant_id: str) -> Credentials:
    return Credentials(tenant_id=_text(flags, "tenant-id") or tenant_id,
                       client_id=_text(flags, "service-principal-id"),
                       secret=_text(flags, "service-principal-secret"),
                       access_token=_text(flags, "access-token"))


async def on_connect(link: ArmLink, flags: Mapping[str, str | bool], tenant_id: str,
                     name: str) -> None:
    """``azcmagent connect``'s ARM part, with the credentials in ``flags`` (a certificate is
    not presented to the fake: such a host is checked by its scenario only)."""
    creds = credentials_of(flags, tenant_id)
    if not (creds.access_token or creds.secret):
        return
    await create_machine(link, creds, _text(flags, "subscription-id"),
                         _text(flags, "resource-group"), name, _text(flags, "location"))


async def on_disconnect(link: ArmLink, flags: Mapping[str, str | bool], tenant_id: str,
                        sub: str, group: str, name: str) -> None:
    """``azcmagent disconnect``'s ARM part: delete the machine resource."""
    creds = credentials_of(flags, tenant_id)
    if creds.access_token or creds.secret:
        await delete_machine(link, creds, sub, group, name)
