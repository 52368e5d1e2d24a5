"""pymesos: the ResourceManager port on a Mesos (or mesoslite) master."""
