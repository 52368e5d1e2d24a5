"""What a master says about itself to the election, and the election of a master that runs alone.

`master_description` is the JSON the leader publishes (with its `epoch`) for followers and
workers to find it: Mantis' MasterDescription field names
(mantis-server/mantis-server-core: io.mantisrx.server.core.master.MasterDescription) plus `url`,
the base URL a follower redirects to. `SingleNodeElection` is the `core.ports.LeaderElection`
port without ZooKeeper: the one master leads at once, in epoch 1.
"""

from __future__ import annotations

from typing import Any

from core.ports import LeaderElectionEvents


def master_description(
    *,
    hostname: str,
    host_ip: str,
    api_port: int,
    url: str,
    api_status_uri: str,
    create_time_ms: int,
) -> dict[str, Any]:
    """The master's description; this master serves every API (Mantis' scheduling-info, v2 and
    console ports) on its one `api_port`."""
    return {
        "hostname": hostname,
        "hostIP": host_ip,
        "apiPort": api_port,
        "schedInfoPort": api_port,
        "apiPortV2": api_port,
        "apiStatusUri": api_status_uri,
        "consolePort": api_port,
        "createTime": create_time_ms,
        "url": url,
    }


class SingleNodeElection:
    """`core.ports.LeaderElection` for a master that runs alone: it leads from `start`, epoch 1."""

    EPOCH = 1

    def __init__(self, description: dict[str, Any]) -> None:
        self._description = {**description, "epoch": self.EPOCH}
        self._leading = False

    def start(self, events: LeaderElectionEvents) -> None:
        """Calls `events.became_leader(1)` before it returns."""
        self._leading = True
        events.became_leader(self.EPOCH)

    def stop(self) -> None:
        self._leading = False

    def leader(self) -> dict[str, Any] | None:
        return dict(self._description) if self._leading else None
