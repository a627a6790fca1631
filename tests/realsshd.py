"""A private fleet of real OpenSSH servers on loopback, for interop tests.

What it sets up (nothing is installed: ``.ci/run`` installs openssh-server):

- an unprivileged login user (:data:`TEST_USER`) with an empty home and no password
  (``usermod -p '*'``: with ``UsePAM no`` a ``!`` in /etc/shadow means "locked" to sshd);
- an ed25519 client key (made with asyncssh) authorized for that user, host keys, a known_hosts
  file listing every address served;
- ``sshd -D -e`` processes, each serving up to :data:`MAX_LISTEN_SOCKS` addresses on one port
  (OpenSSH stops with "Too many listen sockets" beyond 16 ``ListenAddress`` entries);
- a bastion sshd (TCP forwarding on) for ``jump_hosts`` tests;
- a shim directory first on the login PATH (``SetEnv PATH=...``) holding ``azcmagent``: the lab's
  simulator (``fleet.lab.agent.shim``), which picks its behaviour from the dialled address;
- elevation: with real ``sudo`` installed, a NOPASSWD drop-in in /etc/sudoers.d for the test user
  (keeping ``SSH_CONNECTION`` and the lab variables, with the shim directory first on
  ``secure_path``), removed at teardown. Without sudo, a fake ``sudo`` in the shim directory runs
  the command with ``ARCFLEET_FAKE_SUDO=1`` and a fake ``id`` that answers 0 for ``-u``; the
  ``azcmagent`` launcher then tells the simulator it runs as root. This fallback proves only that
  arcfleet sends ``sudo -n``; the real-sudo path is the one that proves elevation works.

Everything lives in a fresh directory under /tmp readable by the test user (pytest's own
tmp dirs are 0700 root, which the login user cannot traverse). Everything is undone by
:meth:`SshdLab.close`; the user account itself is kept (cheap to reuse, and removing it while
another test session uses it would break that session).

Needs root (sshd binds ports and switches users). :func:`unavailable_reason` says why not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import yaml

SSHD = Path("/usr/sbin/sshd")
SUDO = Path("/usr/bin/sudo")
TEST_USER = "arcfleet-t"
# OpenSSH's compiled-in limit on listen sockets per sshd process.
MAX_LISTEN_SOCKS = 16
START_TIMEOUT_S = 10.0

# Fixed, made-up Azure ids for generated inventories (the lab accepts any when it has no target).
TENANT_ID = "7a3c2f10-5b1e-4d2a-9c6f-0e8b4a1d2c3e"
SUBSCRIPTION_ID = "3f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
CLIENT_ID = "c0ffee00-1234-4abc-8def-00000000a11e"
SP_SECRET = "sshd-lab-secret-7f3a9c2e1b"
RESOURCE_GROUP = "rg-sshd-lab"
LOCATION = "westeurope"

# Variables the lab's azcmagent shim reads; sudo must keep them.
LAB_ENV_KEEP = (
    "SSH_CONNECTION", "ARCFLEET_LAB_ROOT", "ARCFLEET_LAB_SCENARIO", "ARCFLEET_FAKE_SUDO",
)


def unavailable_reason() -> str | None:
    """Why a real-sshd test cannot run here, or None when it can."""
    if not SSHD.exists():
        return f"{SSHD} is not installed (apt-get install openssh-server; .ci/run does this)"
    if os.geteuid() != 0:
        return "real-sshd tests need root (sshd binds ports and switches to the test user)"
    for tool in ("useradd", "usermod"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: cannot create the test login user"
    return None


def lab_shim_available() -> bool:
    """True when the lab's azcmagent simulator (branch ``lab``) is in this tree."""
    try:
        import fleet.lab.agent.shim  # noqa: F401
    except ImportError:
        return False
    return True


def addresses(first: str, count: int) -> list[str]:
    start = ipaddress.IPv4Address(first)
    return [str(start + i) for i in range(count)]


def _world_can_run(path: Path) -> bool:
    """True when any user can reach and execute ``path`` (every parent traversable)."""
    real = path.resolve()
    for parent in real.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(real.stat().st_mode & stat.S_IXOTH)


CODE_ROOT = Path(__file__).resolve().parents[1]  # the checkout that holds fleet/


def _stage_for_test_user() -> Path:
    import yaml

    stage = Path(tempfile.mkdtemp(prefix="arcfleet-shim-code-"))
    shutil.copytree(CODE_ROOT / "fleet", stage / "fleet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(yaml.__file__).parent, stage / "yaml",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in [stage, *stage.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


def login_user_python() -> tuple[str, list[str]]:
    """An interpreter the test user can run, and the import path it needs for this venv.

    The venv's own interpreter often lives under /root (pyenv), which the test user cannot
    traverse; the system python of the same version then runs with the venv's site-packages.
    Raises RuntimeError (with the reason) when the test user could not run the simulator.
    """
    paths = [str(CODE_ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if not all(_world_can_run(Path(path)) for path in paths):
        # A checkout or venv under /root (mode 0700): the simulator needs only fleet/ and
        # PyYAML, so stage a world-readable copy of those two for the test user.
        paths = [str(_stage_for_test_user())]
    if _world_can_run(Path(sys.executable)):
        return sys.executable, paths
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    if system.exists() and _world_can_run(system):
        return str(system), paths
    raise RuntimeError(f"no {version} interpreter the test user can run")


def _run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)


def ensure_test_user(home: Path) -> None:
    """Create :data:`TEST_USER` if missing; make it able to log in with a key only."""
    if subprocess.run(["id", "-u", TEST_USER], capture_output=True).returncode != 0:
        _run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
              TEST_USER])
    # '!' (locked) is refused by sshd when UsePAM is off; '*' only forbids password login.
    _run(["usermod", "-p", "*", TEST_USER])
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.chown(home, TEST_USER, TEST_USER)


def user_home() -> Path:
    import pwd

    return Path(pwd.getpwnam(TEST_USER).pw_dir)


def _write_private_key(key: asyncssh.SSHKey, path: Path) -> None:
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def wait_listening(endpoints: Iterable[tuple[str, int]], process: subprocess.Popen[bytes],
                   log: Path, timeout_s: float = START_TIMEOUT_S, *, probe: bool = True) -> None:
    """Block until every endpoint listens, or fail with sshd's own log.

    ``probe``: check with a TCP connect; otherwise (an sshd in another network namespace) wait
    for sshd's "Server listening on A port P." log lines.
    """
    pending = list(endpoints)
    deadline = time.monotonic() + timeout_s
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        address, port = pending[0]
        if not probe:
            if f"Server listening on {address} port {port}." in log.read_text(errors="replace"):
                pending.pop(0)
                continue
        else:
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd not listening on {address}:{port}: {log.read_text()}")
        time.sleep(0.02)


@dataclass
class SshdGroup:
    """One or more sshd processes serving ``addresses`` on ``port`` with one host key."""

    addresses: list[str]
    port: int
    host_key: asyncssh.SSHKey
    processes: list[subprocess.Popen[bytes]]
    configs: list[Path]
    logs: list[Path]

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes = []


@dataclass
class SshdLab:
    """The shared parts (user, keys, shim, sudo) plus every sshd started through it."""

    root: Path
    client_key_file: Path
    client_key: asyncssh.SSHKey
    authorized_keys: Path
    known_hosts: Path
    shim_dir: Path
    lab_root: Path
    scenario_file: Path
    real_sudo: bool
    sudoers_dropin: Path | None = None
    #: why ``azcmagent`` is not on the login PATH (tests that need it skip with this), or None
    shim_problem: str | None = None
    groups: list[SshdGroup] = field(default_factory=list)
    bastion: SshdGroup | None = None

    # -- setup -------------------------------------------------------------------------------

    @classmethod
    def create(cls, *, fake_sudo: bool | None = None) -> SshdLab:
        """Set up the shared parts. ``fake_sudo``: None = real sudo when installed; True
        forces the fake (to test the fallback itself)."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's compiled-in privsep dir
        root = Path(tempfile.mkdtemp(prefix="arcfleet-sshd-", dir="/tmp"))
        root.chmod(0o755)  # the login user must reach the shim and lab dirs inside
        ensure_test_user(Path("/home") / TEST_USER)
        # A clean home: nothing a login shell would source, nothing left by earlier sessions
        # except what another live session may be using (/tmp files are real, not in home).
        home = user_home()
        for leftover in (".bashrc", ".profile", ".bash_profile"):
            with contextlib.suppress(FileNotFoundError):
                (home / leftover).unlink()

        client_dir = root / "client"
        client_dir.mkdir(mode=0o700)
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="arcfleet-test-client")
        client_key_file = client_dir / "id_ed25519"
        _write_private_key(client_key, client_key_file)
        authorized_keys = root / "authorized_keys"
        authorized_keys.write_bytes(client_key.export_public_key("openssh"))
        authorized_keys.chmod(0o644)
        known_hosts = client_dir / "known_hosts"
        known_hosts.write_text("")

        shim_dir = root / "bin"
        lab_root = root / "lab"
        lab_root.mkdir(mode=0o777)
        lab_root.chmod(0o777)  # root (under sudo) and the login user both write lab state
        scenario_file = root / "scenario.yaml"
        scenario_file.write_text("default: success\n")
        scenario_file.chmod(0o644)
        # The target the simulator accepts: the one write_inventory() names. With the secret
        # set, a connect succeeds only if the secret really reached the host's --config file.
        target = lab_root / "target.json"
        target.write_text(json.dumps({
            "tenant_id": TENANT_ID, "subscription_id": SUBSCRIPTION_ID,
            "resource_group": RESOURCE_GROUP, "location": LOCATION, "cloud": "AzureCloud",
            "client_id": CLIENT_ID, "secret": SP_SECRET,
        }))
        target.chmod(0o644)
        lab = cls(root=root, client_key_file=client_key_file, client_key=client_key,
                  authorized_keys=authorized_keys, known_hosts=known_hosts, shim_dir=shim_dir,
                  lab_root=lab_root, scenario_file=scenario_file,
                  real_sudo=SUDO.exists() if fake_sudo is None else not fake_sudo)
        try:
            lab._write_shims()
            if lab.real_sudo:
                lab._install_sudoers()
        except BaseException:
            lab.close()
            raise
        return lab

    def _write_shims(self) -> None:
        self.shim_dir.mkdir(mode=0o755)
        if not self.real_sudo:
            self._write_fake_sudo()
        if not lab_shim_available():
            self.shim_problem = "the lab's azcmagent simulator (fleet.lab) is not in this tree"
            return
        try:
            python, paths = login_user_python()
        except RuntimeError as exc:
            self.shim_problem = str(exc)
            return
        # umask 0: files the simulator writes as root stay writable for the login user.
        launcher = self.shim_dir / "azcmagent-launcher.py"
        launcher.write_text(textwrap.dedent("""\
            import os
            import sys

            if os.environ.get("ARCFLEET_FAKE_SUDO") == "1":
                # fake sudo (no real sudo on this machine): the login user stands in for root
                os.geteuid = lambda: 0
            from fleet.lab.agent.shim import main

            main(sys.argv[1:])
            """))
        self._script("azcmagent", f"""\
            #!/bin/sh
            umask 000
            PYTHONPATH={":".join(paths)}
            export PYTHONPATH
            exec {python} {launcher} "$@"
            """)

    def _write_fake_sudo(self) -> None:
        self._script("sudo", f"""\
            #!/bin/sh
            # Fake sudo for tests (no /usr/bin/sudo here): drop sudo's options, run the
            # command with a fake `id` and ARCFLEET_FAKE_SUDO=1 (read by azcmagent-launcher).
            while [ $# -gt 0 ]; do
              case "$1" in
                -u|-g|-p|-C|-h) shift 2 ;;
                --) shift; break ;;
                -*) shift ;;
                *) break ;;
              esac
            done
            ARCFLEET_FAKE_SUDO=1 PATH={self.shim_dir}/fake-root:$PATH
            export ARCFLEET_FAKE_SUDO PATH
            exec "$@"
            """)
        fake_root = self.shim_dir / "fake-root"
        fake_root.mkdir(mode=0o755)
        self._script("fake-root/id", """\
            #!/bin/sh
            if [ "$*" = "-u" ]; then echo 0; else exec /usr/bin/id "$@"; fi
            """)

    def _script(self, name: str, body: str) -> None:
        path = self.shim_dir / name
        path.write_text(textwrap.dedent(body))
        path.chmod(0o755)

    def _install_sudoers(self) -> None:
        dropin = Path("/etc/sudoers.d") / f"arcfleet-test-{self.root.name.rsplit('-', 1)[-1]}"
        keep = " ".join(LAB_ENV_KEEP)
        text = (
            f"# arcfleet test session {self.root}; removed at teardown\n"
            f'Defaults:{TEST_USER} env_keep += "{keep}"\n'
            f'Defaults:{TEST_USER} secure_path="{self.shim_dir}:/usr/sbin:/usr/bin:/sbin:/bin"\n'
            f"Defaults:{TEST_USER} !lecture, !requiretty\n"
            f"{TEST_USER} ALL=(root) NOPASSWD: ALL\n"
        )
        staged = self.root / "sudoers.check"
        staged.write_text(text)
        visudo = shutil.which("visudo")
        if visudo:
            _run([visudo, "-c", "-q", "-f", str(staged)])
        dropin.write_text(text)
        dropin.chmod(0o440)
        self.sudoers_dropin = dropin

    # -- sshd --------------------------------------------------------------------------------

    def _config(self, *, port: int, listen: Sequence[str], host_key_file: Path,
                forwarding: bool, log_level: str) -> str:
        path = f"{self.shim_dir}:/usr/bin:/bin"
        lines = [
            f"Port {port}",
            *(f"ListenAddress {address}" for address in listen),
            f"HostKey {host_key_file}",
            "PidFile none",
            "UsePAM no",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {TEST_USER}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            # the key file sits under /tmp (world-writable), which StrictModes would refuse
            "StrictModes no",
            "UseDNS no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            # The default 10:30:100 drops most of 200 simultaneous handshakes.
            "MaxStartups 1000",
            "MaxSessions 100",
            "LoginGraceTime 30",
            f"AllowTcpForwarding {'yes' if forwarding else 'no'}",
            f"SetEnv PATH={path} ARCFLEET_LAB_ROOT={self.lab_root} "
            f"ARCFLEET_LAB_SCENARIO={self.scenario_file}",
            "Subsystem sftp internal-sftp",
            f"LogLevel {log_level}",
        ]
        return "\n".join(lines) + "\n"

    def serve(self, hosts: Sequence[str], *, port: int | None = None,
              host_key: asyncssh.SSHKey | None = None, forwarding: bool = False,
              log_level: str = "INFO", remember_keys: bool = True,
              netns: str | None = None) -> SshdGroup:
        """Start ceil(len(hosts)/16) sshd processes serving ``hosts`` on one port.

        ``remember_keys`` adds the host key for every address to the lab's known_hosts.
        ``netns``: run the sshd inside that network namespace (see tests/netfaults.py); then
        ``port`` is required, and clients must run in the namespace too.
        """
        if netns is not None and port is None:
            raise ValueError("an sshd in a namespace needs an explicit port")
        port = port or free_port(hosts[0])
        key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        tag = f"{hosts[0]}-{port}"
        key_file = self.root / f"host_key-{tag}"
        _write_private_key(key, key_file)
        group = SshdGroup(addresses=list(hosts), port=port, host_key=key, processes=[],
                          configs=[], logs=[])
        self.groups.append(group)
        for index in range(0, len(hosts), MAX_LISTEN_SOCKS):
            chunk = hosts[index:index + MAX_LISTEN_SOCKS]
            config = self.root / f"sshd-{tag}-{index // MAX_LISTEN_SOCKS}.conf"
            config.write_text(self._config(port=port, listen=chunk, host_key_file=key_file,
                                           forwarding=forwarding, log_level=log_level))
            log = config.with_suffix(".log")
            group.configs.append(config)
            group.logs.append(log)
            _run([str(SSHD), "-t", "-f", str(config)])
            with log.open("wb") as log_handle:
                # -D: stay in the foreground (a child we can stop); -e: log to stderr.
                prefix = ["ip", "netns", "exec", netns] if netns else []
                # (ip netns exec execs sshd: the pid stays sshd's, so stop() reaches it)
                process = subprocess.Popen([*prefix, str(SSHD), "-D", "-e", "-f", str(config)],
                                           stdout=subprocess.DEVNULL, stderr=log_handle,
                                           stdin=subprocess.DEVNULL)
            group.processes.append(process)
            wait_listening(((address, port) for address in chunk), process, log,
                           probe=netns is None)
        if remember_keys:
            self.remember(group)
        return group

    def serve_bastion(self, address: str, *, port: int | None = None) -> SshdGroup:
        """The jump host: TCP forwarding on, and direct-tcpip logged (DEBUG1) so a test can
        prove a hop went through it."""
        self.bastion = self.serve([address], port=port, forwarding=True, log_level="DEBUG1")
        return self.bastion

    def remember(self, group: SshdGroup, key: asyncssh.SSHKey | None = None) -> None:
        public = (key or group.host_key).export_public_key("openssh").decode().strip()
        with self.known_hosts.open("a", encoding="utf-8") as handle:
            for address in group.addresses:
                handle.write(f"[{address}]:{group.port} {public}\n")

    def set_scenario(self, body: Mapping[str, Any] | str) -> None:
        """Replace the lab scenario every served host reads (see fleet/lab/scenario.py)."""
        text = body if isinstance(body, str) else yaml.safe_dump(dict(body), sort_keys=False)
        self.scenario_file.write_text(text)

    def reset_hosts(self, hosts: Iterable[str]) -> None:
        """Forget the simulated agent state of these addresses (back to their scenario's
        starting state on the next call)."""
        for address in hosts:
            shutil.rmtree(self.lab_root / address, ignore_errors=True)

    # -- client side -------------------------------------------------------------------------

    def connect_options(self, **extra: Any) -> dict[str, Any]:
        """asyncssh.connect keyword arguments for the test user with this lab's keys."""
        options: dict[str, Any] = {
            "username": TEST_USER,
            "client_keys": [self.client_key],
            "known_hosts": str(self.known_hosts),
            "agent_path": None,
            "config": None,
            "connect_timeout": 5,
        }
        options.update(extra)
        return options

    def write_inventory(
        self,
        directory: Path,
        hosts: Mapping[str, tuple[str, int]],
        *,
        become: bool = True,
        jump: bool = False,
        connect_timeout_s: float | None = None,
        host_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        name: str = "inventory.yaml",
    ) -> Path:
        """Write an arcfleet inventory (format 1) for ``hosts`` (name -> (address, port)).

        Key, known_hosts and SP secret are copied next to it and named by relative paths, which
        the loader resolves against the inventory's directory. ``jump`` routes every host
        through the bastion (see :meth:`serve_bastion`).
        """
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.client_key_file, directory / "id_ed25519")
        (directory / "id_ed25519").chmod(0o600)
        shutil.copy(self.known_hosts, directory / "known_hosts")
        secret = directory / "sp_secret"
        secret.write_text(SP_SECRET + "\n")
        secret.chmod(0o600)
        ssh: dict[str, Any] = {"user": TEST_USER, "key_file": "id_ed25519",
                               "known_hosts": "known_hosts", "become": become}
        if connect_timeout_s is not None:
            ssh["connect_timeout_s"] = connect_timeout_s
        if jump:
            if self.bastion is None:
                raise RuntimeError("serve_bastion() first")
            ssh["jump_hosts"] = [
                f"{TEST_USER}@{self.bastion.addresses[0]}:{self.bastion.port}"
            ]
        body = {
            "arcfleet": 1,
            "defaults": {
                "transport": "ssh",
                "ssh": ssh,
                "azure": {
                    "tenant_id": TENANT_ID,
                    "subscription_id": SUBSCRIPTION_ID,
                    "resource_group": RESOURCE_GROUP,
                    "location": LOCATION,
                    "cloud": "AzureCloud",
                    "service_principal": {"client_id": CLIENT_ID,
                                          "secret": {"file": "sp_secret"}},
                },
            },
            "hosts": {
                host: {"address": address, "port": port,
                       **dict((host_overrides or {}).get(host, {}))}
                for host, (address, port) in hosts.items()
            },
        }
        path = directory / name
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        for group in self.groups:
            group.stop()
        self.groups = []
        if self.sudoers_dropin is not None:
            with contextlib.suppress(FileNotFoundError):
                self.sudoers_dropin.unlink()
            self.sudoers_dropin = None
        _kill_user_leftovers(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_user_leftovers(root: Path) -> None:
    """End test-user processes still running a command from this lab (e.g. a hung agent).

    Only processes owned by the test user whose command line names this lab's directory are
    signalled, so another live session's processes are left alone.
    """
    import pwd

    uid = pwd.getpwnam(TEST_USER).pw_uid
    marker = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), 15)
