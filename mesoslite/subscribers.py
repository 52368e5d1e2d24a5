"""The operator API's event streams (`SUBSCRIBE` on `/api/v1`): the master tells this fan-out
what changed and every subscriber gets it as a master.proto Event — TASK_ADDED, TASK_UPDATED,
AGENT_ADDED, AGENT_REMOVED, FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and HEARTBEAT,
each with its payload under the lower-cased type, as Mesos' master sends them
(src/master/master.cpp, Master::Subscribers::send)."""

from __future__ import annotations

from typing import Any

from mesoslite import v1
from mesoslite.state import AgentRecord, FrameworkRecord, TaskRecord
from mesoslite.streams import EventStream


class OperatorSubscribers:
    def __init__(self) -> None:
        self.streams: list[EventStream] = []

    def add(self, stream: EventStream) -> None:
        self.streams.append(stream)

    def remove(self, stream: EventStream) -> None:
        stream.close()
        if stream in self.streams:
            self.streams.remove(stream)

    def close(self) -> None:
        for stream in list(self.streams):
            self.remove(stream)

    def send(self, event: dict[str, Any]) -> None:
        if not self.streams:
            return
        for stream in list(self.streams):
            if stream.closed:
                self.streams.remove(stream)
            else:
                stream.send(event)

    def heartbeat(self) -> None:
        self.send({"type": "HEARTBEAT"})

    def task_added(self, task: TaskRecord, fw: FrameworkRecord) -> None:
        if self.streams:
            self.send({"type": "TASK_ADDED", "task_added": {"task": v1.task(task, fw)}})

    def task_updated(self, task: TaskRecord, status: dict[str, Any]) -> None:
        if self.streams:
            self.send(
                {
                    "type": "TASK_UPDATED",
                    "task_updated": {
                        "framework_id": {"value": task.framework_id},
                        "status": status,
                        "state": task.state,
                    },
                }
            )

    def agent_added(self, agent: AgentRecord) -> None:
        if self.streams:
            self.send({"type": "AGENT_ADDED", "agent_added": {"agent": v1.agent(agent)}})

    def agent_removed(self, agent_id: str) -> None:
        self.send({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": agent_id}}})

    def framework_added(self, fw: FrameworkRecord) -> None:
        if self.streams:
            self.send(
                {"type": "FRAMEWORK_ADDED", "framework_added": {"framework": v1.framework(fw)}}
            )

    def framework_updated(self, fw: FrameworkRecord) -> None:
        if self.streams:
            self.send(
                {"type": "FRAMEWORK_UPDATED", "framework_updated": {"framework": v1.framework(fw)}}
            )

    def framework_removed(self, fw: FrameworkRecord) -> None:
        self.send({"type": "FRAMEWORK_REMOVED", "framework_removed": {"framework_info": fw.info}})
