"""Transports: one Protocol, an SSH and a WinRM implementation."""
