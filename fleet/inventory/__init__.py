"""Inventory: what hosts exist, how to reach them and where in Azure they go."""

from fleet.inventory.loader import Inventory, load_inventory
from fleet.inventory.patterns import select_hosts

__all__ = ["Inventory", "load_inventory", "select_hosts"]
