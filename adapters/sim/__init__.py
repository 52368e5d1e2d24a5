"""Deterministic simulation: virtual clock, simulated agents and faults, the real core."""
