"""What arcfleet knows about azcmagent: its codes, its output, and the commands to run it."""
