"""Hostile WinRM endpoints (issue 16, items 1 and 2), written here and served on loopback.

* a TLS server in the middle, with a self-signed certificate for another name, that records every
  request it gets: a client that ignores certificates hands it the administrator password;
* a server answering with a gzip bomb (1 MiB on the wire, 512 MiB inflated);
* a server that drips its answer one byte at a time, so no per-read timeout ever fires.

The real CLI runs in a subprocess; what the hostile server recorded, the CLI's exit status and
the child's own resource usage (``wait4``) are the evidence.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._inventory_util import ARC_VARS_INI

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Winrm-MITM-SENTINEL-41d9"
SP_SECRET = "sp-SECRET-hostile-winrm-77"
MITM_ADDRESS = "127.32.0.1"
BOMB_ADDRESS = "127.32.0.2"
DRIP_ADDRESS = "127.32.0.3"

Handler = Callable[[socket.socket, "HostileServer"], None]


class HostileServer:
    """A TCP (optionally TLS) server on one loopback address; ``handler`` gets each connection
    in its own thread. ``requests`` holds every request head that arrived (after TLS)."""

    def __init__(self, address: str, handler: Handler,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[bytes] = []
        self.first_request_at: float | None = None  # time.monotonic() of the first request
        self.connections = 0
        self.stopped = threading.Event()
        self._listener = socket.create_server((address, 0))
        self._listener.settimeout(0.2)
        self.address, self.port = address, self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(30)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate: it sent nothing
            with contextlib.suppress(OSError):
                self.handler(conn, self)

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        self.requests.append(data)
        return data


def capture(conn: socket.socket, server: HostileServer) -> None:
    server.read_request(conn)
    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")


def basic_passwords(server: HostileServer) -> list[str]:
    """Every password sent in an ``Authorization: Basic`` header."""
    found = []
    for request in server.requests:
        for line in request.decode("latin-1").split("\r\n"):
            if line.lower().startswith("authorization: basic "):
                user_pass = base64.b64decode(line.split(" ", 2)[2]).decode("latin-1")
                found.append(user_pass.split(":", 1)[1])
    return found


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip member of about 1 KiB per inflated MiB (zeros, repeated full-flush blocks)."""
    mib = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    unit = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)  # same bytes every time now
    tail = deflate.flush()
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(mib, crc)
    size = (inflated_mib << 20) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + unit * (inflated_mib - 1)
            + tail + struct.pack("<II", crc, size))


def bomb_handler(body: bytes) -> Handler:
    def handler(conn: socket.socket, server: HostileServer) -> None:
        while server.read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8"
                         b"\r\nContent-Encoding: gzip\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
    return handler


def drip(conn: socket.socket, server: HostileServer) -> None:
    """Answer headers that never end: one byte every 0.5 s until the client goes away."""
    server.read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nX-Drip: ")
    while not server.stopped.is_set():
        conn.sendall(b"a")
        time.sleep(0.5)


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for DNS name ``name`` (not for any address): (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def mitm(tmp_path: Path) -> Iterator[tuple[HostileServer, Path]]:
    cert, key = self_signed(tmp_path, "somebody-else.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with HostileServer(MITM_ADDRESS, capture, tls=context) as server:
        yield server, cert


def ansible_inventory(tmp_path: Path, server: HostileServer, *host_vars: str) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(
        f"{ARC_VARS_INI}\n[windows]\n"
        f"win1 ansible_host={server.address} ansible_port={server.port} "
        + " ".join(host_vars) + "\n\n"
        "[windows:vars]\nansible_connection=winrm\narc_winrm_password_env=ARC_WINRM_PASSWORD\n",
        encoding="utf-8")
    return path


def playbook(tmp_path: Path, *, connect_timeout_s: float = 5, host_s: float = 60) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump({
        "name": "hostile", "description": "hostile WinRM endpoints", "mode": "onboard",
        "attempts": 1, "backoff": {"initial_s": 0.05, "max_s": 0.1, "multiplier": 2},
        "deadlines": {"connect_timeout_s": connect_timeout_s, "command_s": 10,
                      "agent_connect_s": 10, "host_s": host_s},
        "pacing": {"forks": 10, "connect_rate_per_s": 0, "connect_burst": 10},
    }), encoding="utf-8")
    return path


# Linux charges a process with the peak RSS of the one it was forked from (here the pytest
# process, hundreds of MB late in a suite run): this small launcher forks the CLI itself, waits
# for it and writes the CLI's own peak RSS (KiB) to the file named first.
PEAK_RSS_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def cli(tmp_path: Path, command: str, inventory: Path, *extra: str,
        peak_rss_file: Path | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    argv = [sys.executable, "-m", "fleet", command, "-i", str(inventory), *extra]
    if command == "onboard":
        argv += ["--state-dir", str(tmp_path / "state"), "--json", "--connect-rate", "0"]
    env = {**os.environ, "HOME": str(tmp_path / "home"), "ARC_WINRM_PASSWORD": PASSWORD,
           "ARC_SP_SECRET": SP_SECRET}
    env.pop("PYTHONPATH", None)
    if peak_rss_file is not None:
        argv = [sys.executable, "-c", PEAK_RSS_LAUNCHER, str(peak_rss_file), *argv]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process, argv


def outcome(stdout: str) -> dict[str, Any]:
    """The one host's ``--json`` line."""
    (line,) = [json.loads(text) for text in stdout.splitlines() if text.strip()]
    assert isinstance(line, dict) and line["host"] == "win1"
    return line


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


# --- item 1: certificate validation ----------------------------------------------------------


@pytest.mark.parametrize("transport", ["ssl", "basic"])
def test_basic_without_certificate_validation_is_refused_before_contact(
    tmp_path: Path, mitm: tuple[HostileServer, Path], transport: str
) -> None:
    server, _ = mitm
    inventory = ansible_inventory(
        tmp_path, server, f"ansible_winrm_transport={transport}", "ansible_winrm_scheme=https",
        "ansible_winrm_server_cert_validation=ignore")
    process, _ = cli(tmp_path, "onboard", inventory, "--playbook", str(playbook(tmp_path)))
    status, stdout, stderr = finish(process, 120)
    assert basic_passwords(server) == [], "the password went to a server in the middle"
    assert server.connections == 0
    assert status == 2, stderr
    assert "hosts.ini" in stderr and "win1" in stderr
    assert "ansible_winrm_server_cert_validation" in stderr
    assert "Traceback" not in stderr and PASSWORD not in stdout + stderr


def test_the_explicit_opt_in_is_shown_and_weak_ntlm_is_warned(
    tmp_path: Path, mitm: tuple[HostileServer, Path]
) -> None:
    server, _ = mitm
    opted_in = ansible_inventory(
        tmp_path, server, "ansible_winrm_transport=ssl", "ansible_winrm_scheme=https",
        "ansible_winrm_server_cert_validation=ignore", "arc_winrm_allow_unverified_tls=true")
    status, stdout, stderr = finish(_inventory(tmp_path, opted_in, "show"), 60)
    assert status == 0, stderr
    assert "NOT validated (allowed for this host)" in stdout
    ntlm = ansible_inventory(
        tmp_path, server, "ansible_winrm_transport=ntlm", "ansible_winrm_scheme=https",
        "ansible_winrm_server_cert_validation=ignore")
    status, stdout, stderr = finish(_inventory(tmp_path, ntlm, "validate"), 60)
    assert status == 0, stderr
    assert "warning:" in stderr and "win1" in stderr and "ntlm over HTTPS without" in stderr
    assert server.connections == 0


def _inventory(tmp_path: Path, inventory: Path, what: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "ARC_SP_SECRET": SP_SECRET}
    argv = [sys.executable, "-m", "fleet", "inventory", what, "-i", str(inventory)]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("trust", ["system", "ca_file"])
def test_validated_https_never_sends_the_password_to_a_certificate_for_another_name(
    tmp_path: Path, mitm: tuple[HostileServer, Path], trust: str
) -> None:
    server, mitm_cert = mitm
    host_vars = ["ansible_winrm_transport=ssl", "ansible_winrm_scheme=https"]
    if trust == "ca_file":
        # Even a CA file that trusts the server's certificate: it is for another name.
        host_vars.append(f"ansible_winrm_ca_trust_path={mitm_cert}")
    inventory = ansible_inventory(tmp_path, server, *host_vars)
    process, _ = cli(tmp_path, "onboard", inventory, "--playbook", str(playbook(tmp_path)))
    status, stdout, stderr = finish(process, 120)
    assert basic_passwords(server) == []
    assert server.requests == []  # TLS never completed, so no request at all
    assert status == 1, stderr
    line = outcome(stdout)
    assert line["category"] == "auth"
    assert "TLS certificate not trusted" in line["cause"]
    assert PASSWORD not in stdout + stderr


# --- item 2: bounded answers -----------------------------------------------------------------


def _winrm_basic_http(tmp_path: Path, server: HostileServer) -> Path:
    return ansible_inventory(tmp_path, server, "ansible_winrm_transport=basic",
                             "ansible_winrm_scheme=http", "arc_winrm_allow_basic_over_http=true")


def test_a_gzip_bomb_is_refused_unread(tmp_path: Path) -> None:
    body = gzip_bomb(512)  # 512 KiB on the wire, 512 MiB inflated
    with HostileServer(BOMB_ADDRESS, bomb_handler(body)) as server:
        inventory = _winrm_basic_http(tmp_path, server)
        peak_file = tmp_path / "peak-rss-kib"
        process, _ = cli(tmp_path, "onboard", inventory, "--playbook", str(playbook(tmp_path)),
                         peak_rss_file=peak_file)
        status, stdout, stderr = finish(process, 300)
    peak_rss_mb = int(peak_file.read_text()) / 1024
    assert server.requests, "the client never asked"
    assert peak_rss_mb < 200, f"peak RSS {peak_rss_mb:.0f} MB"
    assert b"accept-encoding: identity" in server.requests[0].lower()
    assert status == 1, stderr
    line = outcome(stdout)
    assert line["category"] == "unreachable"
    assert "compressed with 'gzip'" in line["cause"]


def test_a_dripping_host_does_not_hold_the_process(tmp_path: Path) -> None:
    host_s = 6.0
    with HostileServer(DRIP_ADDRESS, drip) as server:
        inventory = _winrm_basic_http(tmp_path, server)
        process, _ = cli(tmp_path, "onboard", inventory, "--playbook",
                         str(playbook(tmp_path, connect_timeout_s=60, host_s=host_s)))
        # The host's clock starts with its first request (the CLI's start-up is not counted:
        # on a loaded machine it varies more than the bound does).
        for _ in range(600):
            if server.first_request_at is not None or process.poll() is not None:
                break
            time.sleep(0.1)
        assert server.first_request_at is not None, "the CLI never contacted the host"
        budget = server.first_request_at + host_s + 5 - time.monotonic()
        try:
            status, stdout, stderr = finish(process, max(budget, 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"the process was still alive {host_s + 5:g} s after its first request "
                        f"to the host, with a host deadline of {host_s:g} s")
    assert status == 1, stderr
    assert outcome(stdout)["category"] == "timeout"


def test_hosts_that_drip_do_not_starve_a_healthy_windows_host(tmp_path: Path) -> None:
    """40 dripping hosts (more than the 32 WinRM threads arcfleet used to have) and one lab
    host, forks 50: the lab host connects, the others time out, and the process ends."""
    from fleet.lab.fleet import LabFleet
    from tests.engine_support import cli_argv, cli_env, edit_inventory

    host_s = 20.0
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=1,
                                                     subnet="127.34"))
        drips = [stack.enter_context(HostileServer(f"127.33.0.{i + 1}", drip))
                 for i in range(40)]

        def add_drips(body: dict[str, Any]) -> None:
            for i, server in enumerate(drips):
                body["hosts"][f"drip-{i:02d}"] = {"address": server.address,
                                                  "port": server.port, "transport": "winrm"}

        inventory = edit_inventory(lab, "with-drips.yaml", add_drips)
        argv = cli_argv("onboard", inventory, tmp_path / "state", "--forks", "50",
                        "--playbook", str(playbook(tmp_path, connect_timeout_s=60,
                                                   host_s=host_s)))
        process = subprocess.Popen(argv, cwd=ROOT, env=cli_env(tmp_path), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(600):
            if all(d.first_request_at for d in drips) or process.poll() is not None:
                break
            time.sleep(0.1)
        started = min(d.first_request_at or time.monotonic() for d in drips)
        try:
            stdout, stderr = process.communicate(
                timeout=max(0.1, started + host_s + 5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"the process was alive {host_s + 5:g} s after the first request")
    outcomes = {line["host"]: line for line in map(json.loads, stdout.splitlines())}
    assert outcomes["lab-0001"]["category"] == "connected", stderr
    assert {outcomes[f"drip-{i:02d}"]["category"] for i in range(40)} == {"timeout"}
    assert all(d.requests for d in drips)  # every dripping host was being served at once


def big_answer_handler(size: int, *, announce: bool) -> Handler:
    """An identity answer of ``size`` bytes: with Content-Length, or chunked (length unknown)."""
    def handler(conn: socket.socket, server: HostileServer) -> None:
        server.read_request(conn)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n"
        chunk = b"<" * (64 * 1024)
        if announce:
            conn.sendall(head + f"Content-Length: {size}\r\n\r\n".encode())
            for _ in range(size // len(chunk)):
                conn.sendall(chunk)
            return
        conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(size // len(chunk)):
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.sendall(b"0\r\n\r\n")
    return handler


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
async def test_an_answer_over_the_byte_cap_is_refused(tmp_path: Path, announce: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fleet.errors import HostUnreachable
    from fleet.inventory.model import OsFamily, ResolvedHost, Transport, WinrmSettings
    from fleet.transport.winrm import WinrmTransport
    from fleet.transport.winrm_http import MAX_RESPONSE_BYTES

    with HostileServer("127.32.0.4", big_answer_handler(8 * MAX_RESPONSE_BYTES,
                                                        announce=announce)) as server, \
            ThreadPoolExecutor(1) as executor:
        host = ResolvedHost(
            name="big", address=server.address, port=server.port, transport=Transport.WINRM,
            os=OsFamily.WINDOWS, winrm=WinrmSettings(user="u", auth="basic", scheme="http",
                                                     allow_basic_over_http=True))
        transport = WinrmTransport(host, password=PASSWORD, executor=executor)
        with pytest.raises(HostUnreachable, match="byte limit"):
            await transport.open()
