"""The Azure side of arcfleet: ask Azure from the jump host before any host is touched.

Modules (none imports the Azure SDK at import time; the CLI must start at once):

- :mod:`fleet.azure.clouds`: the supported clouds' authority and ARM endpoints, and the
  ``ARCFLEET_AZURE_ENDPOINTS`` override the lab uses.
- :mod:`fleet.azure.session`: credentials (azure-identity) and management clients per target.
- :mod:`fleet.azure.checks`: the checks of one target and their results.
- :mod:`fleet.azure.preflight`: targets of an inventory, the checks run once per target, and
  the hosts each failed check stops.
- :mod:`fleet.azure.record`: check rows in the run store.
"""
