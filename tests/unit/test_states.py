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


def test_the_legal_transitions_are_exactly_the_documented_ones() -> None:
    q, p = Status.IN_QUEUE, Status.IN_PROGRESS
    c, f, x = Status.COMPLETED, Status.FAILED, Status.CANCELLED
    documented = {(q, p), (q, x), (p, c), (p, f), (p, x), (p, q)}  # the module's diagram
    for source in Status:
        for target in Status:
            if (source, target) in documented:
                check(source, target)
            else:
                with pytest.raises(IllegalTransition, match=f"from {source} to {target}"):
                    check(source, target)
