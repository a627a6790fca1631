"""The lab: simulated hosts on loopback that speak real SSH (and WinRM) and run an azcmagent
simulator, for the README, the tests and the benchmarks."""
