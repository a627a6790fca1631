"""Helpers for the inventory tests: small valid inventories to mutate."""

from __future__ import annotations

from pathlib import Path

from fleet.errors import InventoryError, Problem
from fleet.inventory import Inventory, load_inventory

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "66666666-7777-8888-9999-000000000000"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

AZURE_BLOCK = f"""\
  azure:
    tenant_id: {TENANT}
    subscription_id: {SUB}
    resource_group: rg-arc
    location: westeurope
    service_principal:
      client_id: {CLIENT}
      secret: {{env: ARC_SP_SECRET}}
"""

ARC_VARS_INI = f"""\
[all:vars]
arc_tenant_id={TENANT}
arc_subscription_id={SUB}
arc_resource_group=rg-arc
arc_location=westeurope
arc_sp_client_id={CLIENT}
arc_sp_secret_env=ARC_SP_SECRET
ansible_user=arc
"""

ARC_VARS_YAML = {
    "arc_tenant_id": TENANT,
    "arc_subscription_id": SUB,
    "arc_resource_group": "rg-arc",
    "arc_location": "westeurope",
    "arc_sp_client_id": CLIENT,
    "arc_sp_secret_env": "ARC_SP_SECRET",
    "ansible_user": "arc",
}


def arcfleet(body: str, *, defaults_extra: str = "") -> str:
    """An arcfleet file with valid defaults (ssh user + azure) and the given groups/hosts."""
    return f"arcfleet: 1\ndefaults:\n  ssh: {{user: arc}}\n{AZURE_BLOCK}{defaults_extra}{body}"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(*paths: Path, env: dict[str, str] | None = None, **kwargs: object) -> Inventory:
    return load_inventory(list(paths), env=env or {}, **kwargs)  # type: ignore[arg-type]


def problems_of(*paths: Path, env: dict[str, str] | None = None,
                **kwargs: object) -> list[Problem]:
    try:
        load(*paths, env=env, **kwargs)
    except InventoryError as exc:
        return exc.problems
    raise AssertionError("expected an InventoryError")


def one_problem(*paths: Path, env: dict[str, str] | None = None, **kwargs: object) -> Problem:
    problems = problems_of(*paths, env=env, **kwargs)
    assert len(problems) == 1, "\n".join(str(p) for p in problems)
    return problems[0]
