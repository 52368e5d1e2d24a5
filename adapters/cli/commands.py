r"""`mantis cluster|job|artifact ...`: the client commands, over the master's REST API.

Each command is one call (or a few) of `MantisClient`. Every action takes `--url` (default
$MANTIS_URL, else the local `mantis up` master) or `--zk` (default $MANTIS_ZK: the leader of
`mantis master --zk` masters, found in ZooKeeper), `--token` (default $MANTIS_API_TOKEN),
`--user` (default $USER) and `--json`. Output is for people by default (aligned tables for
lists, the key facts for one cluster or job); `--json` prints the API's JSON instead (nothing
for calls that answer nothing, e.g. delete or kill). A rejected call is one line on stderr
with exit status 1 (main.py prints it); a malformed argument is a usage error, status 2.

Names, reasons and messages come from whoever submitted or ran a job, so every text printed
has its control characters escaped (``\x1b`` as the four characters ``\x1b``): a job name or
a worker's error message cannot move the cursor, retitle or clear the terminal. JSON output
escapes what JSON leaves raw (DEL, the C1 controls, bidirectional overrides) as ``\uXXXX``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from adapters.cli.client import (
    DEFAULT_DATA_DIR,
    DEFAULT_URL,
    ApiError,
    Json,
    MantisClient,
    cluster_definition,
    find_leader,
    parse_key_value,
    parse_stages,
    updated_definition,
)
from common.master_leader import DEFAULT_ZK_ROOT
from core.errors import CommandRejected

# Control characters: C0 (newlines too: one record, one line), DEL, C1, and the Unicode
# bidirectional embeddings, overrides and isolates, which reorder what a terminal shows.
_BIDI = (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL = (*range(0x20), 0x7F, *range(0x80, 0xA0))
_ESCAPES = (
    {c: f"\\x{c:02x}" for c in _CONTROL}
    | {c: f"\\u{c:04x}" for c in _BIDI}
    | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
)
# Inside JSON strings (orjson escapes C0 itself): \uXXXX keeps the document valid JSON.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), *_BIDI)}
FAILED_REASONS = frozenset({"Error", "Lost"})
PLACED = frozenset({"Launched", "StartInitiated", "Started"})
ENDED = frozenset({"Failed", "Completed", "Terminating_abnormal", "Terminating_normal"})
DEFAULT_WAIT_SECS = 120.0
POLL_SECS = 0.25

Action = Callable[[MantisClient, argparse.Namespace], int]


# ---------------------------------------------------------------------- argument types


def _stages(text: str) -> dict[int, int]:
    try:
        return parse_stages(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _key_value(text: str) -> tuple[str, str]:
    try:
        return parse_key_value(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _number(minimum: float, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    return convert


def _count(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        return int(_number(minimum, int)(text))

    return convert


# ---------------------------------------------------------------------- parsers


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no $USER and no password entry (e.g. in a container)
        return "anonymous"


def add_master_location(parser: argparse.ArgumentParser) -> None:
    """--url, --zk and --zk-root: where the master is (every command that talks to one)."""
    env = os.environ
    parser.add_argument(
        "--url",
        default=env.get("MANTIS_URL") or DEFAULT_URL,
        help="the master's API (default: $MANTIS_URL, else %(default)s)",
    )
    parser.add_argument(
        "--zk",
        default=env.get("MANTIS_ZK", ""),
        metavar="HOST:PORT[,HOST:PORT][/CHROOT]",
        help="find the leading master in this ZooKeeper instead of --url (default: $MANTIS_ZK)",
    )
    parser.add_argument(
        "--zk-root",
        default=env.get("MANTIS_ZK_ROOT") or DEFAULT_ZK_ROOT,
        help="the masters' znode under the chroot (default: $MANTIS_ZK_ROOT, else %(default)s)",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    add_master_location(parser)
    parser.add_argument(
        "--token",
        default=env.get("MANTIS_API_TOKEN"),
        help="bearer token for changes (default: $MANTIS_API_TOKEN, else for a "
        "local master DATA_DIR/api-token)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the `mantis up` data folder holding api-token (default: %(default)s)",
    )
    parser.add_argument(
        "--user",
        default=_default_user(),
        help="who does this, for the master's records (default: $USER)",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _actions(parser: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
    """A function that adds one action (`create`, `list`, ...) under `parser`."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help: str, run: Action) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        _add_common(p)
        p.set_defaults(action_run=run)
        return p

    return add


def _add_definition_options(p: argparse.ArgumentParser, update: bool) -> None:
    keep = " (default: as now)" if update else ""
    p.add_argument(
        "--artifact",
        required=not update,
        help="a URL, a local path (anything with a '/') or an uploaded artifact's name" + keep,
    )
    p.add_argument(
        "--stages",
        type=_stages,
        default=None if update else {1: 1},
        metavar="N:W,...",
        help="workers per stage, e.g. 1:2,2:1" + (keep or " (default: 1:1)"),
    )
    p.add_argument(
        "--cpus",
        type=_number(0.01),
        default=None if update else 1.0,
        help="CPU cores per worker" + (keep or " (default: 1)"),
    )
    p.add_argument(
        "--memory",
        type=_number(1),
        default=None if update else 512.0,
        metavar="MB",
        help="memory per worker, MB" + (keep or " (default: 512)"),
    )
    p.add_argument(
        "--scalable",
        action="store_true",
        default=None if update else False,
        help="let every stage be scaled (job scale)",
    )
    p.add_argument(
        "--param",
        type=_key_value,
        action="append",
        default=[],
        metavar="K=V",
        help="a job parameter (repeatable)" + (", added or replaced" if update else ""),
    )
    p.add_argument(
        "--label",
        type=_key_value,
        action="append",
        default=[],
        metavar="K=V",
        help="a label (repeatable)" + (", added or replaced" if update else ""),
    )
    p.add_argument("--version", help="the new version's name (default: a timestamp)")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    add = _actions(parser)
    p = add("create", "create a job cluster", _cluster_create)
    p.add_argument("name")
    _add_definition_options(p, update=False)
    p = add("list", "list job clusters", _cluster_list)
    p.add_argument("--matching", metavar="RE", help="only names matching this regex")
    add("get", "show a job cluster", _cluster_get).add_argument("name")
    p = add("update", "a new version of a job cluster: what is not given stays", _cluster_update)
    p.add_argument("name")
    _add_definition_options(p, update=True)
    add("delete", "delete a job cluster", _cluster_delete).add_argument("name")
    add("enable", "accept submissions again", _cluster_enable).add_argument("name")
    add("disable", "kill the cluster's jobs and refuse submissions", _cluster_disable).add_argument(
        "name"
    )


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    add = _actions(parser)
    p = add("submit", "submit a job of a job cluster", _job_submit)
    p.add_argument("cluster")
    p.add_argument(
        "--param",
        type=_key_value,
        action="append",
        default=[],
        metavar="K=V",
        help="a job parameter (repeatable; default: the cluster's)",
    )
    p.add_argument(
        "--wait", action="store_true", help="show the workers' progress until all are Started"
    )
    p.add_argument(
        "--timeout",
        type=_number(0),
        default=DEFAULT_WAIT_SECS,
        metavar="S",
        help="with --wait: give up after S seconds (default: %(default)g)",
    )
    p = add("list", "list jobs, newest first", _job_list)
    p.add_argument("--cluster", help="only this cluster's jobs")
    p.add_argument("--all", action="store_true", help="also jobs that ended")
    add("get", "show a job and its workers", _job_get).add_argument("job_id", metavar="ID")
    p = add("kill", "kill a job", _job_kill)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--reason", required=True)
    p = add("scale", "set a stage's number of workers", _job_scale)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--stage", type=_count(1), required=True, metavar="N")
    p.add_argument("--workers", type=_count(1), required=True, metavar="K")
    p.add_argument("--reason", default="")
    p = add("resubmit-worker", "replace a worker by a new one", _job_resubmit_worker)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--worker-number", type=_count(0), required=True, metavar="N")
    p.add_argument("--reason", default="")
    p = add("connect", "print a job's output, one JSON line per event (Ctrl-C ends)", _job_connect)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?", metavar="ID")
    target.add_argument("--cluster", help="the output of the cluster's newest job")
    p.add_argument("--client-id", help="connections with one id share the output")
    p.add_argument(
        "--sample", type=_number(0.05), metavar="S", help="only the newest event every S seconds"
    )
    p.add_argument("--limit", type=_count(1), metavar="N", help="stop after N events")


def add_artifact_arguments(parser: argparse.ArgumentParser) -> None:
    add = _actions(parser)
    p = add("upload", "upload a job artifact (.py or .zip)", _artifact_upload)
    p.add_argument("path")
    p.add_argument("--name", help="the artifact's name (default: the file's)")
    add("list", "list uploaded artifacts", _artifact_list)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action with a client for `--url` (or the leader in `--zk`)/`--token`."""
    action: Action = args.action_run
    url = find_leader(args.zk, args.zk_root) if args.zk else args.url
    client = MantisClient(url, args.token, data_dir=args.data_dir)
    try:
        return action(client, args)
    except ApiError as e:
        hint = " (give --token or set $MANTIS_API_TOKEN)" if e.status == 401 else ""
        raise ApiError(e.status, escape(e.message) + hint) from None
    except CommandRejected as e:
        raise CommandRejected(escape(e.message)) from None


# ---------------------------------------------------------------------- output


def escape(text: object) -> str:
    """`text` with its control characters shown as escapes, safe to print on a terminal."""
    return str(text).translate(_ESCAPES)


def json_line(value: object, option: int = 0) -> str:
    """`value` as JSON with nothing a terminal acts on, ending with a newline."""
    return orjson.dumps(value, option=option).decode().translate(_JSON_ESCAPES) + "\n"


def _print_json(value: object) -> None:
    sys.stdout.write(json_line(value, orjson.OPT_INDENT_2))


def _say(args: argparse.Namespace, line: str, answer: object = None) -> int:
    """A one-line report for people, or the API's answer (if any) with --json."""
    if not args.json:
        sys.stdout.write(escape(line) + "\n")
    elif answer is not None:
        _print_json(answer)
    return 0


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [list(header)] + [[escape(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in cells
    )


def _facts(pairs: Sequence[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "".join(f"{k.ljust(width)}  {escape(v)}\n" for k, v in pairs)


def when(ms: object) -> str:
    """Epoch milliseconds as UTC time; '-' when unset (-1)."""
    if not isinstance(ms, int | float) or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pairs(items: Iterable[Json]) -> str:
    return ", ".join(f"{i['name']}={i['value']}" for i in items) or "-"


def _machine(m: Json) -> str:
    return f"{m['cpuCores']:g} cpu, {m['memoryMB']:g} MB"


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------- clusters


def _definition_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "stages": args.stages,
        "cpus": args.cpus,
        "memory": args.memory,
        "scalable": args.scalable,
        "parameters": dict(args.param),
        "labels": dict(args.label),
        "version": args.version,
    }


def _cluster_create(client: MantisClient, args: argparse.Namespace) -> int:
    definition = cluster_definition(args.name, args.artifact, args.user, **_definition_args(args))
    cluster = client.create_cluster(definition)
    return _say(
        args, f"created job cluster {cluster['name']} (version {cluster['latestVersion']})", cluster
    )


def _cluster_list(client: MantisClient, args: argparse.Namespace) -> int:
    clusters = client.list_clusters(args.matching)
    if args.json:
        _print_json(clusters)
    elif not clusters:
        sys.stdout.write("no job clusters\n")
    else:
        rows = []
        for c in clusters:
            jar = _latest(c)
            stages = jar.get("schedulingInfo", {}).get("stages", {})
            workers = ",".join(f"{n}:{s['numberOfInstances']}" for n, s in sorted(stages.items()))
            rows.append(
                [
                    c["name"],
                    c["latestVersion"],
                    jar.get("artifactName", "-"),
                    workers,
                    c["lastJobCount"],
                    "disabled" if c["disabled"] else "enabled",
                ]
            )
        sys.stdout.write(table(["NAME", "VERSION", "ARTIFACT", "STAGES", "JOBS", "STATE"], rows))
    return 0


def _latest(cluster: Json) -> Json:
    jars = [
        j for j in cluster.get("jars") or [] if j.get("version") == cluster.get("latestVersion")
    ]
    return jars[-1] if jars else {}


def _cluster_get(client: MantisClient, args: argparse.Namespace) -> int:
    c = client.get_cluster(args.name)
    if args.json:
        _print_json(c)
        return 0
    jar = _latest(c)
    stages = jar.get("schedulingInfo", {}).get("stages", {})
    sys.stdout.write(
        _facts(
            [
                ("name", c["name"]),
                ("version", c["latestVersion"]),
                ("artifact", jar.get("url") or "-"),
                *(
                    (
                        f"stage {n}",
                        f"{_workers(s['numberOfInstances'])} x "
                        f"{_machine(s['machineDefinition'])}"
                        + (", scalable" if s.get("scalable") else ""),
                    )
                    for n, s in sorted(stages.items(), key=lambda kv: int(kv[0]))
                ),
                ("parameters", _pairs(c.get("parameters") or [])),
                ("labels", _pairs(c.get("labels") or [])),
                ("user", c.get("user") or "-"),
                ("jobs", f"{c['lastJobCount']} submitted"),
                ("state", "disabled" if c["disabled"] else "enabled"),
            ]
        )
    )
    return 0


def _cluster_update(client: MantisClient, args: argparse.Namespace) -> int:
    current = client.get_cluster(args.name)
    definition = updated_definition(
        current, args.user, artifact=args.artifact, **_definition_args(args)
    )
    cluster = client.update_cluster(args.name, definition)
    return _say(
        args, f"updated job cluster {args.name} to version {cluster['latestVersion']}", cluster
    )


def _cluster_delete(client: MantisClient, args: argparse.Namespace) -> int:
    client.delete_cluster(args.name, args.user)
    return _say(args, f"deleted job cluster {args.name}")


def _cluster_enable(client: MantisClient, args: argparse.Namespace) -> int:
    client.enable_cluster(args.name, args.user)
    return _say(args, f"enabled job cluster {args.name}")


def _cluster_disable(client: MantisClient, args: argparse.Namespace) -> int:
    client.disable_cluster(args.name, args.user)
    return _say(args, f"disabled job cluster {args.name}")


# ---------------------------------------------------------------------- jobs


def _job_submit(client: MantisClient, args: argparse.Namespace) -> int:
    job = client.submit_job(args.cluster, args.user, parameters=dict(args.param) or None)
    jid = job["jobMetadata"]["jobId"]
    out = sys.stderr if args.json else sys.stdout
    out.write(escape(f"submitted job {jid}") + "\n")
    if args.wait:
        job = wait_until_started(client, jid, args.timeout, out)
    if args.json:
        _print_json(job)
    return 0


def progress(job: Json) -> tuple[int, int, int]:
    """(workers placed on an agent, workers Started, workers wanted) of a job view."""
    states = [w["state"] for w in job.get("workerMetadataList") or []]
    wanted = sum(int(s["numWorkers"]) for s in job.get("stageMetadataList") or [])
    return sum(s in PLACED for s in states), states.count("Started"), wanted


def wait_until_started(
    client: MantisClient,
    jid: str,
    timeout: float,
    out: Any,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Json:
    """Poll the job until every worker is Started, writing a line whenever that moves on and
    why a worker is not placed yet (the matcher's reason); the job's view then. A worker
    that fails (its replacement says how), a job that ends first, or a timeout is an error
    naming what went wrong."""
    deadline = clock() + timeout
    last, shown = "", set()  # the last progress line; the pending reasons shown
    while True:
        job = client.get_job(jid)
        meta = job["jobMetadata"]
        placed, started, wanted = progress(job)
        workers = job.get("workerMetadataList") or []
        line = f"{jid}: {placed}/{wanted} workers placed, {started}/{wanted} started"
        lines = [line] if line != last else []
        last = line
        lines += [
            n for n in (f"{jid}: {note}" for note in pending_notes(workers)) if n not in shown
        ]
        shown.update(lines)
        out.write("".join(escape(line) + "\n" for line in lines))
        out.flush()
        if meta["state"] in ENDED:
            why = f": {meta['message']}" if meta.get("message") else ""
            notes = "".join(f"; {n}" for n in ended_notes(workers))
            raise CommandRejected(f"job {jid} ended {meta['state']}{why}{notes}")
        failed = next((w for w in workers if w.get("resubmitReason") in FAILED_REASONS), None)
        if failed is not None:
            raise CommandRejected(
                f"job {jid}: worker {failed['workerIndex']} of stage {failed['stageNum']} "
                f"(number {failed['resubmitOf']}) failed ({failed['resubmitReason']}): "
                f"{failed.get('resubmitMessage') or 'no message'}"
            )
        if wanted and started == wanted:
            out.write(escape(f"{jid}: all {_workers(wanted)} Started") + "\n")
            return job
        if clock() >= deadline:
            raise TimeoutError(f"job {jid}: {started}/{wanted} workers Started after {timeout:g} s")
        sleep(POLL_SECS)


def pending_notes(workers: Sequence[Json]) -> list[str]:
    """Why a pending worker is not placed yet (the last offer round's answer)."""
    return [
        f"worker {w['workerIndex']} of stage {w['stageNum']} not placed: {w['pendingReason']}"
        for w in workers
        if w["state"] == "Accepted" and w.get("pendingReason")
    ]


def ended_notes(workers: Sequence[Json]) -> list[str]:
    """How a current worker ended, and how the worker it replaces ended."""
    notes = []
    for w in workers:
        name = f"worker {w['workerIndex']} of stage {w['stageNum']}"
        if w["state"] in ("Failed", "Completed") and w.get("message"):
            notes.append(
                f"{name} (number {w['workerNumber']}) {w['state']} ({w['reason']}): {w['message']}"
            )
        if w.get("resubmitReason"):
            notes.append(
                f"{name} replaces number {w['resubmitOf']}, which ended "
                f"({w['resubmitReason']}): {w.get('resubmitMessage') or '-'}"
            )
    return notes


def _job_list(client: MantisClient, args: argparse.Namespace) -> int:
    jobs = client.list_jobs(args.cluster, active_only=not args.all)
    if args.json:
        _print_json(jobs)
    elif not jobs:
        sys.stdout.write("no jobs\n")
    else:
        rows = []
        for job in jobs:
            meta = job["jobMetadata"]
            _, started, wanted = progress(job)
            rows.append(
                [
                    meta["jobId"],
                    meta["state"],
                    f"{started}/{wanted}",
                    when(meta["submittedAt"]),
                    meta["user"],
                ]
            )
        sys.stdout.write(table(["JOB ID", "STATE", "STARTED", "SUBMITTED (UTC)", "USER"], rows))
    return 0


def _job_get(client: MantisClient, args: argparse.Namespace) -> int:
    job = client.get_job(args.job_id)
    if args.json:
        _print_json(job)
        return 0
    meta = job["jobMetadata"]
    state = meta["state"] + (f" ({meta['reason']})" if meta.get("reason") else "")
    sys.stdout.write(
        _facts(
            [
                ("job", meta["jobId"]),
                ("cluster", meta["name"]),
                ("state", state + (f": {meta['message']}" if meta.get("message") else "")),
                ("artifact", meta.get("jarUrl") or "-"),
                ("version", job.get("version") or "-"),
                ("user", meta["user"]),
                ("submitted", when(meta["submittedAt"])),
                ("started", when(meta["startedAt"])),
                ("ended", when(meta["endedAt"])),
                ("parameters", _pairs(meta.get("parameters") or [])),
                *(
                    (
                        f"stage {s['stageNum']}",
                        f"{_workers(s['numWorkers'])} x "
                        f"{_machine(s['machineDefinition'])}"
                        + (", scalable" if s.get("scalable") else ""),
                    )
                    for s in job.get("stageMetadataList") or []
                ),
            ]
        )
    )
    workers = job.get("workerMetadataList") or []
    if workers:
        sys.stdout.write(
            "\n"
            + table(
                ["STAGE", "INDEX", "NUMBER", "STATE", "HOST", "PORTS"],
                (
                    [
                        w["stageNum"],
                        w["workerIndex"],
                        w["workerNumber"],
                        w["state"],
                        w.get("slave") or "-",
                        ",".join(str(p) for p in w.get("ports") or []) or "-",
                    ]
                    for w in workers
                ),
            )
        )
        notes = pending_notes(workers) + ended_notes(workers)
        if notes:
            sys.stdout.write("\n" + "".join(escape(n) + "\n" for n in notes))
    return 0


def _job_kill(client: MantisClient, args: argparse.Namespace) -> int:
    client.kill_job(args.job_id, args.user, args.reason)
    return _say(args, f"killing job {args.job_id}")


def _job_scale(client: MantisClient, args: argparse.Namespace) -> int:
    client.scale_stage(args.job_id, args.stage, args.workers, args.user, args.reason)
    return _say(args, f"scaled stage {args.stage} of job {args.job_id} to {_workers(args.workers)}")


def _job_resubmit_worker(client: MantisClient, args: argparse.Namespace) -> int:
    client.resubmit_worker(args.job_id, args.worker_number, args.user, args.reason)
    return _say(args, f"resubmitted worker {args.worker_number} of job {args.job_id}")


def _job_connect(client: MantisClient, args: argparse.Namespace) -> int:
    params = {"clientId": args.client_id} if args.client_id else {}
    if args.sample is not None:
        params["sample"] = f"{args.sample:g}"
    events = client.connect(args.job_id, cluster=args.cluster, params=params)
    count = 0
    try:
        for event in events:
            sys.stdout.write(json_line(event))
            sys.stdout.flush()
            count += 1
            if args.limit is not None and count >= args.limit:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one stops watching
    finally:
        events.close()
    return 0


# ---------------------------------------------------------------------- artifacts


def _artifact_upload(client: MantisClient, args: argparse.Namespace) -> int:
    stored = client.upload_artifact(args.path, args.name)
    return _say(
        args,
        f"uploaded {stored['name']} ({stored['size']} bytes, "
        f"sha256 {stored['sha256'][:12]}...): {stored['url']}",
        stored,
    )


def _artifact_list(client: MantisClient, args: argparse.Namespace) -> int:
    artifacts = client.list_artifacts()
    if args.json:
        _print_json(artifacts)
    elif not artifacts:
        sys.stdout.write("no artifacts\n")
    else:
        rows = ([a["name"], a["size"], when(a["createdAt"])] for a in artifacts)
        sys.stdout.write(table(["NAME", "BYTES", "UPLOADED (UTC)"], rows))
    return 0
