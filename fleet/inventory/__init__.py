"""Inventory: what hosts exist, how to reach them and where in Azure they go."""
