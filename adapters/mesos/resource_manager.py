"""The ResourceManager port on pymesos' `MesosSchedulerDriver` (Mesos or mesoslite).

Translation only: offers (proto JSON dicts, `use_addict=False`) become `core.scheduling.Offer`s,
UPDATE events become `core.ports.TaskStatus`es, and the port's calls become ACCEPT (LAUNCH),
DECLINE, KILL, REVIVE, RECONCILE and ACKNOWLEDGE calls.

Threads. pymesos runs every scheduler callback on its own "Process IO" thread. Each callback
updates the adapter's small shared state (the offers it holds, the status dicts awaiting an
acknowledgement) under a lock, then hands the observation to `ResourceManagerEvents`:
- constructed with an asyncio `loop`: through `loop.call_soon_threadsafe`, so the events
  object (the master) only ever runs on its loop;
- without a loop: called directly on pymesos' thread (the contract tests do this; the events
  object must then be thread-safe itself).
A callback never raises: an exception would kill pymesos' IO thread and interrupt the main
thread, so each one is logged instead. The port's methods never block: each driver call
(synchronous HTTP, up to pymesos' 10 s timeout) is queued to the adapter's own "mesos-calls"
thread and made there in order, so the master's event loop never waits for Mesos.

Mesos semantics kept here:
- implicit acknowledgements are OFF: `acknowledge(status)` is sent only when the master says
  the update's events are persisted; the master re-sends an update until then;
- (re-)registration is reported as `events.registered(framework_id)`, and the master then
  reconciles; every held offer is forgotten on (re-)registration and on disconnection;
- an offer id not held right now (rescinded, used, declined, from an older subscription) is
  never launched on: the tasks of that agent are reported TASK_LOST with reason
  REASON_INVALID_OFFERS, and the agent's other offers are declined.

pymesos' own `killTask` and `reconcileTasks` drop the agent id (pymesos/scheduler.py in 0.3.15);
`_Driver` sends KILL and RECONCILE with it, the way Mesos' v1 API defines those calls
(include/mesos/v1/scheduler/scheduler.proto, `Call.Kill` and `Call.Reconcile`), and KILL with
the kill's grace as `kill_policy` (a worker a scale-down removed gets time to flush).
"""

from __future__ import annotations

import asyncio
import getpass
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymesos  # type: ignore[import-untyped]
import structlog

from common.backoff import Backoff
from core.ports import ResourceManagerEvents, TaskLaunch, TaskStatus
from core.scheduling import Offer
from core.scheduling.offers import merge_ranges

log = structlog.get_logger(__name__)

WEEK = 7 * 24 * 3600.0
REASON_INVALID_OFFERS = "REASON_INVALID_OFFERS"
REASON_MASTER_DISCONNECTED = "REASON_MASTER_DISCONNECTED"

Json = dict[str, Any]


# -- translation: proto JSON <-> core values (pure functions) ----------------------------------


def _value(obj: Any) -> str:
    """`{"value": "x"}` -> "x" (Mesos' ID messages); "" when absent."""
    if isinstance(obj, dict):
        return str(obj.get("value", ""))
    return ""


def _format_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    return "[" + ",".join(f"{lo}-{hi}" for lo, hi in ranges) + "]"


def _attribute_text(attribute: Json) -> str:
    """An Attribute's value as text, the way Mesos prints it (TEXT, SCALAR, RANGES, SET)."""
    kind = attribute.get("type", "TEXT")
    if kind == "SCALAR":
        return f"{float(attribute.get('scalar', {}).get('value', 0.0)):g}"
    if kind == "RANGES":
        ranges = attribute.get("ranges", {}).get("range", [])
        return _format_ranges([(int(r["begin"]), int(r["end"])) for r in ranges])
    if kind == "SET":
        return "{" + ",".join(attribute.get("set", {}).get("item", [])) + "}"
    return str(attribute.get("text", {}).get("value", ""))


def offer_from_mesos(offer: Json, default_network_mbps: float = 1000.0) -> Offer:
    """A Mesos Offer (proto JSON) as a core Offer; scalars of the same name add up."""
    scalars: dict[str, float] = defaultdict(float)
    ports: list[tuple[int, int]] = []
    for resource in offer.get("resources", []):
        name, kind = resource.get("name"), resource.get("type", "SCALAR")
        if kind == "SCALAR":
            scalars[str(name)] += float(resource.get("scalar", {}).get("value", 0.0))
        elif kind == "RANGES" and name == "ports":
            ports.extend(
                (int(r["begin"]), int(r["end"]))
                for r in resource.get("ranges", {}).get("range", [])
            )
    network = scalars.get("network", default_network_mbps)
    attributes = tuple(
        sorted((str(a["name"]), _attribute_text(a)) for a in offer.get("attributes", []))
    )
    return Offer(
        offer_id=_value(offer.get("id")),
        agent_id=_value(offer.get("agent_id")),
        hostname=str(offer.get("hostname", "")),
        cpus=scalars["cpus"],
        mem=scalars["mem"],
        disk=scalars["disk"],
        network_mbps=network,
        ports=tuple(merge_ranges(ports)),
        attributes=attributes,
    )


def status_from_mesos(status: Json) -> TaskStatus:
    """A Mesos TaskStatus (proto JSON) as a core TaskStatus; `uuid` stays as sent (base64)."""
    return TaskStatus(
        task_id=_value(status.get("task_id")),
        state=str(status.get("state", "")),
        agent_id=_value(status.get("agent_id")),
        message=str(status.get("message", "")),
        reason=str(status.get("reason", "")),
        uuid=str(status.get("uuid", "")),
    )


def _scalar(name: str, value: float) -> Json:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def port_ranges(ports: Sequence[int]) -> list[tuple[int, int]]:
    """Assigned ports as the fewest inclusive ranges."""
    return merge_ranges([(p, p) for p in ports])


def task_info(launch: TaskLaunch) -> Json:
    """The TaskInfo for a placed worker: its id is the worker id, on its assigned resources,
    running its command under `/bin/sh -c` with its environment."""
    a = launch.task.assignment
    resources = [_scalar("cpus", a.cpus), _scalar("mem", a.mem)]
    if a.disk > 0:
        resources.append(_scalar("disk", a.disk))
    if a.ports:
        ranges = [{"begin": lo, "end": hi} for lo, hi in port_ranges(a.ports)]
        resources.append({"name": "ports", "type": "RANGES", "ranges": {"range": ranges}})
    variables = [{"name": k, "value": v} for k, v in launch.environment]
    return {
        "name": a.worker_id,
        "task_id": {"value": a.worker_id},
        "agent_id": {"value": a.agent_id},
        "resources": resources,
        "command": {
            "shell": True,
            "value": launch.command,
            "environment": {"variables": variables},
        },
    }


# -- the driver and its callbacks --------------------------------------------------------------


RECONNECT = Backoff(initial=0.1, maximum=2.0)
"""Between attempts to reach a master. pymesos' own starts at 2 s and doubles, sleeping on its
thread where a new leader found in ZooKeeper cannot wake it: most of a Mesos failover was spent
there (6.3 s of it; a Mesos agent starts at 1 s, src/slave/constants.hpp)."""


def kill_policy(grace_secs: float | None) -> Json | None:
    """Mesos' KillPolicy (mesos/v1/mesos.proto) with its DurationInfo grace_period; None
    without a grace (the agent's default applies)."""
    if grace_secs is None:
        return None
    return {"grace_period": {"nanoseconds": round(max(grace_secs, 0.0) * 1e9)}}


class _Driver(pymesos.MesosSchedulerDriver):  # type: ignore[misc]
    """pymesos' driver, with KILL and RECONCILE that keep the agent id (Mesos v1 fields), and
    a shorter reconnect back-off."""

    def _backoff(self, num_conn_retry: int) -> float:
        return RECONNECT.delay(num_conn_retry, random.Random())

    def killTask(  # noqa: N802
        self, task_id: Json, agent_id: Json | None = None, kill_policy: Json | None = None
    ) -> None:
        if not self.connected:
            return
        kill: Json = {"task_id": task_id}
        if agent_id:
            kill["agent_id"] = agent_id
        if kill_policy:
            kill["kill_policy"] = kill_policy
        self._send({"type": "KILL", "framework_id": {"value": self.framework_id}, "kill": kill})

    def reconcileTasks(self, tasks: Sequence[Json]) -> None:  # noqa: N802
        if not self.connected:
            return
        wanted = [{k: t[k] for k in ("task_id", "agent_id") if k in t} for t in tasks]
        self._send(
            {
                "type": "RECONCILE",
                "framework_id": {"value": self.framework_id},
                "reconcile": {"tasks": wanted},
            }
        )


class _Callbacks(pymesos.Scheduler):  # type: ignore[misc]
    """pymesos' Scheduler interface, forwarded to the adapter; never raises."""

    def __init__(self, rm: PymesosResourceManager) -> None:
        self.rm = rm

    def _guard(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("mesos_callback_failed", callback=what)

    def registered(self, driver: Any, framework_id: Json, master_info: Json) -> None:
        self._guard("registered", self.rm._on_registered, _value(framework_id), master_info, False)

    def reregistered(self, driver: Any, master_info: Json) -> None:
        self._guard(
            "reregistered", self.rm._on_registered, str(driver.framework_id), master_info, True
        )

    def disconnected(self, driver: Any) -> None:
        self._guard("disconnected", self.rm._on_disconnected)

    def resourceOffers(self, driver: Any, offers: list[Json]) -> None:  # noqa: N802
        self._guard("resourceOffers", self.rm._on_offers, offers)

    def offerRescinded(self, driver: Any, offer_id: Json) -> None:  # noqa: N802
        self._guard("offerRescinded", self.rm._on_rescinded, _value(offer_id))

    def statusUpdate(self, driver: Any, status: Json) -> None:  # noqa: N802
        self._guard("statusUpdate", self.rm._on_status, status)

    def slaveLost(self, driver: Any, agent_id: Json) -> None:  # noqa: N802
        log.warning("mesos_agent_lost", agent_id=_value(agent_id))

    def executorLost(self, driver: Any, executor_id: Json, agent_id: Json, status: Any) -> None:  # noqa: N802
        log.warning(
            "mesos_executor_lost", executor_id=_value(executor_id), agent_id=_value(agent_id)
        )

    def error(self, driver: Any, message: str) -> None:
        log.error("mesos_error", message=message)


# -- the adapter --------------------------------------------------------------------------------


class PymesosResourceManager:
    """`core.ports.ResourceManager` on pymesos; see the module docstring for threads."""

    def __init__(
        self,
        master: str,
        framework_name: str = "mantis",
        user: str | None = None,
        role: str = "*",
        failover_timeout: float = WEEK,
        *,
        default_network_mbps: float = 1000.0,
        loop: asyncio.AbstractEventLoop | None = None,
        framework_id: str | None = None,
        keep_framework_id: Callable[[str], None] | None = None,
        hostname: str | None = None,
        principal: str | None = None,
        secret: str | None = None,
        checkpoint: bool = True,
        launch_refuse_seconds: float = 5.0,
    ) -> None:
        """`master`: `host:port` or `zk://...`. `framework_id` re-subscribes as that framework and
        `keep_framework_id(id)` is told the id on every (re-)registration, so a master that
        restarts or fails over re-subscribes as the same framework and keeps its tasks. `principal`/`secret`: HTTP Basic credentials when the master
        authenticates frameworks. `launch_refuse_seconds`: the filter on what an ACCEPT leaves of its offers (Mesos'
        default is 5 s before the rest of an agent is offered again)."""
        self.master = master
        self.default_network_mbps = default_network_mbps
        self.loop = loop
        self.keep_framework_id = keep_framework_id
        self.launch_refuse_seconds = launch_refuse_seconds
        self.framework_info: Json = {
            "user": user if user is not None else getpass.getuser(),
            "name": framework_name,
            "role": role,
            "failover_timeout": float(failover_timeout),
            "checkpoint": checkpoint,
        }
        if hostname:
            self.framework_info["hostname"] = hostname
        if framework_id:
            self.framework_info["id"] = {"value": framework_id}
        self._principal, self._secret = principal, secret
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}  # offer id -> agent id, offers we may still use
        self._unacked: dict[tuple[str, str], Json] = {}  # (task id, uuid) -> the status dict
        self._events: ResourceManagerEvents | None = None
        self._driver: Any = None
        self.framework_id: str | None = framework_id
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="mesos-calls")

    # -- ResourceManager ---------------------------------------------------------------------

    def start(self, events: ResourceManagerEvents) -> None:
        """Subscribe; returns at once, `events.registered` follows on SUBSCRIBED."""
        if self._driver is not None:
            raise RuntimeError("already started")
        self._events = events
        self._driver = _Driver(
            _Callbacks(self),
            dict(self.framework_info),
            self.master,
            use_addict=False,
            implicit_acknowledgements=False,
            principal=self._principal,
            secret=self._secret,
        )
        log.info("mesos_starting", master=self.master, framework=self.framework_info["name"])
        self._driver.start()

    def stop(self) -> None:
        """Disconnect but keep the framework (and its tasks) for `failover_timeout`."""
        self._calls.shutdown(wait=True)  # calls already queued still go out
        driver, self._driver = self._driver, None
        if driver is None:
            return
        driver.stop(failover=True)
        driver.join()
        with self._lock:
            self._held.clear()
        log.info("mesos_stopped", framework_id=self.framework_id)

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        self._queue(self._launch, list(tasks))

    def _launch(self, tasks: Sequence[TaskLaunch]) -> None:
        by_agent: dict[str, list[TaskLaunch]] = defaultdict(list)
        for launch in tasks:
            by_agent[launch.task.assignment.agent_id].append(launch)
        for agent_id, group in by_agent.items():
            offer_ids = sorted({o for t in group for o in t.task.assignment.offer_ids})
            infos = [task_info(t) for t in group]
            with self._lock:
                stale = [o for o in offer_ids if self._held.get(o) != agent_id]
                held = [o for o in offer_ids if o not in stale]
                for o in held:
                    del self._held[o]
            if stale:
                log.warning(
                    "mesos_stale_offers",
                    agent_id=agent_id,
                    stale=stale,
                    tasks=[t.task.assignment.worker_id for t in group],
                )
                self._report_lost(
                    group, REASON_INVALID_OFFERS, f"Offers {', '.join(stale)} are no longer valid"
                )
                if held:
                    self._call(
                        "decline",
                        "declineOffer",
                        [{"value": o} for o in held],
                        {"refuse_seconds": 0.0},
                    )
                continue
            ok = self._call(
                "launch",
                "launchTasks",
                [{"value": o} for o in held],
                infos,
                {"refuse_seconds": float(self.launch_refuse_seconds)},
            )
            if ok:
                log.info(
                    "mesos_launch",
                    agent_id=agent_id,
                    offers=held,
                    tasks=[t.task.assignment.worker_id for t in group],
                )
            else:
                self._report_lost(group, REASON_MASTER_DISCONNECTED, "The ACCEPT call failed")

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        with self._lock:
            for o in offer_ids:
                self._held.pop(o, None)
        if offer_ids:
            self._queue(
                self._call,
                "decline",
                "declineOffer",
                [{"value": o} for o in offer_ids],
                {"refuse_seconds": float(refuse_seconds)},
            )

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        """KILL; a grace becomes the call's `kill_policy` (Mesos' Call.Kill.kill_policy: the
        agent sends SIGKILL that long after SIGTERM, instead of its own default)."""
        self._queue(
            self._call,
            "kill",
            "killTask",
            {"value": task_id},
            {"value": agent_id} if agent_id else None,
            kill_policy(grace_secs),
        )

    def revive(self) -> None:
        self._queue(self._call, "revive", "reviveOffers")

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        wanted: list[Json] = []
        for task_id, agent_id in tasks:
            entry: Json = {"task_id": {"value": task_id}}
            if agent_id:
                entry["agent_id"] = {"value": agent_id}
            wanted.append(entry)
        self._queue(self._call, "reconcile", "reconcileTasks", wanted)

    def acknowledge(self, status: TaskStatus) -> None:
        if not status.uuid:
            return  # updates without a uuid (reconciliation, say) must not be acknowledged
        with self._lock:
            original = self._unacked.pop((status.task_id, status.uuid), None)
        if original is None:  # from before a restart, say: rebuild what ACKNOWLEDGE needs
            original = {
                "task_id": {"value": status.task_id},
                "agent_id": {"value": status.agent_id},
                "uuid": status.uuid,
            }
        self._queue(self._call, "acknowledge", "acknowledgeStatusUpdate", original)

    # -- driver calls ---------------------------------------------------------------------------

    def _queue(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the calls thread, after every call queued before it."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("mesos_call_crashed", call=getattr(fn, "__name__", "?"))

        try:
            self._calls.submit(guarded)
        except RuntimeError:  # stopped: nothing more goes out
            log.warning("mesos_stopped_call_dropped", call=getattr(fn, "__name__", "?"))

    def _call(self, what: str, method: str, *args: Any) -> bool:
        """Call the driver now; False (logged) when it is not started or the master refused."""
        driver = self._driver
        if driver is None:
            log.warning("mesos_not_started", call=what)
            return False
        if not driver.connected:  # pymesos would drop the call silently
            log.warning("mesos_not_connected", call=what)
            return False
        try:
            getattr(driver, method)(*args)
        except Exception as e:
            log.warning("mesos_call_failed", call=what, error=str(e))
            return False
        return True

    def _report_lost(self, group: Sequence[TaskLaunch], reason: str, message: str) -> None:
        for t in group:
            a = t.task.assignment
            self._deliver(
                "task_status", TaskStatus(a.worker_id, "TASK_LOST", a.agent_id, message, reason)
            )

    # -- callbacks (pymesos' IO thread) -------------------------------------------------------

    def _deliver(self, method: str, *args: Any) -> None:
        events = self._events
        if events is None:
            return
        fn = getattr(events, method)
        if self.loop is None:
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_registered(self, framework_id: str, master_info: Json, again: bool) -> None:
        with self._lock:
            self._held.clear()  # offers of an earlier subscription are gone
        self.framework_id = framework_id
        self.framework_info["id"] = {"value": framework_id}
        if self.keep_framework_id is not None:
            self.keep_framework_id(framework_id)
        log.info(
            "mesos_registered",
            framework_id=framework_id,
            reregistered=again,
            master=f"{master_info.get('hostname')}:{master_info.get('port')}",
        )
        self._deliver("registered", framework_id)

    def _on_disconnected(self) -> None:
        with self._lock:
            self._held.clear()
        log.warning("mesos_disconnected", master=self.master)

    def _on_offers(self, offers: list[Json]) -> None:
        translated = [offer_from_mesos(o, self.default_network_mbps) for o in offers]
        with self._lock:
            for o in translated:
                self._held[o.offer_id] = o.agent_id
        log.debug("mesos_offers", count=len(translated))
        self._deliver("offers", translated)

    def _on_rescinded(self, offer_id: str) -> None:
        with self._lock:
            self._held.pop(offer_id, None)
        log.info("mesos_offer_rescinded", offer_id=offer_id)
        self._deliver("rescinded", offer_id)

    def _on_status(self, status: Json) -> None:
        translated = status_from_mesos(status)
        if translated.uuid:
            with self._lock:
                self._unacked[(translated.task_id, translated.uuid)] = status
        log.debug(
            "mesos_status",
            task_id=translated.task_id,
            state=translated.state,
            reason=translated.reason,
        )
        self._deliver("task_status", translated)
