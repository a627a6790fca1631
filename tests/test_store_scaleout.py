"""One run, many workers: site workers (separate ``arcfleet`` processes, each with its own state
directory as on its own jump host) share one PostgreSQL run of lab hosts.

The lab's record of ``azcmagent connect`` calls is the witness that no host was connected twice;
the merged report is compared with a single-worker SQLite run of the same scenarios.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.pgcluster import PgCluster
from tests.run_support import (
    VOLATILE_COLUMNS,
    arcfleet,
    contacted,
    onboard_args,
    spawn_arcfleet,
    successful_connects,
    write_playbook,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SITES = ("dc-east", "dc-west", "dmz")


def _plan() -> ScenarioPlan:
    spread = ([Scenario(ScenarioKind.WRONG_SECRET)] * 5
              + [Scenario(ScenarioKind.TRANSIENT, fail_times=1)] * 5
              + [Scenario(ScenarioKind.ALREADY_CONNECTED)] * 5)
    return ScenarioPlan(default=Scenario(), spread=tuple(spread))


def site_inventory(lab: LabFleet, path: Path, sites: tuple[str, ...] = SITES) -> dict[str, str]:
    """The lab's inventory with every host in one site group (round robin); host -> site."""
    body = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    site_of: dict[str, str] = {}
    for index, (name, host) in enumerate(body["hosts"].items()):
        site_of[name] = sites[index % len(sites)]
        host["groups"] = [site_of[name]]
    body["groups"] = {site: {} for site in sites}
    # Paths in the lab's inventory are relative to its folder: write next to it.
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return site_of


def _report(*args: str) -> list[dict[str, Any]]:
    result = arcfleet("report", "--format", "json", "--all", *args)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    ignored = {*VOLATILE_COLUMNS, "run_id", "site", "worker", "address", "message", "cause"}
    return {key: value for key, value in row.items() if key not in ignored}


def _worker(lab: LabFleet, inventory: Path, state: Path, playbook: Path, url: str, site: str,
            stderr: Path, lease_s: int = 3) -> subprocess.Popen[str]:
    args = onboard_args(lab, state, playbook, "--store", url, "--site", site,
                        "--lease", str(lease_s),
                        "--json", "--forks", "10")
    args[args.index("-i") + 1] = str(inventory)
    return spawn_arcfleet(*args, stderr_path=stderr)


def test_three_sites_one_killed_worker_every_host_once(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    playbook = write_playbook(tmp_path)
    hosts = 300
    with LabFleet.in_thread(tmp_path / "lab", hosts=hosts, plan=_plan(), subnet="127.71",
                            latency_s=0.02) as lab:
        inventory = lab.inventory_path.parent / "sites.yaml"
        site_of = site_inventory(lab, inventory)
        procs = {
            site: _worker(lab, inventory, tmp_path / f"jump-{site}", playbook, pg_url, site,
                          tmp_path / f"{site}.err")
            for site in SITES
        }
        # Kill the dmz worker once it has finished some hosts (mid-run), then restart it.
        victim = procs["dmz"]
        assert victim.stdout is not None
        seen = 0
        while seen < 10:
            line = victim.stdout.readline()
            assert line, (tmp_path / "dmz.err").read_text()
            seen += 1
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        time.sleep(0.5)
        procs["dmz"] = _worker(lab, inventory, tmp_path / "jump-dmz-2", playbook, pg_url, "dmz",
                               tmp_path / "dmz-2.err")
        for site, proc in procs.items():
            proc.communicate(timeout=600)
            assert proc.returncode in (0, 1), (tmp_path / f"{site}.err").read_text()
        connects = successful_connects(lab)
        expected = lab.expected()
        # One view from any jump host: every host once, its site, the worker that did it.
        rows = _report("--store", pg_url, "--state-dir", str(tmp_path / "jump-dc-east"))

        # rerun --site: the secret is fixed; only that site's failed hosts are contacted.
        failed = [row["host"] for row in rows if row["status"] == "failed"]
        site = site_of[failed[0]]
        for name in failed:
            lab.set_scenario(name, Scenario())
        before = contacted(lab)
        rerun = arcfleet("rerun", "--site", site, "--store", pg_url, "--state-dir",
                         str(tmp_path / "jump-rerun"))
        assert rerun.returncode in (0, 1), rerun.stderr
        after = contacted(lab)
        assert {n for n in after if after[n] != before[n]} == {
            n for n in failed if site_of[n] == site}, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert max(connects.values()) == 1, {h: n for h, n in connects.items() if n > 1}
    rerun_rows = {row["host"]: row for row in _report("--store", pg_url)}
    for name in failed:
        want = "connected" if site_of[name] == site else "credentials"
        assert (rerun_rows[name]["category"], rerun_rows[name]["site"]) == (want, site_of[name])
    assert sorted(row["host"] for row in rows) == sorted(site_of)
    assert {row["host"]: row["site"] for row in rows} == site_of
    assert all(row["worker"] for row in rows)
    assert {row["host"]: row["category"] for row in rows} == {
        name: want["expected_category"] for name, want in expected.items()}
    runs = arcfleet("runs", "--store", pg_url)
    assert runs.returncode == 0 and runs.stdout.count("│ finished │") == 2, runs.stdout  # + rerun
    # The killed worker's unfinished hosts were claimed a second time, by its successor.
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        again = conn.execute("SELECT host, site, worker FROM run_hosts WHERE claims > 1").fetchall()
    assert again and {site for _, site, _ in again} == {"dmz"}, again
    dmz_workers = {row["worker"] for row in rows if row["site"] == "dmz"}
    assert len(dmz_workers) == 2  # the killed worker finished some hosts, its successor the rest

    # The database password (PGPASSWORD) is nowhere: not in output, logs, transcripts, reports.
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".err", ".log", ".csv", ".json", ".txt"):
            assert pg_cluster.password not in path.read_text(errors="replace"), path

    # The same scenarios, one worker, SQLite: the same report.
    with LabFleet.in_thread(tmp_path / "lab1", hosts=hosts, plan=_plan(), subnet="127.72",
                            latency_s=0.02) as lab:
        single = arcfleet(*onboard_args(lab, tmp_path / "single", playbook), timeout=600)
        assert single.returncode == 1, single.stderr
    alone = _report("--state-dir", str(tmp_path / "single"))
    assert [_comparable(r) for r in alone] == [_comparable(r) for r in rows]


def test_two_workers_of_one_site_race_for_200_hosts(pg_url: str, tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=200, subnet="127.74") as lab:
        inventory = lab.inventory_path.parent / "sites.yaml"
        site_inventory(lab, inventory, ("dc-east",))
        # A lease that expires hands its host to the other worker (claims 2, by design): this
        # test is about claiming, so its leases outlast a stall of the database's disk (a CI
        # run saw both workers' writes wait 3 s at once, and 7 leases of 3 s expire).
        procs = [_worker(lab, inventory, tmp_path / f"jump-{n}", playbook, pg_url, "dc-east",
                         tmp_path / f"w{n}.err", lease_s=30) for n in (1, 2)]
        for n, proc in enumerate(procs, 1):
            proc.communicate(timeout=600)
            assert proc.returncode == 0, (tmp_path / f"w{n}.err").read_text()
        connects = successful_connects(lab)
    assert set(connects.values()) == {1}  # every host connected, none twice
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        claims = conn.execute("SELECT claims, COUNT(*) FROM run_hosts GROUP BY claims").fetchall()
    assert claims == [(1, 200)]  # each host claimed once
    rows = _report("--store", pg_url)
    assert len(rows) == 200 and len({row["worker"] for row in rows}) == 2
