from __future__ import annotations

import pytest

from framecast.states import TERMINAL, TRANSITIONS, IllegalTransition, Status, check


def test_terminal_states_are_exactly_the_finished_ones() -> None:
    assert {Status.COMPLETED, Status.FAILED, Status.CANCELLED} == TERMINAL


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Status.IN_QUEUE, Status.COMPLETED),
        (Status.IN_QUEUE, Status.FAILED),
        (Status.COMPLETED, Status.IN_QUEUE),
        (Status.CANCELLED, Status.IN_PROGRESS),
        (Status.FAILED, Status.IN_QUEUE),
        (Status.COMPLETED, Status.CANCELLED),
    ],
)
def test_illegal_transitions_are_refused(source: Status, target: Status) -> None:
    with pytest.raises(IllegalTransition):
        check(source, target)


def test_every_state_is_reachable_from_the_queue() -> None:
    seen, frontier = {Status.IN_QUEUE}, [Status.IN_QUEUE]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status)
