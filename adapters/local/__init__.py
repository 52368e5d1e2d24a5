"""The ResourceManager port on this machine alone: one agent running workers as local processes.

No Mesos and no isolation: for the test harness and the benchmarks, which need real worker
processes placed by the real master without starting a cluster.
"""
