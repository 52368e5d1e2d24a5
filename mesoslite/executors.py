"""Executors as the master sees them: ExecutorInfo checks, task groups and executor FAILUREs.

The checks and their messages follow Mesos' src/master/validation.cpp (executor and task group
validation). An executor's own resources (ExecutorInfo.resources) must fit in the offers with
the task that starts it, and are accounted with that task. A task group (LAUNCH_GROUP) is
checked as a whole: if one of its tasks cannot run, every task of the group gets TASK_ERROR,
and it reaches the agent as one RUN_TASK_GROUP. An agent reports an executor's exit with
EXECUTOR_EXITED; the framework gets Mesos' FAILURE event with `executor_id` and its `status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mesoslite import container
from mesoslite.protocol import (
    ERROR,
    REASON_TASK_INVALID,
    InvalidCall,
    id_of,
    sub_message,
    task_status,
)
from mesoslite.resources import ResourceError, Resources

if TYPE_CHECKING:
    from mesoslite.master import MesosliteMaster
    from mesoslite.state import AgentRecord, FrameworkRecord

CUSTOM, DEFAULT = "CUSTOM", "DEFAULT"
EXECUTOR_TYPES = ("UNKNOWN", CUSTOM, DEFAULT)
BOTH_OR_NEITHER = (
    "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
)


def executor_type(info: dict[str, Any]) -> str:
    """CUSTOM or DEFAULT (UNKNOWN, or no type, is CUSTOM as for Mesos' older frameworks)."""
    return DEFAULT if info.get("type") == DEFAULT else CUSTOM


def command_of(tinfo: dict[str, Any]) -> Any:
    """The CommandInfo that runs: the task's, else its executor's."""
    if "command" in tinfo or not isinstance(tinfo.get("executor"), dict):
        return tinfo.get("command")
    return tinfo["executor"].get("command")


def problem(fw_id: str, agent: AgentRecord, info: Any, group: bool = False) -> str | None:
    """Why this ExecutorInfo cannot run on `agent` for framework `fw_id`, or None."""
    if not isinstance(info, dict):
        return "'ExecutorInfo' must be an object"
    eid = (info.get("executor_id") or {}).get("value")
    if not isinstance(eid, str) or not eid:
        return "Expecting 'ExecutorInfo.executor_id' to be present"
    if "/" in eid or eid in (".", "..") or any(c.isspace() for c in eid):
        return f"Executor ID {eid!r} must not contain '/' or whitespace, nor be '.' or '..'"
    actual = (info.get("framework_id") or {}).get("value", fw_id)
    if actual != fw_id:
        return f"ExecutorInfo has an invalid FrameworkID (Actual: {actual} vs Expected: {fw_id})"
    if info.get("type", "UNKNOWN") not in EXECUTOR_TYPES:
        return f"Unknown executor type {info.get('type')!r}"
    kind = executor_type(info)
    if kind == CUSTOM and not isinstance(info.get("command"), dict):
        return "'ExecutorInfo.command' must be set for 'CUSTOM' executor"
    if kind == DEFAULT and "command" in info:
        return "'ExecutorInfo.command' must not be set for 'DEFAULT' executor"
    if kind == DEFAULT and not group:
        return "'DEFAULT' executor can only launch task groups (LAUNCH_GROUP)"
    found = container.problem(info.get("container"), "ExecutorInfo.container")
    if found is not None:
        return found
    try:
        Resources.from_mesos(info.get("resources") or [])
    except (ResourceError, KeyError, TypeError) as e:
        return f"Executor uses invalid resources: {e}"
    existing = running_info(agent, fw_id, eid)
    if existing is not None and _comparable(existing) != _comparable(info):
        return (
            "Task has invalid ExecutorInfo (existing ExecutorInfo with same ExecutorID is not"
            " compatible)"
        )
    return None


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "framework_id"}


def running_info(agent: AgentRecord, fw_id: str, eid: str) -> dict[str, Any] | None:
    """The ExecutorInfo of the executor `eid` if a live task of the framework runs in it."""
    for (fid, _), task in agent.tasks.items():
        executor = task.info.get("executor")
        if (
            fid == fw_id
            and not task.terminal
            and isinstance(executor, dict)
            and executor.get("executor_id", {}).get("value") == eid
        ):
            return executor
    return None


def executor_resources(agent: AgentRecord, fw_id: str, info: dict[str, Any]) -> Resources:
    """The executor's resources if it has to start for this task, else nothing."""
    eid = info["executor_id"]["value"]
    if running_info(agent, fw_id, eid) is not None:
        return Resources()
    return Resources.from_mesos(info.get("resources") or [])


def task_groups(accept: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The (ExecutorInfo, tasks) of each LAUNCH_GROUP in an ACCEPT (wire.parse_accept has
    checked the tasks' shape); an operation without an executor is a 400."""
    groups = []
    for i, op in enumerate(accept.get("operations") or []):
        if op.get("type") != "LAUNCH_GROUP":
            continue
        launch = sub_message(op, "launch_group")
        if not isinstance(launch.get("executor"), dict):
            raise InvalidCall(
                f"Expecting 'accept.operations[{i}].launch_group.executor' to be present"
            )
        groups.append((launch["executor"], list(launch.get("task_group", {}).get("tasks") or [])))
    return groups


def launch_group(
    master: MesosliteMaster,
    fw: FrameworkRecord,
    agent: AgentRecord,
    executor: dict[str, Any],
    tasks: list[dict[str, Any]],
    remaining: Resources,
    seen: set[str],
) -> Resources:
    """Launch one task group from `remaining` (the offers' resources); what is left of them."""
    found = problem(fw.id, agent, executor, group=True) or (
        None if tasks else "Task group cannot be empty"
    )
    needed = Resources()
    if found is None:
        needed = executor_resources(agent, fw.id, executor)
    group_ids = {t["task_id"]["value"] for t in tasks}
    for tinfo in tasks:
        if found is not None:
            break
        task_id = tinfo["task_id"]["value"]
        if "executor" in tinfo:
            found = f"Task '{task_id}' in a task group must not set 'TaskInfo.executor'"
            break
        if executor_type(executor) == DEFAULT and not isinstance(tinfo.get("command"), dict):
            found = f"Task '{task_id}' run by the 'DEFAULT' executor needs 'TaskInfo.command'"
            break
        found = master._task_problem(fw, agent, tinfo, seen | (group_ids - {task_id}))
        if found is not None:
            found = f"Task '{task_id}' is invalid: {found}"
            break
        needed = needed + Resources.from_mesos(tinfo.get("resources") or [])
    if found is None and not remaining.contains(needed):
        found = f"Task group uses more resources {needed} than available {remaining}"
    seen |= group_ids
    if found is not None:
        for tinfo in tasks:
            master._forward(
                fw,
                task_status(
                    tinfo["task_id"]["value"],
                    ERROR,
                    agent_id=agent.id,
                    reason=REASON_TASK_INVALID,
                    message=found,
                ),
                from_agent=False,
            )
        return remaining
    first_extra = executor_resources(agent, fw.id, executor)
    infos = []
    for tinfo in tasks:
        info = {**tinfo, "executor": executor}  # as Mesos' master records a group's task
        r = Resources.from_mesos(tinfo.get("resources") or []) + first_extra
        first_extra = Resources()
        master._launch(fw, agent, info, r, send=False)
        infos.append(tinfo)
    if agent.stream is not None:
        agent.stream.send(
            {
                "type": "RUN_TASK_GROUP",
                "run_task_group": {
                    "framework_info": fw.info,
                    "executor": executor,
                    "task_group": {"tasks": infos},
                },
            }
        )
    return remaining - needed


def shutdown(master: MesosliteMaster, fw: FrameworkRecord, call: dict[str, Any]) -> bool:
    """A scheduler's SHUTDOWN of an executor it runs on an agent: True if one was found."""
    shutdown_call = sub_message(call, "shutdown")
    eid = id_of(shutdown_call, "executor_id", "shutdown")
    aid = id_of(shutdown_call, "agent_id", "shutdown")
    agent = master.agents.get(aid)
    if agent is None or eid not in fw.executors.get(aid, {}):  # idle ones too, as in Mesos
        return False
    if agent.stream is not None:
        agent.stream.send(
            {
                "type": "SHUTDOWN_EXECUTOR",
                "shutdown_executor": {
                    "framework_id": {"value": fw.id},
                    "executor_id": {"value": eid},
                },
            }
        )
    return True


def exited(master: MesosliteMaster, agent: AgentRecord, call: dict[str, Any]) -> None:
    """EXECUTOR_EXITED from an agent: FAILURE {agent_id, executor_id, status} to the framework,
    as Mesos' master sends it on ExitedExecutorMessage (Master::exitedExecutor)."""
    body = sub_message(call, "executor_exited")
    fid = id_of(body, "framework_id", "executor_exited")
    eid = id_of(body, "executor_id", "executor_exited")
    status = body.get("status")
    if status is not None and not isinstance(status, int):
        raise InvalidCall("'executor_exited.status' must be an integer (a wait status)")
    failure: dict[str, Any] = {"agent_id": {"value": agent.id}, "executor_id": {"value": eid}}
    if status is not None:  # absent when the executor never started
        failure["status"] = status
    fw = master.frameworks.get(fid)
    if fw is not None:
        fw.remove_executor(agent.id, eid)
        fw.send({"type": "FAILURE", "failure": failure})
