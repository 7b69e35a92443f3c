"""Starting a group: ``framecast worker --gpus 0,1,2,3`` and ``framecast generate --parallel N``.

The calling process becomes rank 0; ranks 1..N-1 are spawned. Rank 0 of a worker is an
ordinary :class:`~framecast.worker.loop.Worker` whose one engine is the group's. When the group
breaks (a rank died, a collective failed or timed out), rank 0 prints one line saying so and
exits with :data:`GROUP_BROKEN`, taking the other ranks with it, for a supervisor to restart;
the request it was running goes back to the queue when its lease runs out.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from framecast.settings import Settings

if TYPE_CHECKING:
    from framecast.engines.hunyuan.group import GroupEngine
    from framecast.parallel.group import Followers

log = logging.getLogger("framecast.parallel")

GROUP_BROKEN = 4
"""Exit code of a group that stopped because one of its ranks failed."""


class GroupError(ValueError):
    """The group cannot be started as configured; the message says what to change."""


def check_group_models(model_ids: Iterable[str], advice: str) -> None:
    """Refuse, in one line, models other than HunyuanVideo-I2V: a group's engine is that
    model's (:mod:`framecast.engines.hunyuan.group`), and would otherwise run in their place."""
    from framecast.models.hunyuan_i2v import MODEL_ID

    others = [m for m in model_ids if m != MODEL_ID]
    if others:
        raise GroupError(
            f"{', '.join(others)} {'run' if len(others) > 1 else 'runs'} on one GPU: only "
            f"{MODEL_ID} runs on several (--gpus/--parallel); {advice}"
        )


def _die(followers: Followers) -> Callable[[str], NoReturn]:
    def die(message: str) -> NoReturn:
        # A collective can fail (connection closed) a moment before its killed peer has
        # exited: give the cause a second to show, so the line names it.
        deadline = time.monotonic() + 1.0
        while not (dead := followers.dead()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if dead:  # the cause, rather than the collective that noticed it
            rank, code = sorted(dead.items())[0]
            pid = followers.processes[rank].pid
            message = f"rank {rank} (pid {pid}) exited with code {code}"
        message = " ".join(message.split())[:400]
        sys.stderr.write(f"framecast: {message}; the group is stopping (exit {GROUP_BROKEN})\n")
        sys.stderr.flush()
        for process in followers.processes.values():
            if process.is_alive():
                process.kill()
        os._exit(GROUP_BROKEN)

    return die


@contextmanager
def group_engine(settings: Settings, processes: int | None = None) -> Iterator[GroupEngine]:
    """Rank 0's :class:`~framecast.engines.hunyuan.group.GroupEngine` for the group the
    settings ask for (FRAMECAST_GPUS, or ``processes``/FRAMECAST_PARALLEL), ranks 1..N-1
    running; on leaving, the ranks are told to exit and joined."""
    from framecast.engines.hunyuan.group import check_combination, follow, open_group_engine
    from framecast.engines.hunyuan.parallel import ParallelUnsupported
    from framecast.parallel.group import Followers, join, leave, plan_group

    if settings.engine == "preview":
        raise GroupError("FRAMECAST_ENGINE=preview runs on one process; a group needs hunyuan")
    try:
        check_combination(settings)
        plan = plan_group(
            settings.gpus,
            processes or settings.parallel,
            settings.device,
            settings.parallel_timeout_seconds,
        )
    except ValueError as exc:
        raise GroupError(str(exc)) from exc
    followers = Followers(plan, follow, settings)
    die = _die(followers)
    try:
        member = join(plan, 0)
        try:
            engine = open_group_engine(settings, member, die)
        except ParallelUnsupported as exc:
            leave()
            raise GroupError(str(exc)) from exc
        # From here a rank that exits is a broken group (before, a failed load was reported).
        watching = followers.watch(die)
        try:
            yield engine
        finally:
            watching.set()
            engine.close()
            followers.join(30)
            leave()
    finally:
        followers.join(5)


def run_group_worker(settings: Settings) -> None:
    """Entry point of ``framecast worker --gpus``: one worker, its engine the whole group;
    runs until SIGTERM/SIGINT. Serves HunyuanVideo-I2V only."""
    from framecast.models.hunyuan_i2v import MODEL_ID
    from framecast.worker.loop import Worker, run_until_signalled

    check_group_models(
        settings.models,
        "leave it out of this worker's FRAMECAST_MODELS and serve it from a single-GPU worker",
    )
    with group_engine(settings) as engine:
        run_until_signalled(Worker(settings, engines={MODEL_ID: engine}))
