"""The Azure preflight as one step of a run (``onboard``/``preflight``), called by the CLI.

It runs the checks (or, with ``--no-azure-check``, only notes that locations were checked for
syntax), prints them, records them in the run store, and returns the hosts the run must not
contact, each with its diagnosis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fleet.azcm.diagnosis import Diagnosis
from fleet.azure.checks import CheckStatus
from fleet.azure.preflight import offline_location_results, run_azure_preflight
from fleet.azure.record import record_checks, render_checks
from fleet.engine.secrets import SecretBook
from fleet.inventory.model import ResolvedHost


def azure_preflight_step(
    hosts: Sequence[ResolvedHost],
    secrets: SecretBook,
    *,
    check: bool,
    register_providers: bool,
    delete_stale: bool = False,
    create_resource_groups: bool = False,
    db_path: Path | None,
    run_id: str,
    console: Console,
) -> dict[str, Diagnosis]:
    if not check:
        results = offline_location_results(hosts)
        record_checks(db_path, run_id, results)
        names = ", ".join(r.scope for r in results)
        console.print(f"Azure preflight skipped (--no-azure-check): regions checked for syntax "
                      f"only, not confirmed by Azure: {names}", markup=False, highlight=False,
                      soft_wrap=True)
        return {}
    started = time.monotonic()
    try:
        outcome = run_azure_preflight(hosts, secrets, register_providers=register_providers,
                                      delete_stale=delete_stale,
                                      create_resource_groups=create_resource_groups)
    except Exception as exc:  # a bug here must not cost the run: no check stops any host
        console.print(f"Azure preflight: internal error ({type(exc).__name__}: {exc}); the "
                      "checks were not done and the run goes on", markup=False,
                      highlight=False, soft_wrap=True)
        return {}
    elapsed = time.monotonic() - started
    record_checks(db_path, run_id, outcome.results)
    console.print(render_checks(outcome.results), markup=False, highlight=False, soft_wrap=True)
    console.print(f"Azure preflight: {len(outcome.results)} check(s) for {len(hosts)} host(s) "
                  f"in {elapsed:.1f} s", markup=False, highlight=False, soft_wrap=True)
    if outcome.not_done:
        console.print("Azure preflight: some checks were not done (see above); the run goes on "
                      "without them.", markup=False, highlight=False, soft_wrap=True)
    if outcome.stopped:
        failed = sum(1 for r in outcome.results if r.status is CheckStatus.FAILED)
        console.print(f"Azure preflight: {failed} check(s) failed; {len(outcome.stopped)} "
                      "host(s) will not be contacted.", markup=False, highlight=False,
                      soft_wrap=True)
    return outcome.stopped
