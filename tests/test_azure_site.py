"""Site workers (``--site``, a shared PostgreSQL store) run the Azure preflight too (issue 17):
an expired secret stops that site's hosts before any of them is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.lab.fleet import LabFleet
from tests.run_support import arcfleet, contacted, onboard_args, write_playbook
from tests.test_store_scaleout import site_inventory

pytestmark = [pytest.mark.postgres]


def test_a_site_worker_asks_azure_first(pg_url: str, tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=6, subnet="127.72") as lab:
        lab.azure.state.apps[lab.target.client_id.lower()].secret_expired = True
        inventory = lab.inventory_path.parent / "sites.yaml"
        site_of = site_inventory(lab, inventory, ("east", "west"))
        args = onboard_args(lab, tmp_path / "jump-east", write_playbook(tmp_path), "--store",
                            pg_url, "--site", "east", "--json")
        args[args.index("-i") + 1] = str(inventory)
        result = arcfleet(*args, timeout=300)
        assert result.returncode == 1, result.stderr
        assert "AADSTS7000222" in result.stderr
        east = {name for name, site in site_of.items() if site == "east"}
        assert result.stdout.count('"category": "credentials"') == len(east), result.stdout
        assert sum(contacted(lab).values()) == 0
        assert lab.secret not in result.stdout + result.stderr
