"""Stall detection: records waiting behind a committed offset that does not move."""

from pipeline.lag import StallWatch

TP = ("facegate.assets", 0)


def test_lag_that_stays_put_is_a_stall_once_then_progress_ends_it() -> None:
    watch = StallWatch(after_s=60)
    assert watch.observe(0, {TP: 10}, {TP: 5}) == ([], [])
    assert watch.observe(59, {TP: 10}, {TP: 5}) == ([], [])
    assert watch.observe(60, {TP: 10}, {TP: 7}) == ([TP], [])
    assert watch.observe(90, {TP: 10}, {TP: 7}) == ([], [])  # reported once
    assert watch.observe(95, {TP: 12}, {TP: 5}) == ([], [TP])
    assert watch.observe(150, {TP: 12}, {TP: 5}) == ([], [])  # the clock restarted at the move


def test_a_partition_with_nothing_waiting_never_stalls() -> None:
    watch = StallWatch(after_s=60)
    for now in range(0, 600, 5):
        assert watch.observe(now, {TP: 10}, {TP: 0}) == ([], [])


def test_a_busy_partition_that_moves_never_stalls() -> None:
    watch = StallWatch(after_s=60)
    for step, now in enumerate(range(0, 600, 5)):
        assert watch.observe(now, {TP: step}, {TP: 100}) == ([], [])
