"""Estimates from history: the pure functions, alone (the file they are read from: test_durations.py)."""

from __future__ import annotations

import pytest

from queue_core.estimates import (
    AGENT_RECENT,
    RECENT,
    Estimates,
    Remaining,
    Sample,
    fingerprint,
    robust_average,
    run_eta,
)


def sample(duration: float, *, agent: str = "a", task_id: str = "t1", fp: str = "f1", at: float = 0.0) -> Sample:
    return Sample(agent, task_id, fp, duration, at)


# --- the average ------------------------------------------------------------------------------


def test_robust_average_is_the_median_of_the_last_runs() -> None:
    assert robust_average([]) is None
    assert robust_average([7.0]) == 7.0
    assert robust_average([10.0, 20.0]) == 15.0
    assert robust_average([1.0, 2.0, 3.0, 4.0, 5.0]) == 3.0
    # Only the last RECENT count: a task that got faster is estimated as it is now.
    assert robust_average([100.0] * 10 + [1.0, 2.0, 3.0, 4.0, 5.0]) == 3.0


@pytest.mark.parametrize("outlier", [0.0, 1e6])
def test_one_outlier_among_five_barely_moves_the_estimate(outlier: float) -> None:
    runs = [60.0, 62.0, 58.0, 61.0]
    assert robust_average([*runs, outlier]) in (60.0, 61.0)
    assert robust_average([*runs[:2], outlier, *runs[2:]]) in (60.0, 61.0)


def test_two_outliers_among_five_still_do_not_set_it() -> None:
    assert robust_average([60.0, 1e6, 61.0, 1e6, 59.0]) == 61.0


# --- the fingerprint --------------------------------------------------------------------------


def test_fingerprint_ignores_the_order_of_claims_but_not_what_they_are() -> None:
    one = fingerprint("a", "do x", ["src/b.py", "src/a.py"], ["docs/"])
    assert one == fingerprint("a", "do x", ["src/a.py", "src/b.py"], ["docs/"])
    assert one != fingerprint("b", "do x", ["src/a.py", "src/b.py"], ["docs/"])
    assert one != fingerprint("a", "do y", ["src/a.py", "src/b.py"], ["docs/"])
    assert one != fingerprint("a", "do x", ["src/a.py"], ["docs/"])
    # A path written is not a path read.
    assert fingerprint("a", "d", ["x"], []) != fingerprint("a", "d", [], ["x"])
    # No separator can be faked: the parts are encoded, not joined.
    assert fingerprint("a b", "c", [], []) != fingerprint("a", "b c", [], [])


# --- matching -----------------------------------------------------------------------------------


def test_a_task_is_matched_first_by_fingerprint_then_by_id() -> None:
    history = Estimates(
        [
            sample(100.0, task_id="t1", fp="old"),
            sample(10.0, task_id="other", fp="same"),
            sample(12.0, task_id="other", fp="same"),
        ]
    )
    by_fp = history.of("a", "t1", "same")
    assert by_fp is not None
    assert (by_fp.seconds, by_fp.basis, by_fp.runs) == (11.0, "task", 2)
    by_id = history.of("a", "t1", "new")
    assert by_id is not None
    assert (by_id.seconds, by_id.basis, by_id.runs) == (100.0, "id", 1)


def test_an_id_matches_only_within_its_agent() -> None:
    """Ids like t1 are reused by unrelated batches; an id run by another agent is another task."""
    history = Estimates([sample(100.0, agent="b", task_id="t1", fp="x")])
    found = history.of("a", "t1", "y")
    assert found is not None
    assert found.basis == "all"  # the global default, not b's t1


def test_a_task_without_history_gets_its_agents_median() -> None:
    history = Estimates(
        [sample(10.0, task_id="x", fp="x"), sample(30.0, task_id="y", fp="y"), sample(20.0, task_id="z", fp="z")]
    )
    found = history.of("a", "new", "new")
    assert found is not None
    assert (found.seconds, found.basis, found.runs) == (20.0, "agent", 3)


def test_an_agent_without_history_gets_the_median_of_all() -> None:
    history = Estimates([sample(10.0, agent="b"), sample(50.0, agent="c"), sample(30.0, agent="d")])
    found = history.of("a", "new", "new")
    assert found is not None
    assert (found.seconds, found.basis, found.runs) == (30.0, "all", 3)


def test_no_history_at_all_is_no_estimate() -> None:
    assert Estimates([]).of("a", "t1", "f") is None


def test_defaults_count_only_the_recent_runs() -> None:
    old = [sample(1000.0, task_id=f"old{i}", fp=f"old{i}", at=i) for i in range(AGENT_RECENT)]
    new = [sample(5.0, task_id=f"new{i}", fp=f"new{i}", at=100 + i) for i in range(AGENT_RECENT)]
    found = Estimates([*old, *new]).of("a", "other", "other")
    assert found is not None
    assert found.seconds == 5.0
    assert found.runs == AGENT_RECENT


def test_a_task_estimate_keeps_only_its_recent_runs() -> None:
    runs = [sample(float(i), at=i) for i in range(3 * RECENT)]
    found = Estimates(runs).of("a", "t1", "f1")
    assert found is not None
    assert found.runs == RECENT
    assert found.seconds == float(3 * RECENT - 1 - RECENT // 2)


def test_samples_are_ordered_by_when_they_finished_not_by_position() -> None:
    """Two runs append to one file; their lines may be out of order by a little."""
    runs = [sample(1.0, at=float(i)) for i in range(RECENT)]
    late = sample(100.0, at=-1.0)  # finished before all the others, appended last
    found = Estimates([*runs, late]).of("a", "t1", "f1")
    assert found is not None
    assert found.seconds == 1.0


def test_a_sample_reads_back_what_it_wrote_and_refuses_damage() -> None:
    one = sample(12.5, at=1700000000.0)
    assert Sample.from_json(one.to_json()) == one
    with pytest.raises(ValueError, match="duration"):
        Sample.from_json({**one.to_json(), "duration_s": -1.0})
    with pytest.raises(ValueError, match="agent"):
        Sample.from_json({"task": "t", "fingerprint": "f", "duration_s": 1.0, "at": 0.0})
    with pytest.raises(ValueError, match="JSON object"):
        Sample.from_json([1, 2])


# --- the time left of a run ------------------------------------------------------------------


def test_eta_of_nothing_left_is_zero() -> None:
    assert run_eta([], 4, lambda agent: 1) == 0.0


def test_eta_is_unknown_if_a_task_left_has_no_estimate() -> None:
    left = [Remaining("t1", "a", 10.0), Remaining("t2", "b", None)]
    assert run_eta(left, 4, lambda agent: 1) is None


def test_eta_shares_the_work_among_the_slots() -> None:
    left = [Remaining(f"t{i}", f"agent{i}", 60.0) for i in range(8)]
    assert run_eta(left, 4, lambda agent: 1) == 120.0


def test_eta_counts_one_agents_tasks_one_after_another() -> None:
    left = [Remaining(f"t{i}", "a", 60.0) for i in range(3)]
    assert run_eta(left, 4, lambda agent: 1) == 180.0
    assert run_eta(left, 4, lambda agent: 3) == 60.0


def test_eta_follows_the_longest_chain_of_dependants() -> None:
    # Listed dependencies first, as a queue holds them.
    left = [Remaining("a", "x", 10.0, ("b",)), Remaining("b", "y", 10.0, ("c",)), Remaining("c", "z", 10.0)]
    assert run_eta(left, 4, lambda agent: 1) == 30.0


def test_eta_ignores_dependants_already_gone() -> None:
    left = [Remaining("a", "x", 10.0, ("done",))]
    assert run_eta(left, 4, lambda agent: 1) == 10.0


def test_eta_of_a_task_past_its_estimate_is_none_left_of_it() -> None:
    assert Remaining.of("t", "a", 60.0, elapsed_s=90.0).seconds == 0.0
    assert Remaining.of("t", "a", 60.0, elapsed_s=20.0).seconds == 40.0
    assert Remaining.of("t", "a", None, elapsed_s=20.0).seconds is None
