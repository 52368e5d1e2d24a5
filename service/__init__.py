"""The application layer: the one Mantis master that production, the simulation and the tests run.

`MasterService` runs a command or observation on the pure `core.control.ControlPlane`,
persists its events through the Store port, and only then carries out its effects through the
ResourceManager port and tells watchers. It depends on ports, a clock and the leaf package
`common` only; the composition root (adapters/cli/master.py) gives it real adapters, the
simulation (adapters/sim) simulated ones, the tests local processes.
"""
