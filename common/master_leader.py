"""Where the Mantis leader is published in ZooKeeper, for workers and clients to find it.

The elected master writes its description (`service.election.master_description`: Mantis'
MasterDescription fields, its `url` and `epoch`) as JSON to ``<root>/leader``
(adapters.zk.election). Workers watch that znode and the CLI reads it, as Mantis' workers and
clients do through io.mantisrx.server.core.master.ZookeeperMasterMonitor. Here, so that the
runtime and the CLI read it the same way without importing the adapter.
"""

from __future__ import annotations

import orjson

DEFAULT_ZK_ROOT = "/mantis/master"
"""The masters' root in ZooKeeper (under the connect string's chroot), as adapters.zk uses."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})
"""What a follower may answer (adapters.http.follower: 302 for reads, 307 for calls with a
body); clients follow them by hand so that the method, the body and the token arrive."""
MAX_REDIRECTS = 5


def leader_path(root: str = DEFAULT_ZK_ROOT) -> str:
    """The znode holding the leader's description under `root`."""
    return "/" + f"{root.strip('/')}/leader".lstrip("/")


def leader_url(data: bytes | None) -> str | None:
    """The leader's base URL from the znode's data, or None if it names none (no node yet,
    empty, not a JSON object, no http(s) `url`)."""
    if not data:
        return None
    try:
        description = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    url = description.get("url") if isinstance(description, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return url.rstrip("/")
