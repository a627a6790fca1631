"""Inventory rules for WinRM certificate validation (issue 16, item 1): nothing is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.inventory.model import ResolvedHost
from fleet.inventory.winrm_policy import validation_state, winrm_warning
from tests._inventory_util import ARC_VARS_INI, arcfleet, load, one_problem, write

WINDOWS = "hosts:\n  w1:\n    address: 10.1.1.1\n    transport: winrm\n    winrm:\n" \
          "      user: admin\n      password: {env: PW}\n"


def windows(tmp_path: Path, *winrm_lines: str) -> Path:
    extra = "".join(f"      {line}\n" for line in winrm_lines)
    return write(tmp_path, "inv.yaml", arcfleet(WINDOWS + extra))


def test_basic_over_unvalidated_https_needs_the_per_host_opt_in(tmp_path: Path) -> None:
    problem = one_problem(windows(tmp_path, "auth: basic", "cert_validation: false"))
    assert (problem.host, problem.field) == ("w1", "winrm.cert_validation")
    assert "allow_unverified_tls" in problem.message
    (host,) = load(windows(tmp_path, "auth: basic", "cert_validation: false",
                           "allow_unverified_tls: true")).hosts
    assert validation_state(host) == "NOT validated (allowed for this host)"
    assert winrm_warning(host) is None  # the operator said so, for this host


def test_ntlm_without_validation_is_warned_not_refused(tmp_path: Path) -> None:
    (host,) = load(windows(tmp_path, "auth: ntlm", "cert_validation: false")).hosts
    warning = winrm_warning(host)
    assert warning is not None and "w1" in warning and "ntlm" in warning
    assert validation_state(host) == "NOT validated"


def test_ansible_ca_trust_path_is_the_ca_file_relative_to_the_inventory(tmp_path: Path) -> None:
    write(tmp_path, "pki/ca.pem", "-----BEGIN CERTIFICATE-----\n")
    inventory = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[w]\nw1 ansible_connection=winrm "
                      "arc_winrm_password_env=PW ansible_winrm_ca_trust_path=pki/ca.pem\n")
    (host,) = load(inventory).hosts
    assert host.winrm.ca_file == tmp_path / "pki" / "ca.pem"
    assert validation_state(host) == f"validated against {tmp_path / 'pki' / 'ca.pem'}"


def test_a_ca_file_that_would_not_be_used_or_cannot_be_read_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "ca.pem", "x")
    unused = one_problem(windows(tmp_path, "cert_validation: false", "ca_file: ca.pem"))
    assert (unused.host, unused.field) == ("w1", "winrm.ca_file")
    missing = one_problem(windows(tmp_path, "ca_file: nope.pem"))
    assert missing.field == "winrm.ca_file" and "nope.pem" in missing.message


def test_validation_state_without_a_ca_file(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    (host,) = load(windows(tmp_path)).hosts
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert validation_state(host) == "validated against the system trust store"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert validation_state(host) == "validated against REQUESTS_CA_BUNDLE"
    plain: ResolvedHost = host.model_copy(
        update={"winrm": host.winrm.model_copy(update={"scheme": "http"})})
    assert validation_state(plain) == "http (no TLS)"
