"""arcfleet: onboard a fleet of servers to Azure Arc and diagnose every host that fails.

Data flow, one package each: inventory -> engine (plan, per-host state machine) -> transport
-> azcm (agent commands, catalog, classifier) -> store -> report.
"""

__version__ = "0.1.0"
