"""A Hunyuan engine (HunyuanVideo-I2V or 1.5) on a process group: one request, every rank, the
same seed.

Rank 0 holds a :class:`GroupEngine`, an ordinary :class:`~framecast.engines.base.Engine` to the
worker (which claims, renews the lease, reports progress, encodes and stores as always): for
each request it sends the request to ranks 1..N-1 and runs its own share. The other ranks run
:func:`follow`: wait for a request, run it, report how it ended, wait again.

Keeping the ranks in step:
- Stop. The engine asks its hooks whether to stop after each step; under a group rank 0 decides
  (its worker's cancel, lease and shutdown) and broadcasts the answer, so every rank stops at
  the same step (:class:`_StepHooks`).
- Outcome. After each request every rank reports how it ended ("ok", "cancelled" or the error's
  type). The same everywhere (an input error raises on every rank alike): the group is in step
  and rank 0 raises what it raised. Anything else, a collective that failed or timed out, or a
  rank that died (watched from a thread), means the group is broken: ``on_failure`` ends it
  (the launcher exits with one line and a non-zero code) without finishing the request, whose
  lease then runs out and returns it to the queue, the attempt counted, as for any dead worker.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch.distributed as dist

from framecast.engines.base import (
    Cancelled,
    Engine,
    EngineUnavailable,
    GenerationRequest,
    Hooks,
    NullHooks,
)
from framecast.engines.hunyuan.parallel import (
    Degrees,
    ParallelUnsupported,
    choose_degrees,
    enable_sequence_parallel,
)
from framecast.errors import FramecastError, InputError
from framecast.parallel.group import GroupPlan, Member, exit_with_parent, join, leave
from framecast.settings import Settings

log = logging.getLogger("framecast.engines.hunyuan.group")

CP_ATTENTION = frozenset({"auto", "cudnn", "flash", "flash-attn", "sage"})
"""``FRAMECAST_ATTENTION`` choices whose diffusers backend runs under context parallelism."""


@dataclass(frozen=True)
class _Command:
    kind: Literal["run", "exit"]
    request: GenerationRequest | None = None


def check_combination(settings: Settings) -> None:
    """Refuse, at start, the settings a group cannot run, saying what to change."""
    if settings.offload != "none":
        raise ParallelUnsupported(
            f"FRAMECAST_OFFLOAD={settings.offload} with several GPUs: each GPU holds the whole "
            "model and offloading has not been verified with a split sequence; use "
            "FRAMECAST_OFFLOAD=none (or one GPU)"
        )
    if settings.compile == "on" or settings.linear == "fp8":
        raise ParallelUnsupported(
            "FRAMECAST_COMPILE=on (or FRAMECAST_LINEAR=fp8, which compiles) with several GPUs: "
            "compiling the split transformer has not been verified; use FRAMECAST_COMPILE=off "
            "and FRAMECAST_LINEAR=bf16 or fp8-weight"
        )
    if settings.attention not in CP_ATTENTION:
        raise ParallelUnsupported(
            f"FRAMECAST_ATTENTION={settings.attention} has no context-parallel support in "
            f"diffusers; use one of {', '.join(sorted(CP_ATTENTION))}"
        )


@runtime_checkable
class RankEngine(Protocol):
    """What a group needs of each rank's engine; both Hunyuan engines have it."""

    pipe: Any
    """The diffusers pipeline, whose ``transformer`` is split."""
    decodes: bool
    """Set False on ranks 1..N-1: rank 0 decodes the latents every rank holds."""


def load_rank_engine(
    settings: Settings, model_id: str, member: Member
) -> tuple[Engine, Degrees | None]:
    """This rank's engine for ``model_id`` on its device, its transformer split across the
    group."""
    from framecast.models import get_model

    check_combination(settings)
    real = get_model(model_id, settings).real_engine
    if real is None:
        raise ParallelUnsupported(f"{model_id} has no engine but the preview one")
    # compile=auto means "on a GPU"; unverified with a split sequence, so off here.
    engine = real.load(settings.model_copy(update={"device": str(member.device), "compile": "off"}))
    if not isinstance(engine, Engine) or not isinstance(engine, RankEngine):
        raise ParallelUnsupported(f"{model_id}'s engine cannot run on several processes")
    if member.world_size == 1:
        return engine, None
    transformer = engine.pipe.transformer
    degrees = choose_degrees(
        member.world_size,
        int(transformer.config.num_attention_heads),
        settings.ulysses_degree,
        settings.ring_degree,
    )
    enable_sequence_parallel(transformer, degrees, member.device)
    return engine, degrees


class _StepHooks:
    """The engine's hooks on any rank: rank 0's stop decision, broadcast at every step."""

    def __init__(self, member: Member, hooks: Hooks) -> None:
        self.member = member
        self.hooks = hooks
        self.in_step = time.monotonic()
        """When every rank was last known to be at the same point (after each step's flag)."""

    def progress(self, step: int, total: int, phase: str) -> None:
        self.hooks.progress(step, total, phase)

    def raise_if_cancelled(self) -> None:
        reason = [""]
        if self.member.leader:
            try:
                self.hooks.raise_if_cancelled()
            except Cancelled as why:
                reason[0] = str(why) or "stopped"
        dist.broadcast_object_list(reason, src=0, group=self.member.steps)
        self.in_step = time.monotonic()
        if reason[0]:
            raise Cancelled(reason[0])


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, dist.DistError):  # a collective failed: never "the same everywhere"
        return f"broken:{type(error).__name__}: {error}"
    if isinstance(error, Cancelled):
        return "cancelled"
    if isinstance(error, FramecastError):
        return f"error:{error.code}"
    return f"error:{type(error).__name__}"


def _run(engine: Engine, request: GenerationRequest, hooks: _StepHooks) -> Any:
    """Run ``request`` on this rank; (frames, None) or (None, the error it raised)."""
    try:
        frames = list(engine.generate(request, hooks))
        return (np.stack(frames) if frames else None), None
    except Exception as exc:  # Cancelled included
        return None, exc


class GroupEngine(Engine):
    """Rank 0's engine: every request runs on the whole group (see the module's docstring)."""

    name = "hunyuan"

    def __init__(
        self,
        engine: Engine,
        member: Member,
        degrees: Degrees | None,
        on_failure: Callable[[str], None],
        timeout_s: float,
    ) -> None:
        self.engine = engine
        self.model = engine.model
        self.member = member
        self.degrees = degrees
        self.on_failure = on_failure
        """Ends the group (does not return when the launcher's): called when it is broken."""
        self.timeout_s = timeout_s
        """The collectives' timeout (FRAMECAST_PARALLEL_TIMEOUT_SECONDS)."""

    def metadata(self) -> dict[str, Any]:
        meta = self.engine.metadata()
        meta["parallel"] = {
            "processes": self.member.world_size,
            "ulysses_degree": self.degrees.ulysses if self.degrees else 1,
            "ring_degree": self.degrees.ring if self.degrees else 1,
        }
        return meta

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        return self.engine.describe(request)

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        if request.options.get("step_cache") is not None:
            # Each rank would decide from its own share whether to skip a step's blocks; ranks
            # deciding differently would wait for each other's collectives for ever.
            raise InputError(
                "step_cache is not available on a multi-GPU worker; leave it null",
                field="step_cache",
            )
        step_hooks = _StepHooks(self.member, hooks)
        try:
            dist.broadcast_object_list(
                [_Command("run", request)], src=0, group=self.member.commands
            )
            frames, error = _run(self.engine, request, step_hooks)
            outcomes: list[Any] = [None] * self.member.world_size
            dist.all_gather_object(outcomes, _outcome(error), group=self.member.steps)
        except Exception as exc:  # a collective failed: a rank is gone or stuck
            self._broken(self._failure(exc, time.monotonic() - step_hooks.in_step))
            raise
        if len(set(outcomes)) != 1 or outcomes[0].startswith("broken:"):
            self._broken(f"ranks ended the request differently: {outcomes}")
        if error is not None:
            raise error
        yield from frames

    def _failure(self, exc: Exception, waited_s: float) -> str:
        """Why the group broke, in words. gloo words a timeout differently by where it struck
        ("timed out", "Application timeout caused pair closure"), so a failure after the ranks
        were out of step for the whole timeout is called one: a rank that died fails the
        collectives at once (and the launcher names it)."""
        cause = f"{type(exc).__name__}: {exc}"
        if waited_s >= self.timeout_s:
            return (
                f"timed out: a rank did not answer for {self.timeout_s:g} s "
                f"(FRAMECAST_PARALLEL_TIMEOUT_SECONDS); {cause}"
            )
        return f"a collective failed: {cause}"

    def _broken(self, why: str) -> None:
        self.on_failure(f"the process group is broken ({why})")
        # A launcher's on_failure exits the process; one that returns leaves the request to fail.
        raise RuntimeError(f"the process group is broken ({why})")

    def close(self) -> None:
        """Tell ranks 1..N-1 to exit (the group is idle)."""
        if self.member.world_size > 1:
            dist.broadcast_object_list([_Command("exit")], src=0, group=self.member.commands)


def follow(plan: GroupPlan, rank: int, settings: Settings, model_id: str) -> None:
    """A follower rank's whole life: join, load, run every request rank 0 sends, exit."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s rank{rank} %(name)s: %(message)s",
    )
    # A supervisor's SIGTERM (or a terminal's Ctrl-C) reaches every process: rank 0 stops the
    # group in step, and tells this one to exit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    member = join(plan, rank)
    engine, _ = _load(settings, model_id, member)
    if engine is None:  # rank 0 says why
        leave()
        raise SystemExit(2)
    engine.decodes = False
    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=member.commands)
        command: _Command = box[0]
        if command.kind == "exit":
            break
        assert command.request is not None
        _, error = _run(engine, command.request, _StepHooks(member, NullHooks()))
        if error is not None and not isinstance(error, (Cancelled, FramecastError)):
            log.warning("rank %d: request failed: %s: %s", rank, type(error).__name__, error)
        dist.all_gather_object([None] * member.world_size, _outcome(error), group=member.steps)
    leave()


def _load(settings: Settings, model_id: str, member: Member) -> tuple[Any, str]:
    """Load this rank's engine; then every rank learns whether all did: (engine, "") or
    (None, the first failing rank's reason). No rank is left waiting for one that failed."""
    loaded: Any = None
    reason = ""
    try:
        loaded = load_rank_engine(settings, model_id, member)
    except (EngineUnavailable, ParallelUnsupported, FramecastError) as exc:
        reason = f"rank {member.rank}: {getattr(exc, 'message', None) or exc}"
    reasons: list[Any] = [None] * member.world_size
    dist.all_gather_object(reasons, reason, group=member.starting)
    failed = [r for r in reasons if r]
    if failed:
        return None, failed[0]
    return (loaded if member.leader else loaded[0]), ""


def open_group_engine(
    settings: Settings, model_id: str, member: Member, on_failure: Callable[[str], None]
) -> GroupEngine:
    """Rank 0: load its engine for ``model_id`` and wait until every follower has loaded its
    own; raises :class:`ParallelUnsupported` with the first rank's reason if any rank could
    not."""
    loaded, error = _load(settings, model_id, member)
    if loaded is None:
        raise ParallelUnsupported(error)
    engine, degrees = loaded
    if degrees is not None:
        log.info(
            "%s: one request on %d processes (%s): Ulysses %d x Ring %d",
            model_id,
            member.world_size,
            dist.get_backend(),
            degrees.ulysses,
            degrees.ring,
        )
    return GroupEngine(engine, member, degrees, on_failure, settings.parallel_timeout_seconds)
