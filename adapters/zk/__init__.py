"""kazoo: leader election among masters, master detection, a ZooKeeper-backed store."""
