"""The ``azcmagent`` simulator: :func:`run_agent` runs one invocation on a :class:`LabHost`."""

from fleet.lab.agent.console import AgentResult
from fleet.lab.agent.simulator import AGENT_VERSION, run_agent

__all__ = ["AGENT_VERSION", "AgentResult", "run_agent"]
