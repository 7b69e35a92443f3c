"""A process group of N processes on one machine: rank 0 is the calling process, ranks
1..N-1 are started here (``spawn``, no torchrun), one per GPU (NCCL) or all on the CPU (gloo).

Besides the default group (the model's collectives, which fail after ``timeout_s`` if a peer
hangs), every member has three gloo groups on the CPU: ``commands``, where idle ranks wait for
the next request for as long as it takes; ``steps``, for the per-step stop flag and the
end-of-request outcomes, under the same timeout as the model's; and ``starting``, where the
ranks wait for one another to load, as the rendezvous does, under :func:`start_timeout`.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing.process
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

log = logging.getLogger("framecast.parallel")

IDLE_TIMEOUT = dt.timedelta(days=365)
"""How long an idle rank waits for the next request: a worker may be idle for days."""

MIN_START_TIMEOUT = dt.timedelta(minutes=2)
"""The least time ranks wait for one another to start and load: spawning a process, importing
torch and loading the weights are no collective, and on a loaded machine one rank may take
seconds longer than another, more than a short collective timeout (the tests' 4 s)."""


def start_timeout(timeout: dt.timedelta) -> dt.timedelta:
    """How long the rendezvous and the wait for every rank's load may take."""
    return max(timeout, MIN_START_TIMEOUT)


@dataclass(frozen=True)
class GroupPlan:
    """Everything a rank needs to join the group (picklable: it is handed to spawned ranks)."""

    devices: tuple[str, ...]
    """Per rank: ``"cuda:3"`` or ``"cpu"``."""
    port: int
    timeout_s: float

    @property
    def world_size(self) -> int:
        return len(self.devices)

    @property
    def backend(self) -> str:
        return "nccl" if self.devices[0].startswith("cuda") else "gloo"


def plan_group(gpus: list[int], processes: int | None, device: str, timeout_s: float) -> GroupPlan:
    """The group ``--gpus`` (one process per GPU listed) or ``--parallel N`` asks for: N GPUs
    from cuda:0 when ``device`` allows CUDA and there is a GPU, else N processes on the CPU."""
    if gpus:
        if processes is not None and processes != len(gpus):
            raise ValueError(
                f"--parallel {processes} and --gpus {','.join(map(str, gpus))} disagree; "
                "give one of them"
            )
        devices = tuple(f"cuda:{g}" for g in gpus)
    else:
        n = processes or 1
        on_gpu = device != "cpu" and torch.cuda.is_available()
        devices = tuple(f"cuda:{i}" for i in range(n)) if on_gpu else ("cpu",) * n
    if devices[0].startswith("cuda"):
        have = torch.cuda.device_count()
        missing = [d for d in devices if int(d.split(":")[1]) >= have]
        if have == 0:
            raise ValueError(
                "torch sees no CUDA GPU; --gpus needs GPUs (on a CPU, for tests: "
                "FRAMECAST_DEVICE=cpu with --parallel N)"
            )
        if missing:
            raise ValueError(
                f"{', '.join(missing)} not found: torch sees {have} GPU(s); list GPUs 0..{have - 1}"
            )
        if len(set(devices)) != len(devices):
            raise ValueError("each GPU may be listed once (NCCL runs one process per GPU)")
    return GroupPlan(devices, free_port(), timeout_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Member:
    """This process's place in the group."""

    rank: int
    world_size: int
    device: torch.device
    commands: Any
    """gloo group without a practical timeout: requests and the exit command."""
    steps: Any
    """gloo group with the model's timeout: per-step flags and outcomes."""
    starting: Any
    """gloo group with :func:`start_timeout`: whether every rank loaded."""

    @property
    def leader(self) -> bool:
        return self.rank == 0


def join(plan: GroupPlan, rank: int) -> Member:
    """Join the group as ``rank`` (blocks until every rank has joined, or the timeout)."""
    device = torch.device(plan.devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = dt.timedelta(seconds=plan.timeout_s)
    # The rendezvous under the start timeout; the default group's collectives under the model's.
    store = dist.TCPStore(  # type: ignore[attr-defined]  # exported without __all__
        "127.0.0.1",
        plan.port,
        plan.world_size,
        is_master=rank == 0,
        timeout=start_timeout(timeout),
    )
    dist.init_process_group(
        plan.backend, store=store, rank=rank, world_size=plan.world_size, timeout=timeout
    )
    commands = dist.new_group(backend="gloo", timeout=IDLE_TIMEOUT)
    steps = dist.new_group(backend="gloo", timeout=timeout)
    starting = dist.new_group(backend="gloo", timeout=start_timeout(timeout))
    return Member(rank, plan.world_size, device, commands, steps, starting)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class Followers:
    """Ranks 1..N-1, each a spawned process running ``target(plan, rank, *args)``."""

    def __init__(self, plan: GroupPlan, target: Callable[..., None], *args: Any) -> None:
        context = mp.get_context("spawn")
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        for rank in range(1, plan.world_size):
            process = context.Process(
                target=target, args=(plan, rank, *args), name=f"framecast-rank{rank}", daemon=True
            )
            process.start()
            self.processes[rank] = process
            log.info("rank %d started (pid %s, %s)", rank, process.pid, plan.devices[rank])

    def dead(self) -> dict[int, int | None]:
        """Rank -> exit code of every follower that has exited."""
        return {r: p.exitcode for r, p in self.processes.items() if not p.is_alive()}

    def watch(self, on_death: Callable[[str], None], interval_s: float = 0.5) -> threading.Event:
        """Call ``on_death(message)`` (from a thread) when a follower exits; set the returned
        event to stop watching (before a planned shutdown)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                dead = self.dead()
                if dead and not stop.is_set():
                    rank, code = sorted(dead.items())[0]
                    pid = self.processes[rank].pid
                    on_death(f"rank {rank} (pid {pid}) exited with code {code}")
                    return

        threading.Thread(target=loop, name="group-watch", daemon=True).start()
        return stop

    def join(self, timeout_s: float) -> None:
        """Wait for every follower to exit, then terminate (SIGTERM) any still running."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
                process.join(5)


def exit_with_parent(interval_s: float = 1.0) -> None:
    """In a follower: leave at once if the process that started it is gone (a killed leader
    must not leave ranks behind holding GPU memory)."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                log.error("the group's rank 0 (pid %d) is gone; rank exiting", parent)
                os._exit(3)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
