"""mesoslite: an embedded Mesos-compatible resource manager (master, agents, allocators)."""
