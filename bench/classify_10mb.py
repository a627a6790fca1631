"""Time ``classify`` on a 10 MB azcmagent.log whose last run failed at the very end.

    python bench/classify_10mb.py [--mb 10] [--repeat 5]

Prints the build size, the best and median times, and the ratio to the 0.5 s target. A second
case puts the failure in stdout with the 10 MB log behind it, and a third is a log with no fatal
line at all (the classifier must then fall back to the log's last lines); the last pastes the
whole log as stdout (``arcfleet codes --explain`` on a file not named *.log).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import Evidence

TARGET_S = 0.5

_ROUTINE = [
    'level=debug msg="Status Message received"',
    'level=debug msg="Heartbeat sent" status=Connected',
    'level=info msg="Checking for extension updates"',
    'level=debug msg="Token refreshed" expiresIn=3599',
    'level=info msg="Testing connectivity to endpoints that are needed to connect to Azure..."',
    'level=debug msg="GET https://gbl.his.arc.azure.com/discovery?location=westeurope" '
    'status=200 Correlation ID=2c1a9d70-1f1b-4c55-8f0e-6c2f6f0f9a11',
    'level=warning msg="Retrying request" Error="dial tcp 20.50.2.1:443: i/o timeout" attempt=1',
    'level=error msg="Regional Service Discovery" Error="context deadline exceeded"',
]
_OLD_FAILURE = [
    'level=info msg="Exit Code:  AZCM0041: Failed to Get Access Token"',
    'level=fatal msg="Failed to acquire authorization token from SPN: Invalid client secret is '
    'provided"',
]
_LAST_FAILURE = [
    'level=info msg="Onboarding Machine. It usually takes a few minutes to complete."',
    'level=error msg="Failed to AzcmagentConnect ARM resource" Error="RequestCorrelationId:'
    "6d574a85-8040-4cc2-ad53-102e15cadaca Message: The subscription is not registered to use "
    "namespace 'Microsoft.HybridCompute'. Code: MissingSubscriptionRegistration "
    'httpStatusCode:409"',
    'level=info msg="Exit Code:  AZCM0042: Failed to Create Resource"',
    'level=info msg="For troubleshooting, see https://aka.ms/arc/azcmerror"',
    'level=fatal msg="The subscription is not registered to use namespace '
    "'Microsoft.HybridCompute'\"",
]


def build_log(megabytes: float, *, with_failure: bool = True, old_failures: bool = True) -> str:
    rng = random.Random(7)
    lines: list[str] = []
    size = 0
    second = 0
    while size < megabytes * 1024 * 1024:
        second += 1
        stamp = f'time="2024-05-{1 + second // 86400 % 28:02d}T{second // 3600 % 24:02d}:' \
            f'{second // 60 % 60:02d}:{second % 60:02d}Z"'
        old = old_failures and rng.random() < 0.0005
        block = _OLD_FAILURE if old else [rng.choice(_ROUTINE)]
        for text in block:
            line = f"{stamp} {text}"
            lines.append(line)
            size += len(line) + 1
    if with_failure:
        lines.extend(f'time="2024-06-01T00:00:00Z" {text}' for text in _LAST_FAILURE)
    return "\n".join(lines) + "\n"


def timed(evidence: Evidence, repeat: int) -> tuple[float, float, str]:
    runs: list[float] = []
    verdict = ""
    for _ in range(repeat):
        start = time.perf_counter()
        diagnosis = classify(evidence)
        runs.append(time.perf_counter() - start)
        verdict = f"{diagnosis.category}/{diagnosis.action}/{diagnosis.code}/{diagnosis.rule}"
    return min(runs), statistics.median(runs), verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    log = build_log(args.mb)
    stale_log = build_log(args.mb, with_failure=False)
    quiet_log = build_log(args.mb, with_failure=False, old_failures=False)
    cases = {
        "failure at end of log": Evidence(42, log_tail=log),
        "failure in stdout, log behind": Evidence(
            41, stdout="ERROR   AZCM0041: Invalid client secret is provided\n", log_tail=log
        ),
        "last fatal is an older run's": Evidence(1, log_tail=stale_log),
        "log without any fatal line": Evidence(1, log_tail=quiet_log),
        "log as stdout (pasted)": Evidence(42, stdout=log),
    }
    print(f"log size: {len(log) / 1024 / 1024:.1f} MiB, {log.count(chr(10))} lines")
    for name, evidence in cases.items():
        best, median, verdict = timed(evidence, args.repeat)
        print(
            f"{name:32s} best {best * 1000:8.1f} ms  median {median * 1000:8.1f} ms  "
            f"target ratio {median / TARGET_S:6.3f}  -> {verdict}"
        )


if __name__ == "__main__":
    main()
