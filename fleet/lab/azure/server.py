"""The fake Entra ID token endpoint and the fake ARM, one HTTPS server on loopback.

Entra ID (what MSAL, under azure-identity, asks for):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: OpenID discovery; an unknown tenant
  answers 400 with AADSTS90002, as Entra does.
- ``POST /{tenant}/oauth2/v2.0/token``: client credentials (secret or certificate assertion);
  AADSTS7000215 (wrong secret), AADSTS7000222 (expired secret), AADSTS700016 (unknown app).

ARM (bearer token from the endpoint above; 401 without a valid one):

- providers: ``GET /subscriptions/{s}/providers/{ns}``, ``POST .../providers/{ns}/register``;
- resource groups: ``GET|HEAD|PUT /subscriptions/{s}/resourcegroups/{rg}``;
- permissions: ``GET .../resourcegroups/{rg}/providers/Microsoft.Authorization/permissions``;
- machines: ``GET /subscriptions/{s}/providers/Microsoft.HybridCompute/machines``,
  ``GET|PUT|DELETE .../resourcegroups/{rg}/providers/Microsoft.HybridCompute/machines/{name}``
  (RBAC-checked: read, write, delete; 409 MissingSubscriptionRegistration when unregistered);
- ``GET`` of ``privateLinkScopes/{name}`` and ``gateways/{name}`` in a resource group.

Throttling: while ``state.throttle_remaining`` > 0 an ARM request answers 429 with
``Retry-After``. Every request is logged in ``state.requests``.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fleet.lab.azure.ca import LabCertificates
from fleet.lab.azure.state import ARC_PROVIDERS, AzureState, Machine, Request

_HC = "microsoft.hybridcompute"
_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("provider_register", re.compile(_SUB + r"/providers/(?P<ns>[^/]+)/register$", re.I)),
    ("machines_in_sub", re.compile(_SUB + r"/providers/microsoft\.hybridcompute/machines$", re.I)),
    ("provider", re.compile(_SUB + r"/providers/(?P<ns>[^/]+)$", re.I)),
    ("permissions",
     re.compile(_RG + r"/providers/microsoft\.authorization/permissions$", re.I)),
    ("machine", re.compile(_RG + r"/providers/microsoft\.hybridcompute/machines/(?P<name>[^/]+)$",
                           re.I)),
    ("pls", re.compile(_RG + r"/providers/microsoft\.hybridcompute/privatelinkscopes/"
                             r"(?P<name>[^/]+)$", re.I)),
    ("gateway", re.compile(_RG + r"/providers/microsoft\.hybridcompute/gateways/(?P<name>[^/]+)$",
                           re.I)),
    ("resource_group", re.compile(_RG + r"$", re.I)),
]
_DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_SECRET = re.compile(r"^/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?/?$")


def _aad_error(code: int, error: str, text: str) -> dict[str, Any]:
    return {"error": error, "error_description": f"AADSTS{code}: {text}",
            "error_codes": [code], "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000"}


def _arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def assertion_valid(assertion: str, certificate_pem: bytes) -> bool:
    """Whether a client assertion (a JWT, RS256 or PS256) is signed by the certificate's key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        head, body, signature = assertion.split(".")
        header = json.loads(_b64(head))
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        algorithm = header.get("alg")
        if algorithm == "RS256":
            scheme: padding.AsymmetricPadding = padding.PKCS1v15()
        elif algorithm == "PS256":
            scheme = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                 salt_length=padding.PSS.DIGEST_LENGTH)
        else:
            return False
        key.verify(_b64(signature), f"{head}.{body}".encode(), scheme, hashes.SHA256())
    except (ValueError, InvalidSignature, AttributeError):
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: FakeAzureServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the state keeps its own request log

    # ---- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any] | None, *, principal: str | None = None,
              token: str | None = None, headers: dict[str, str] | None = None) -> None:
        path = urlsplit(self.path).path
        self.server.state.log(Request(self.command, path, principal, status, token,
                                      self.headers.get("User-Agent", "")))
        data = b"" if body is None or self.command == "HEAD" else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000001")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._body()
        state = self.server.state
        if state.unavailable:
            self._send(503, _arm_error("ServiceUnavailable", "the lab Azure is down"))
            return
        path = urlsplit(self.path).path
        if match := _DISCOVERY.match(path):
            self._discovery(match["tenant"])
        elif match := _TOKEN.match(path):
            self._token(match["tenant"], body)
        elif match := _SECRET.match(path):
            self._keyvault(match["name"], match["version"] or None)
        else:
            self._arm(path, body)

    # ---- Entra ID ------------------------------------------------------------------------

    def _discovery(self, tenant: str) -> None:
        if tenant.lower() not in self.server.state.tenants:
            self._send(400, _aad_error(90002, "invalid_tenant",
                                       f"Tenant '{tenant}' not found. Check to make sure you "
                                       "have the correct tenant ID and are signing into the "
                                       "correct cloud."))
            return
        base = f"{self.server.url}/{tenant}"
        self._send(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "token"],
            "tenant_region_scope": "EU",
        })

    def _token(self, tenant: str, raw: bytes) -> None:
        state = self.server.state
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        client = form.get("client_id", "").lower()
        if tenant.lower() not in state.tenants:
            self._send(400, _aad_error(90002, "invalid_tenant", f"Tenant '{tenant}' not found."),
                       principal=client)
            return
        app = state.apps.get(client)
        if app is None or app.tenant_id != tenant.lower():
            self._send(400, _aad_error(700016, "unauthorized_client",
                                       f"Application with identifier '{client}' was not found in "
                                       f"the directory '{tenant}'."), principal=client)
            return
        if "client_assertion" in form:
            if not app.certificate_pem or not assertion_valid(form["client_assertion"],
                                                              app.certificate_pem):
                self._send(401, _aad_error(700027, "invalid_client",
                                           "Client assertion failed signature validation."),
                           principal=client)
                return
        elif app.secret is None or form.get("client_secret") != app.secret:
            self._send(401, _aad_error(7000215, "invalid_client",
                                       "Invalid client secret provided. Ensure the secret being "
                                       "sent in the request is the client secret value, not the "
                                       f"client secret ID, for a secret added to app '{client}'."),
                       principal=client)
            return
        elif app.secret_expired:
            self._send(401, _aad_error(7000222, "invalid_client",
                                       f"The provided client secret keys for app '{client}' are "
                                       "expired. Visit the Azure portal to create new keys for "
                                       "your app."), principal=client)
            return
        token, lifetime = state.issue_token(tenant, client)
        with state.lock:
            if app.tokens_before_expiry is not None and "client_assertion" not in form:
                app.tokens_before_expiry -= 1
                app.secret_expired = app.tokens_before_expiry <= 0
        self._send(200, {"token_type": "Bearer", "expires_in": lifetime,
                         "ext_expires_in": lifetime, "access_token": token}, principal=client)

    # ---- Key Vault -----------------------------------------------------------------------

    def _keyvault(self, name: str, version: str | None) -> None:
        """GET a secret, Key Vault's way: a request without a token gets the challenge that names
        the tenant's authority and the vault resource; a token's principal must be a reader."""
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None:
            tenant = next(iter(sorted(state.tenants)), "common")
            challenge = (f'Bearer authorization="{self.server.url}/{tenant}", '
                         'resource="https://vault.azure.net"')
            self._send(401, {"error": {"code": "Unauthorized",
                                       "message": "AKV10000: Request is missing a Bearer or PoP "
                                       "token."}}, headers={"WWW-Authenticate": challenge})
            return
        who = state.principal_of(token)
        if who is None:
            self._send(401, {"error": {"code": "Unauthorized", "message": "AKV10022: Invalid "
                                       "audience or expired token."}}, token=token)
            return
        principal = who[1]
        with state.lock:
            allowed = principal in state.keyvault_readers
            versions = dict(state.keyvault_secrets.get(name.lower(), {}))
        if not allowed:
            self._send(403, {"error": {"code": "Forbidden", "message": f"Caller is not "
                                       f"authorized to perform action on resource. Caller: "
                                       f"appid={principal}; Action: 'Microsoft.KeyVault/vaults/"
                                       "secrets/getSecret/action'", "innererror": {
                                           "code": "ForbiddenByRbac"}}},
                       principal=principal, token=token)
            return
        if not versions or (version is not None and version not in versions):
            self._send(404, {"error": {"code": "SecretNotFound", "message": f"A secret with "
                                       f"(name/id) {name} was not found in this key vault."}},
                       principal=principal, token=token)
            return
        chosen = version or list(versions)[-1]
        self._send(200, {"value": versions[chosen],
                         "id": f"{self.server.url}/secrets/{name}/{chosen}",
                         "attributes": {"enabled": True, "created": 1700000000,
                                        "updated": 1700000000, "recoveryLevel": "Recoverable"}},
                   principal=principal, token=token)

    # ---- ARM -----------------------------------------------------------------------------

    def _arm(self, path: str, raw: bytes) -> None:
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        who = state.principal_of(token) if token else None
        if who is None:
            self._send(401, _arm_error("InvalidAuthenticationToken" if token else
                                       "AuthenticationFailed",
                                       "The access token is invalid or has expired."),
                       token=token)
            return
        tenant, principal = who
        with state.lock:
            if state.throttle_remaining > 0:
                state.throttle_remaining -= 1
                self._send(429, _arm_error("TooManyRequests",
                                           "The request is being throttled as the limit has "
                                           "been reached for operation type - Read_ObservationWin"
                                           "dow_00:05:00."), principal=principal, token=token,
                           headers={"Retry-After": str(state.retry_after_s)})
                return
        for name, regex in ROUTES:
            match = regex.match(path)
            if match is None:
                continue
            sub = state.subscriptions.get(match["sub"].lower())
            if sub is None or sub.tenant_id != tenant:
                self._send(404, _arm_error("SubscriptionNotFound",
                                           f"The subscription '{match['sub']}' could not be "
                                           "found."), principal=principal, token=token)
                return
            handler = getattr(self, f"_arm_{name}")
            status, body = handler(principal, match.groupdict(), raw)
            self._send(status, body, principal=principal, token=token)
            return
        self._send(404, _arm_error("InvalidResourceType", f"no such API in the lab: {path}"),
                   principal=principal, token=token)

    def _denied(self, principal: str, action: str, scope: str) -> tuple[int, dict[str, Any]]:
        return 403, _arm_error(
            "AuthorizationFailed",
            f"The client '{principal}' with object id '{principal}' does not have authorization "
            f"to perform action '{action}' over scope '{scope}' or the scope is invalid.")

    def _provider_body(self, sub_id: str, namespace: str) -> dict[str, Any]:
        sub = self.server.state.subscriptions[sub_id.lower()]
        canonical = next((p for p in ARC_PROVIDERS if p.lower() == namespace.lower()), namespace)
        types: list[dict[str, Any]] = []
        if canonical.lower() == _HC:
            types = [{"resourceType": "machines", "locations": list(sub.machine_locations),
                      "apiVersions": ["2024-07-10"]},
                     {"resourceType": "privateLinkScopes",
                      "locations": list(sub.machine_locations), "apiVersions": ["2024-07-10"]}]
        return {"id": f"/subscriptions/{sub_id}/providers/{canonical}", "namespace": canonical,
                "registrationState": ("Registered" if canonical in sub.registered
                                      else "NotRegistered"),
                "resourceTypes": types}

    def _arm_provider(self, principal: str, m: dict[str, str], raw: bytes
                      ) -> tuple[int, dict[str, Any]]:
        return 200, self._provider_body(m["sub"], m["ns"])

    def _arm_provider_register(self, principal: str, m: dict[str, str], raw: bytes
                               ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        scope = f"/subscriptions/{m['sub']}"
        action = f"{m['ns']}/register/action"
        if not state.allowed(principal, scope, action):
            return self._denied(principal, action, scope)
        canonical = next((p for p in ARC_PROVIDERS if p.lower() == m["ns"].lower()), m["ns"])
        state.set_registered(m["sub"], canonical, True)
        return 200, self._provider_body(m["sub"], m["ns"])

    def _arm_resource_group(self, principal: str, m: dict[str, str], raw: bytes
                            ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        sub = state.subscriptions[m["sub"].lower()]
        scope = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}"
        verb = "write" if self.command == "PUT" else "read"
        action = f"Microsoft.Resources/subscriptions/resourceGroups/{verb}"
        if not state.allowed(principal, scope, action):
            return self._denied(principal, action, scope)
        if self.command == "PUT":
            body = json.loads(raw or b"{}")
            state.add_resource_group(m["sub"], m["rg"], str(body.get("location", "westeurope")))
        location = sub.resource_groups.get(m["rg"].lower())
        if location is None:
            return 404, _arm_error("ResourceGroupNotFound",
                                   f"Resource group '{m['rg']}' could not be found.")
        name = sub.rg_names[m["rg"].lower()]
        return 200 if self.command != "HEAD" else 204, {
            "id": f"/subscriptions/{m['sub']}/resourceGroups/{name}", "name": name,
            "type": "Microsoft.Resources/resourceGroups", "location": location,
            "properties": {"provisioningState": "Succeeded"}}

    def _arm_permissions(self, principal: str, m: dict[str, str], raw: bytes
                         ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        sub = state.subscriptions[m["sub"].lower()]
        if m["rg"].lower() not in sub.resource_groups:
            return 404, _arm_error("ResourceGroupNotFound",
                                   f"Resource group '{m['rg']}' could not be found.")
        scope = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}"
        roles = state.permissions(principal, scope)
        return 200, {"value": [{"actions": list(r.actions), "notActions": list(r.not_actions),
                                "dataActions": [], "notDataActions": []} for r in roles]}

    def _machine_json(self, machine: Machine) -> dict[str, Any]:
        return {"id": machine.id, "name": machine.name, "location": machine.location,
                "type": "Microsoft.HybridCompute/machines",
                "properties": {"status": machine.status, "provisioningState": "Succeeded"}}

    def _unregistered(self, sub_id: str) -> tuple[int, dict[str, Any]] | None:
        sub = self.server.state.subscriptions[sub_id.lower()]
        if "Microsoft.HybridCompute" in sub.registered:
            return None
        return 409, _arm_error("MissingSubscriptionRegistration",
                               "The subscription is not registered to use namespace "
                               "'Microsoft.HybridCompute'. See https://aka.ms/rps-not-found for "
                               "how to register subscriptions.")

    def _arm_machines_in_sub(self, principal: str, m: dict[str, str], raw: bytes
                             ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if refused := self._unregistered(m["sub"]):
            return refused
        with state.lock:
            machines = [mc for mc in state.machines.values()
                        if mc.subscription_id.lower() == m["sub"].lower()]
        # ARM lists what the caller may read: scope by scope.
        visible = [mc for mc in machines
                   if state.allowed(principal, mc.id.rsplit("/providers/", 1)[0],
                                    "Microsoft.HybridCompute/machines/read")]
        return 200, {"value": [self._machine_json(mc) for mc in visible]}

    def _arm_machine(self, principal: str, m: dict[str, str], raw: bytes
                     ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if refused := self._unregistered(m["sub"]):
            return refused
        sub = state.subscriptions[m["sub"].lower()]
        scope = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}"
        verb = {"GET": "read", "HEAD": "read", "PUT": "write", "DELETE": "delete"}[self.command]
        action = f"Microsoft.HybridCompute/machines/{verb}"
        if not state.allowed(principal, scope, action):
            return self._denied(principal, action, scope)
        if m["rg"].lower() not in sub.resource_groups:
            return 404, _arm_error("ResourceGroupNotFound",
                                   f"Resource group '{m['rg']}' could not be found.")
        key = f"{scope}/providers/Microsoft.HybridCompute/machines/{m['name']}".lower()
        with state.lock:
            machine = state.machines.get(key)
            if self.command == "DELETE":
                state.machines.pop(key, None)
                # The current API's answer (the SDK's begin_delete accepts 202 or 204).
                return 204, {}
            if self.command == "PUT":
                body = json.loads(raw or b"{}")
                machine = Machine(m["sub"], sub.rg_names[m["rg"].lower()], m["name"],
                                  str(body.get("location", "westeurope")), "Connected")
                state.machines[key] = machine
                return 200, self._machine_json(machine)
        if machine is None:
            return 404, _arm_error("ResourceNotFound",
                                   f"The Resource 'Microsoft.HybridCompute/machines/{m['name']}' "
                                   f"under resource group '{m['rg']}' was not found.")
        return 200, self._machine_json(machine)

    def _child(self, kind: str, type_name: str, principal: str, m: dict[str, str]
               ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        sub = state.subscriptions[m["sub"].lower()]
        scope = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}"
        action = f"Microsoft.HybridCompute/{type_name}/read"
        if not state.allowed(principal, scope, action):
            return self._denied(principal, action, scope)
        existing = getattr(sub, kind)
        if (m["rg"].lower(), m["name"].lower()) not in existing:
            return 404, _arm_error("ResourceNotFound",
                                   f"The Resource 'Microsoft.HybridCompute/{type_name}/"
                                   f"{m['name']}' under resource group '{m['rg']}' was not "
                                   "found.")
        return 200, {"id": f"{scope}/providers/Microsoft.HybridCompute/{type_name}/{m['name']}",
                     "name": m["name"], "type": f"Microsoft.HybridCompute/{type_name}",
                     "location": sub.resource_groups.get(m["rg"].lower(), "westeurope"),
                     "properties": {"provisioningState": "Succeeded"}}

    def _arm_pls(self, principal: str, m: dict[str, str], raw: bytes
                 ) -> tuple[int, dict[str, Any]]:
        return self._child("private_link_scopes", "privateLinkScopes", principal, m)

    def _arm_gateway(self, principal: str, m: dict[str, str], raw: bytes
                     ) -> tuple[int, dict[str, Any]]:
        return self._child("gateways", "gateways", principal, m)


class FakeAzureServer(ThreadingHTTPServer):
    """The fake Entra ID + ARM on ``https://<host>:<port>``, served from a daemon thread."""

    daemon_threads = True

    def __init__(self, state: AzureState, certificates: LabCertificates,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.state = state
        self.certificates = certificates
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certificates.cert_file), str(certificates.key_file))
        # The handshake happens in the handler's thread, not in the accepting one.
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"https://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="arcfleet-lab-azure",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeAzureServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
