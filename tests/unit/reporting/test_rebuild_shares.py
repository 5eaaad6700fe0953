"""How a rebuild splits the partitions between its worker processes."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from ipmg_reporting.projections import Model, SourceProgress
from ipmg_reporting.rebuild import (
    EVENTS_PER_WORKER_AT_LEAST,
    PARTS_PER_SHARE,
    UNEVEN_AT_MOST,
    WHOLE,
    FoldedShare,
    RebuildReport,
    StreamPart,
    split_partitions,
    usable_cpus,
    workers_for,
)

lags_of = st.dictionaries(
    st.builds(
        TopicPartition, st.sampled_from(["m.events", "r.events", "n.events"]), st.integers(0, 5)
    ),
    st.integers(0, 10**6),
    max_size=18,
)


ROUNDING = 1e-6


def records_of(share: dict[TopicPartition, StreamPart], lags: dict[TopicPartition, int]) -> float:
    return sum(lags[tp] * len(part.indexes) / part.count for tp, part in share.items())


@given(lags_of, st.integers(1, 8))
def test_every_partition_is_whole_in_one_share_or_its_parts_each_in_one(
    lags: dict[TopicPartition, int], workers: int
) -> None:
    shares = split_partitions(lags, workers)

    assert all(share for share in shares) or shares == [{}]
    assert len(shares) <= max(1, workers)
    for tp in lags:
        parts = [share[tp] for share in shares if tp in share]
        if parts != [WHOLE]:
            assert len(parts) > 1
            assert {part.count for part in parts} == {workers * PARTS_PER_SHARE}
            taken = sorted(index for part in parts for index in part.indexes)
            assert taken == list(range(workers * PARTS_PER_SHARE))


@given(lags_of, st.integers(2, 8))
def test_shares_are_about_even(lags: dict[TopicPartition, int], workers: int) -> None:
    shares = split_partitions(lags, workers)
    records = [records_of(share, lags) for share in shares]

    # Every partition or part goes to the lightest share, so no two differ by more than one
    # of them. (Parts are fractions: a hair of rounding is allowed.)
    assert max(records) - min(records) <= max(lags.values(), default=0) + ROUNDING
    if any(part is not WHOLE for share in shares for part in share.values()):
        even = sum(lags.values()) / workers
        largest_part = max(lags.values()) / (workers * PARTS_PER_SHARE)
        assert max(records) <= even * (1 + UNEVEN_AT_MOST) + largest_part + ROUNDING


def test_three_partitions_of_one_busy_topic_go_to_two_workers_evenly() -> None:
    lags = {
        TopicPartition("r.events", 0): 31_000,
        TopicPartition("r.events", 1): 30_000,
        TopicPartition("r.events", 2): 32_000,
        TopicPartition("m.events", 0): 2_400,
        TopicPartition("m.events", 1): 2_300,
        TopicPartition("m.events", 2): 2_300,
    }

    shares = split_partitions(lags, 2)

    # Whole, one would take two of the big three (61,000 against 39,000): the third is split.
    split = [share[TopicPartition("r.events", 1)] for share in shares]
    assert [part.count for part in split] == [8, 8]
    assert sorted(records_of(share, lags) for share in shares) == [49_300, 50_700]
    assert all(
        part is WHOLE
        for share in shares
        for tp, part in share.items()
        if tp.partition != 1 or tp.topic != "r.events"
    )


@given(st.lists(st.binary(), max_size=50), st.integers(1, 6))
def test_each_stream_of_a_split_partition_is_in_exactly_one_part(
    keys: list[bytes], count: int
) -> None:
    for key in keys:
        assert sum(StreamPart(frozenset({index}), count).holds(key) for index in range(count)) == 1
    assert all(WHOLE.holds(key) for key in keys)


def test_workers_one_per_cpu_at_most_one_per_busy_partition_and_none_extra_for_a_short_log() -> (
    None
):
    busy = {TopicPartition("r.events", p): 10**6 for p in range(3)}
    quiet = {**busy, TopicPartition("n.events", 0): 0}
    assert workers_for(quiet, cpus=8) == 3  # the empty partition needs no worker
    assert workers_for(busy, cpus=2) == 2
    assert workers_for(dict.fromkeys(busy, EVENTS_PER_WORKER_AT_LEAST // 3), cpus=2) == 1
    assert workers_for({}, cpus=2) == 1


def test_usable_cpus_are_bounded_by_the_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    with mock.patch("os.sched_getaffinity", return_value=set(range(8))):
        cpu_max.write_text("100000 100000\n")  # a container of one CPU on eight cores
        assert usable_cpus(cpu_max) == 1
        cpu_max.write_text("150000 100000\n")
        assert usable_cpus(cpu_max) == 2
        cpu_max.write_text("max 100000\n")
        assert usable_cpus(cpu_max) == 8
        assert usable_cpus(tmp_path / "none") == 8  # no cgroup v2 here
    with mock.patch("os.sched_getaffinity", return_value={0, 1}):
        cpu_max.write_text("400000 100000\n")
        assert usable_cpus(cpu_max) == 2


def test_folded_shares_add_up_into_the_coordinators_model() -> None:
    model, report = Model(), RebuildReport()
    for folded in (
        FoldedShare(7, {"meetings": SourceProgress(9, 4)}, {"duplicate": 1}, 10),
        FoldedShare(
            5,
            {"meetings": SourceProgress(6, 3), "resolutions": SourceProgress(2, 2)},
            {"duplicate": 2},
            20,
            3,
        ),
    ):
        folded.add_to(model, report)
        assert FoldedShare.from_json(folded.to_json()) == folded

    assert report.events_read == 12
    assert report.parked == 3
    assert model.sources == {"meetings": SourceProgress(9, 7), "resolutions": SourceProgress(2, 2)}
    assert model.skipped == {"duplicate": 3}
