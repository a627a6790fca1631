"""Shared pytest fixtures. Each section is self-contained; add new sections below."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import netfaults, pgcluster, realsshd

# --------------------------------------------------------------------------- real OpenSSH (sec)
# A private sshd fleet on 127.50.1.0/24 plus a bastion on 127.50.9.1, started once per session
# and shared (tests must not change its host keys; start their own group for that). See
# tests/realsshd.py. Skipped, with the reason, where sshd is missing or we are not root.

SSHD_FLEET_FIRST = "127.50.1.1"
SSHD_FLEET_SIZE = 64
SSHD_BASTION = "127.50.9.1"


@pytest.fixture(scope="session")
def sshd_lab() -> Iterator[realsshd.SshdLab]:
    """User, keys, shim, sudo, and the shared fleet (``sshd_lab.groups[0]``) + bastion."""
    reason = realsshd.unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = realsshd.SshdLab.create()
    try:
        lab.serve(realsshd.addresses(SSHD_FLEET_FIRST, SSHD_FLEET_SIZE))
        lab.serve_bastion(SSHD_BASTION)
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def sshd_fleet(sshd_lab: realsshd.SshdLab) -> realsshd.SshdGroup:
    """The shared sshd group: 64 addresses from 127.50.1.1, one port."""
    return sshd_lab.groups[0]


@pytest.fixture
def sshd_scenario(sshd_lab: realsshd.SshdLab) -> Iterator[realsshd.SshdLab]:
    """The lab; after the test, the scenario is all-success again and every simulated agent
    is back to its starting state."""
    yield sshd_lab
    sshd_lab.set_scenario("default: success\n")
    sshd_lab.reset_hosts(path.name for path in sshd_lab.lab_root.iterdir() if path.is_dir())


# --------------------------------------------------------------------------- network faults (sec)
# A private network namespace (only lo) with an nftables fault table; see tests/netfaults.py.


@pytest.fixture(scope="session")
def netns_unavailable() -> str | None:
    """Why namespaces/nftables cannot be used here (checked once), or None."""
    return netfaults.unavailable_reason()


@pytest.fixture
def fault_ns(netns_unavailable: str | None) -> Iterator[netfaults.FaultNamespace]:
    """A fresh namespace, deleted after the test whatever happens."""
    if netns_unavailable:
        pytest.skip(netns_unavailable)
    with netfaults.FaultNamespace.create() as namespace:
        yield namespace


# --------------------------------------------------------------------------- Azure endpoints (sec)
# The Azure preflight of a run whose inventory names no endpoints file (the lab's inventories
# name their fake Azure) would ask the real Entra ID. Tests must not: for the whole session,
# ARCFLEET_AZURE_ENDPOINTS names a loopback port where nothing listens, so such checks end
# "not done" at once and the runs go on as before. Tests that want an Azure use the lab's.


@pytest.fixture(scope="session", autouse=True)
def _azure_endpoints_on_loopback(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    import json
    import os
    import socket

    from fleet.azure.clouds import ENDPOINTS_ENV

    with socket.socket() as probe:  # a port that was free a moment ago; nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path_factory.mktemp("azure") / "endpoints.json"
    url = f"https://127.0.0.1:{port}"
    path.write_text(json.dumps({"authority_host": url, "resource_manager": url}),
                    encoding="utf-8")
    before = os.environ.get(ENDPOINTS_ENV)
    os.environ[ENDPOINTS_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENDPOINTS_ENV, None)
        else:
            os.environ[ENDPOINTS_ENV] = before


# --------------------------------------------------------------------------- PostgreSQL (store)
# A throwaway cluster (tests/pgcluster.py), started once per session; each test that asks for
# ``pg_url`` gets a fresh database and PGPASSWORD in its environment. Skipped, with the reason,
# where the server binaries or psycopg are missing.


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.PgCluster]:
    reason = pgcluster.unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = pgcluster.PgCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(
    pg_cluster: pgcluster.PgCluster, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A fresh, empty database (its URL carries no password; PGPASSWORD is set)."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    name = f"{name}_{abs(hash(request.node.nodeid)) % 10**6}"
    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    return pg_cluster.create_database(name)
