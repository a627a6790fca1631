"""SSH compression bomb (issue 16, item 3): a hostile server that forces zlib and sends packets
that inflate a thousandfold. arcfleet offers no compression unless the inventory opts in, so the
handshake fails before any packet is inflated, and the client's peak memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
import pytest
from asyncssh.packet import Boolean, Byte, NameList, String, UInt32

ADDRESS = "127.72.1.1"  # this file's loopback range: 127.72.1
MSG_IGNORE = 2
MSG_KEXINIT = 20
BOMB_PACKET = 32 * 1024 * 1024  # zeros: about 32 KiB on the wire once zlib-compressed
BOMB_PACKETS = 24

CLIENT = """
import asyncio, json, sys
from pathlib import Path
from fleet.errors import ArcfleetError
from fleet.inventory.model import OsFamily, ResolvedHost, SshSettings, Transport
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import HostKeyPolicy

async def main() -> None:
    address, port, known, compression = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    host = ResolvedHost(name="bomb", address=address, port=port, transport=Transport.SSH,
                        os=OsFamily.LINUX, ssh=SshSettings(user="arc", connect_timeout_s=20,
                        compression=compression == "yes"))
    transport = SshTransport(host, policy=HostKeyPolicy(known_hosts=Path(known), accept_new=True))
    outcome = "connected"
    try:
        await transport.open()
        conn = transport._require()
        outcome += " " + str(conn.get_extra_info("recv_compression"))
        await asyncio.sleep(3)  # the bomb arrives after login
    except ArcfleetError as exc:
        outcome = f"refused: {exc}"
    finally:
        await transport.close()
    # VmHWM, not ru_maxrss: Linux carries the parent's peak over fork and exec into ru_maxrss,
    # and the parent here is the test process.
    status = Path("/proc/self/status").read_text()
    peak_mb = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024
    print(json.dumps({"outcome": outcome, "peak_mb": peak_mb}))

asyncio.run(main())
"""


class _Bomber(asyncssh.SSHServer):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return False

    def auth_completed(self) -> None:
        for _ in range(BOMB_PACKETS):
            self._conn.send_packet(MSG_IGNORE, String(bytes(BOMB_PACKET)))


@asynccontextmanager
async def bomb_server(algs: list[str]) -> AsyncIterator[int]:
    server = await asyncssh.create_server(
        _Bomber, ADDRESS, 0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        compression_algs=algs,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _client(port: int, tmp_path: Path, compression: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, ADDRESS, str(port), str(tmp_path / "known_hosts"),
        compression, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _kexinit(compression: list[bytes]) -> bytes:
    """A KEXINIT packet (RFC 4253 section 7.1), unencrypted, offering only ``compression``."""
    algs = [[b"curve25519-sha256"], [b"ssh-ed25519"], [b"aes128-ctr"], [b"aes128-ctr"],
            [b"hmac-sha2-256"], [b"hmac-sha2-256"], compression, compression, [], []]
    payload = Byte(MSG_KEXINIT) + bytes(16) + b"".join(NameList(a) for a in algs)
    payload += Boolean(False) + UInt32(0)
    padding = 8 - (len(payload) + 5) % 8
    padding += 8 if padding < 4 else 0
    return UInt32(len(payload) + padding + 1) + Byte(padding) + payload + bytes(padding)


@asynccontextmanager
async def zlib_only_server() -> AsyncIterator[int]:
    """A server that offers nothing but zlib and then waits for the client to give up.

    Written by hand rather than with asyncssh: an asyncssh server also finds no common
    algorithm and closes at once, and a close racing the client's reads can reach the
    client as a reset that drops the server's KEXINIT (seen under load in CI), so the test
    would check the kernel's timing instead of arcfleet's diagnosis."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-zlib_only\r\n" + _kexinit([b"zlib@openssh.com", b"zlib"]))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(serve, ADDRESS, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_forces_zlib_is_refused_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    async with zlib_only_server() as port:
        result = await _client(port, tmp_path, "no")
    assert str(result["outcome"]).startswith("refused:"), result
    assert "compression" in str(result["outcome"]), result
    assert float(str(result["peak_mb"])) < 200, result


@pytest.mark.parametrize(("opt_in", "expected"), [("no", "none"), ("yes", "zlib@openssh.com")])
async def test_compression_only_when_the_inventory_asks(
    tmp_path: Path, opt_in: str, expected: str
) -> None:
    """A server offering both gets no compression by default, zlib with the opt-in (the bomb
    then goes off, which is why it is an explicit per-host choice)."""
    async with bomb_server(["zlib@openssh.com", "none"]) as port:
        result = await _client(port, tmp_path, opt_in)
    assert result["outcome"] == f"connected {expected}", result
