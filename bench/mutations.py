"""Mutation check: each claim in docs/security.md is broken on purpose, and a test must fail.

For every entry of :data:`MUTATIONS` this copies the worktree (tracked and untracked files, not
ignored ones) into a scratch directory, replaces ``search`` by ``replace`` in ``file`` (the search
text must occur exactly once, so a stale entry is reported instead of silently testing nothing),
runs the listed test ids there with this interpreter, and reports CAUGHT when pytest fails and
MISSED when it passes. Exit status 1 if any mutation was missed or did not apply.

Not a test (pytest does not collect bench/): it runs the suite's slow tests many times.

    .venv/bin/python bench/mutations.py            # every mutation
    .venv/bin/python bench/mutations.py -k json    # those whose name contains "json"
    .venv/bin/python bench/mutations.py --baseline # the same tests on the unmutated copy

To add one, append a :class:`Mutation` (file, search, replace, test ids). Keep ``search`` short
but unique, and name the tests that should catch it, not the whole suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    search: str
    replace: str
    tests: tuple[str, ...]


MUTATIONS: list[Mutation] = [
    Mutation(
        "known_hosts parse-once cache bypassed (asyncssh gets the path)",
        "fleet/transport/ssh.py",
        "**self._options(known_hosts=entries, tunnel=tunnel)",
        "**self._options(known_hosts=str(known), tunnel=tunnel)",
        ("tests/test_ssh_run_costs.py::test_lab_session_uses_aes_gcm_and_the_shared_known_hosts",),
    ),
    Mutation(
        "client key load-once cache bypassed (asyncssh gets the path)",
        "fleet/transport/ssh.py",
        'options["client_keys"] = [str(self._settings.key_file)] if loaded is None else loaded',
        'options["client_keys"] = [str(self._settings.key_file)]',
        ("tests/test_ssh_run_costs.py::test_lab_session_uses_aes_gcm_and_the_shared_known_hosts",),
    ),
    Mutation(
        "each --json outcome printed twice",
        "fleet/cli/display.py",
        '        sys.stdout.write(json.dumps(outcome_json(outcome), ensure_ascii=False) + "\\n")\n',
        '        sys.stdout.write(json.dumps(outcome_json(outcome), ensure_ascii=False) + "\\n")\n'
        '        sys.stdout.write(json.dumps(outcome_json(outcome), ensure_ascii=False) + "\\n")\n',
        ("tests/test_engine_ssh.py::test_json_lines_and_exit_statuses",
         "tests/test_secret_refs.py::test_a_private_secret_file_is_used"),
    ),
    Mutation(
        "an exception inside the classifier (absorbed into an 'unknown' verdict)",
        "fleet/azcm/classifier.py",
        "def _classify(evidence: Evidence) -> Diagnosis:\n",
        "def _classify(evidence: Evidence) -> Diagnosis:\n"
        "    if evidence.exit_status is not None and evidence.exit_status > 255:\n"
        "        raise ValueError('mutant')\n",
        ("tests/test_azcm_fuzz.py::test_classify_always_returns_a_diagnosis",),
    ),
    Mutation(
        "a resumed host is connected again although its agent reports Connected (AZCM0067)",
        "fleet/engine/host_run.py",
        "        if state is not None and state.connected:\n            if state.matches(self.host)"
        " and self._earlier.launched:",
        "        if state is not None and state.connected and not self._earlier.launched:\n"
        "            if state.matches(self.host) and self._earlier.launched:",
        ("tests/test_crash_safety.py::test_random_sigkills_never_corrupt_the_store_or_lose_an_outcome",
         "tests/test_resume_e2e.py::test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run"),
    ),
    Mutation(
        "SSH compression offered by default (asyncssh's zlib)",
        "fleet/transport/ssh.py",
        '"compression_algs": COMPRESSION_ALGS if self._settings.compression else ["none"],',
        '"compression_algs": COMPRESSION_ALGS,',
        ("tests/test_ssh_compression.py",),
    ),
    Mutation(
        "trust on first use with a known_hosts line asyncssh cannot parse",
        "fleet/transport/ssh_keys.py",
        "        if self.accept_new:\n            _strict_check(text, path)\n",
        "",
        ("tests/test_host_keys.py::test_a_host_the_file_speaks_for_is_never_learned",),
    ),
    Mutation(
        "a revoked [host]:port key dropped by asyncssh's port fallback",
        "fleet/transport/ssh_keys.py",
        "            entries = _KnownHosts(text)",
        "            entries = asyncssh.import_known_hosts(text)",
        ("tests/test_host_keys.py::test_a_host_the_file_speaks_for_is_never_learned",),
    ),
    Mutation(
        "/dev/null accepted as a known_hosts file",
        "fleet/transport/ssh_keys.py",
        "        if not S_ISREG(stat.st_mode):",
        "        if False:",
        ("tests/test_host_keys.py::test_a_known_hosts_path_that_is_not_a_readable_file_is_refused",
         "tests/test_secret_refs.py::"
         "test_accept_new_with_a_known_hosts_that_cannot_fail_closed_is_bad_input"),
    ),
    Mutation(
        "jump-host chains shared across known_hosts files",
        "fleet/transport/ssh.py",
        "            str(self._known_hosts_file()),\n        )",
        "        )",
        ("tests/test_host_keys.py::test_jump_chains_are_not_shared_across_known_hosts_files",),
    ),
    Mutation(
        "--accept-new-host-keys recalled by rerun/--resume",
        "fleet/cli/run_request.py",
        "            accept_new_host_keys=False,\n",
        '            accept_new_host_keys=bool(options.get("accept_new_host_keys")),\n',
        ("tests/test_secret_refs.py::test_rerun_and_resume_ask_for_the_security_flags_again",),
    ),
    Mutation(
        "a secret file others can read is accepted",
        "fleet/engine/secrets.py",
        "        if info.st_mode & 0o077:",
        "        if False:",
        ("tests/test_secret_refs.py::test_a_secret_file_others_can_read_is_refused",),
    ),
    Mutation(
        "any environment variable accepted as a secret",
        "fleet/engine/secrets.py",
        "        if ref.env.startswith(SECRET_ENV_PREFIXES) or ref.env in set(allowed_env):",
        "        if True:",
        ("tests/test_secret_refs.py::"
         "test_an_environment_variable_outside_the_allow_list_is_refused",),
    ),
    Mutation(
        "core dumps left enabled",
        "fleet/cli/__init__.py",
        "    disable_core_dumps()\n    args =",
        "    args =",
        ("tests/test_secret_refs.py::test_arcfleet_dumps_no_core",),
    ),
    Mutation(
        "the CLI imports every command (and asyncssh) at start",
        "fleet/cli/__init__.py",
        "def disable_core_dumps() -> None:",
        "import fleet.cli.run  # noqa: E402\n\n\ndef disable_core_dumps() -> None:",
        ("tests/test_cli_start.py",),
    ),
    Mutation(
        "the host script's private directory made 0755",
        "fleet/azcm/script_linux.py",
        "if ! made=$(mktemp -d {PRIVATE_TEMPLATE} 2>&1); then",
        'if ! made=$(mktemp -d {PRIVATE_TEMPLATE} 2>&1) || ! chmod 755 "$made"; then',
        ("tests/test_host_script_sshd.py::"
         "test_private_modes_and_one_session_per_host_on_real_sshd",),
    ),
    Mutation(
        "the config file written without privacy (0644)",
        "fleet/azcm/script_linux.py",
        r'''printf '%s\\n' "$cfg" >"$D/{CONFIG_NAME}"''',
        r'''printf '%s\\n' "$cfg" >"$D/{CONFIG_NAME}" && chmod 644 "$D/{CONFIG_NAME}"''',
        ("tests/test_host_script_sshd.py::"
         "test_private_modes_and_one_session_per_host_on_real_sshd",),
    ),
]


def _copy_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():
            continue  # deleted in the worktree but still in the index
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _apply(root: Path, mutation: Mutation) -> str | None:
    path = root / mutation.file
    text = path.read_text(encoding="utf-8")
    found = text.count(mutation.search)
    if found != 1:
        return f"search text found {found} times in {mutation.file}"
    path.write_text(text.replace(mutation.search, mutation.replace), encoding="utf-8")
    return None


def _run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("ARCFLEET_STATE_DIR", None)
    # The scratch copy must be what is imported, not the installed (editable) worktree.
    where = subprocess.run(
        [sys.executable, "-c", "import fleet; print(fleet.__file__)"],
        cwd=root, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not where.startswith(str(root)):
        raise SystemExit(f"the copy imports fleet from {where}, not {root}")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=root, env=env, capture_output=True, text=True,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return done.returncode, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--baseline", action="store_true",
                        help="run each mutation's tests on the unmutated copy instead")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.k.lower() in m.name.lower()]
    bad = 0
    for mutation in chosen:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="arcfleet-mutant-") as tmp:
            root = Path(tmp)
            _copy_tree(root)
            problem = None if args.baseline else _apply(root, mutation)
            if problem is not None:
                verdict, detail = "NOT APPLIED", problem
            else:
                code, detail = _run_tests(root, mutation.tests)
                if args.baseline:
                    verdict = "passes" if code == 0 else "BASELINE FAILS"
                else:
                    verdict = "CAUGHT" if code not in (0, 5) else "MISSED"
        bad += verdict in ("NOT APPLIED", "MISSED", "BASELINE FAILS")
        print(f"{verdict:<12} {mutation.name}\n{'':<12} {detail} "
              f"[{time.monotonic() - started:.0f} s]", flush=True)
    print(f"{len(chosen) - bad}/{len(chosen)} as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
