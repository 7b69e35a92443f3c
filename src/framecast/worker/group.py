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


def group_models() -> tuple[str, ...]:
    """The models a group can run: those whose engine splits its transformer through
    :mod:`framecast.engines.hunyuan.parallel`."""
    from framecast.models import hunyuan15_i2v, hunyuan_i2v

    return (hunyuan_i2v.MODEL_ID, hunyuan15_i2v.MODEL_ID)


def check_group_models(model_ids: Iterable[str], advice: str) -> None:
    """Refuse, in one line, models no group can run (a plugin's): a group's engine would
    otherwise run in their place."""
    can = group_models()
    others = [m for m in model_ids if m not in can]
    if others:
        raise GroupError(
            f"{', '.join(others)} {'run' if len(others) > 1 else 'runs'} on one GPU: only "
            f"{' and '.join(can)} run on several (--gpus/--parallel); {advice}"
        )


def group_model(settings: Settings) -> str:
    """The one model a multi-GPU worker serves: the one FRAMECAST_MODELS names, or, unset, the
    first a group can run. A group holds one model: each GPU holds the whole of it."""
    if len(settings.models) > 1:
        raise GroupError(
            f"FRAMECAST_MODELS names {len(settings.models)} models; a multi-GPU worker serves "
            "one (each GPU holds the whole model): name one, and serve the others from "
            "another worker"
        )
    check_group_models(
        settings.models,
        "leave it out of this worker's FRAMECAST_MODELS and serve it from a single-GPU worker",
    )
    return settings.models[0] if settings.models else group_models()[0]


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
def group_engine(
    settings: Settings, processes: int | None = None, model_id: str | None = None
) -> Iterator[GroupEngine]:
    """Rank 0's :class:`~framecast.engines.hunyuan.group.GroupEngine` for ``model_id`` (by
    default :func:`group_model`'s) on the group the settings ask for (FRAMECAST_GPUS, or
    ``processes``/FRAMECAST_PARALLEL), ranks 1..N-1 running; on leaving, the ranks are told to
    exit and joined."""
    from framecast.engines.hunyuan.group import check_combination, follow, open_group_engine
    from framecast.engines.hunyuan.parallel import ParallelUnsupported
    from framecast.parallel.group import Followers, join, leave, plan_group

    if settings.engine == "preview":
        raise GroupError("FRAMECAST_ENGINE=preview runs on one process; a group needs hunyuan")
    if model_id is None:
        model_id = group_model(settings)
    check_group_models([model_id], "run it without --parallel (FRAMECAST_PARALLEL, FRAMECAST_GPUS)")
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
    followers = Followers(plan, follow, settings, model_id)
    die = _die(followers)
    try:
        member = join(plan, 0)
        try:
            engine = open_group_engine(settings, model_id, member, die)
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
    """Entry point of ``framecast worker --gpus``: one worker, its engine the whole group, for
    the one model it serves (:func:`group_model`); runs until SIGTERM/SIGINT."""
    from framecast.worker.loop import Worker, run_until_signalled

    model_id = group_model(settings)
    with group_engine(settings, model_id=model_id) as engine:
        run_until_signalled(Worker(settings, engines={model_id: engine}))
