"""The election's pure parts: candidate order, the description's fields, the election of a master
that runs alone."""

from __future__ import annotations

from adapters.zk.election import sequence
from service.election import SingleNodeElection, master_description

DESCRIPTION = master_description(
    hostname="m1",
    host_ip="127.0.0.1",
    api_port=8100,
    url="http://127.0.0.1:8100",
    api_status_uri="api/v1/jobs/actions/postJobStatus",
    create_time_ms=1_700_000_000_000,
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def became_leader(self, epoch: int) -> None:
        self.events.append(("leader", epoch))

    def lost_leadership(self, reason: str) -> None:
        self.events.append(("lost", reason))


def test_candidates_are_ordered_by_their_sequence_not_by_their_prefix() -> None:
    names = ["_c_ffff-latch-0000000010", "_c_0000-latch-0000000011", "_c_9999-latch-0000000002"]
    assert sorted(names, key=sequence) == [names[2], names[0], names[1]]


def test_the_description_has_mantis_master_description_fields_and_the_url() -> None:
    assert set(DESCRIPTION) == {
        "hostname",
        "hostIP",
        "apiPort",
        "schedInfoPort",
        "apiPortV2",
        "apiStatusUri",
        "consolePort",
        "createTime",
        "url",
    }
    assert DESCRIPTION["apiPort"] == DESCRIPTION["apiPortV2"] == 8100


def test_a_master_alone_leads_from_start_in_epoch_1_until_it_stops() -> None:
    election, events = SingleNodeElection(DESCRIPTION), Recorder()
    assert election.leader() is None
    election.start(events)
    assert events.events == [("leader", 1)]
    assert election.leader() == {**DESCRIPTION, "epoch": 1}
    election.stop()
    assert election.leader() is None and events.events == [("leader", 1)]
