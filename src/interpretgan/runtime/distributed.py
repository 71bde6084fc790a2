"""Several processes, one job: launching, joining, sharding and watching ranks on
``torch.distributed``.

A process is one *rank* of a *world* of ``size`` ranks (:class:`World`; a lone process is
rank 0 of a world of 1 and needs none of this). Worlds are started by

* ``interpretgan … --devices N``: :func:`spawn` starts N local processes (one per GPU, or
  CPU processes sharing the cores);
* ``torchrun --nnodes … --nproc-per-node … -m interpretgan …``: the launcher's environment
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) is joined as is.

Either way :func:`process_group` joins the process group (gloo on CPUs, nccl with
``cuda:LOCAL_RANK`` on GPUs) and starts a watchdog: every rank beats a counter in the
rendezvous store, and a rank whose peer stops beating for ``INTERPRETGAN_RANK_TIMEOUT``
seconds (default 30) — killed, or its machine gone — logs one line naming that rank and
exits, so no rank waits forever on a collective. Checkpoints are written atomically, so the
same command resumes. Long waits (a rank that finished its share waiting for the others, the
ranks waiting while rank 0 attacks or writes reports) go through the store
(:meth:`World.wait_all`, :meth:`World.post`/:meth:`World.receive`), not through collectives
with a time limit.

What the ranks share out:

* generator fitting: the (layer, seed) members, balanced by compute (:func:`shard_members`);
* classifier training: every global batch (:func:`batch_share`: by position, or by example
  index where a method keeps per-example state), with gradients averaged over the whole
  global batch (:func:`average_gradients`) and the random draws one process would make
  (:class:`ShareDropout`; the attacks' random starts in :mod:`~interpretgan.training`).

Why not the ``DistributedDataParallel`` wrapper: between two training forwards the attacks
run the model in eval mode for input gradients (a DDP reducer expects every forward with
gradients on to be followed by a backward over the weights), and a global batch is split
unevenly when by example index, which DDP's plain mean over ranks would weight wrongly. One
all-reduce of count-weighted gradients per step is what DDP computes, without its overlap
of communication and backward.

Why spare ranks (more ranks than fit members) wait rather than split a member's batch: the
discriminator's minibatch-standard-deviation feature is a statistic of the whole batch, so a
split batch would change what D computes and the fit would no longer equal the 1-rank fit.
"""
from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.multiprocessing as mp
from .devices import resolve_device

log = logging.getLogger(__name__)

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# A peer that misses heartbeats this long is taken for dead (seconds; the environment
# variable INTERPRETGAN_RANK_TIMEOUT changes it).
RANK_TIMEOUT_S = 30.0
# Collectives (the gradient all-reduce) may wait this long for a slow peer; a dead one is
# caught by the watchdog long before.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
EXIT_PEER_LOST = 3


class PeerLostError(RuntimeError):
    """A rank stopped (killed, crashed, its machine gone) while the others needed it."""


@dataclasses.dataclass
class World:
    """This process's place among the ranks of a job, and its device.

    ``rank``/``size``: global rank and number of ranks; ``local_rank``: rank on this machine
    (the GPU index). A default ``World()`` is the lone process: every method below is then
    a no-op and :attr:`main` is true.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    _store: Any = dataclasses.field(default=None, repr=False, compare=False)
    _prefix: str = dataclasses.field(default="interpretgan", repr=False, compare=False)
    _seq: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes what is written once (summaries, reports, stages)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ------------------------------------------------------------ waiting on each other
    def wait_all(self, name: str) -> None:
        """A barrier without a time limit (the watchdog ends it if a rank dies): every rank
        returns once all ranks have called ``wait_all`` with this ``name`` (names are
        numbered per call, so one name can be used again)."""
        if not self.distributed:
            return
        key = self._key("barrier", name)
        self._store.add(key, 1)
        while int(self._store.add(key, 0)) < self.size:
            time.sleep(0.05)

    def post(self, obj: Any) -> None:
        """Rank 0 hands ``obj`` (picklable) to every other rank's next :meth:`receive`."""
        if self.distributed:
            self._store.set(self._key("post", "main"), pickle.dumps(obj))

    def receive(self) -> Any:
        """The next object rank 0 :meth:`post`-ed; waits as long as it takes."""
        key = self._key("post", "main")
        while True:
            try:
                self._store.wait([key], timedelta(seconds=5))
                return pickle.loads(self._store.get(key))
            except dist.DistStoreError:  # not yet: keep waiting (the watchdog guards us)
                continue

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (what rank 0 decided, e.g. from files it read)."""
        if not self.distributed:
            return obj
        if self.main:
            self.post(obj)
            return obj
        return self.receive()

    def everyone(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Rank 0: have every rank run ``fn(world, *args)`` (the others get it through
        :func:`serve_rank0`), run it here too and return its result. ``fn`` must be a
        module-level function and ``args`` picklable."""
        self.post(("run", fn, args))
        return fn(self, *args)

    def _key(self, kind: str, name: str) -> str:
        n = self._seq.get((kind, name), 0)
        self._seq[(kind, name)] = n + 1
        return f"{self._prefix}/{kind}/{name}/{n}"

    def __reduce__(self):  # a World never travels to another process
        raise TypeError("a World belongs to its process; pass it as the first argument of fn")


def serve_rank0(world: World) -> None:
    """Ranks other than 0: run what rank 0 hands over with :meth:`World.everyone` until it
    posts the end (:func:`end_handover`)."""
    while True:
        msg = world.receive()
        if msg[0] == "end":
            return
        _, fn, args = msg
        fn(world, *args)


def end_handover(world: World) -> None:
    """Rank 0: let the ranks in :func:`serve_rank0` return."""
    if world.main:
        world.post(("end",))


follow, release = serve_rank0, end_handover  # the names of 0.1


# ---------------------------------------------------------------------------- launching
def launched() -> bool:
    """Whether this process was started as one rank of several (by :func:`spawn` or torchrun)."""
    return all(k in os.environ for k in LAUNCH_ENV) and int(os.environ["WORLD_SIZE"]) > 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(n: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``n`` new local processes, each one rank of a world of ``n``
    (environment as torchrun sets it; the function joins with :func:`process_group`).

    If one process dies or fails, the others are stopped and :class:`PeerLostError` names
    the first one (rank, exit code or signal); Ctrl-C stops them all."""

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(n),
           "LOCAL_WORLD_SIZE": str(n)}
    ctx = mp.start_processes(_spawned, args=(env, fn, args), nprocs=n, join=False,
                             start_method="spawn")
    before = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM (a cancelled job): as Ctrl-C
        before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while not ctx.join(timeout=0.5):
            pass
    except mp.ProcessExitedException as e:  # join() has stopped the other ranks
        how = f"was killed by {e.signal_name}" if e.signal_name else f"failed (exit code {e.exit_code})"
        raise PeerLostError(f"rank {e.error_index} {how}; the other ranks were "
                            "stopped; rerun the same command to resume from the last "
                            "checkpoints") from None
    except mp.ProcessRaisedException as e:
        last = [ln for ln in str(e).strip().splitlines() if ln.strip()][-1]
        raise PeerLostError(f"rank {e.error_index} failed: {last}; the other ranks were "
                            "stopped") from None
    except KeyboardInterrupt:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(10)
        raise
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _spawned(local_rank: int, env: dict, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    code = fn(*args)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def check_devices(n: int, device: str | torch.device | None) -> torch.device:
    """The device kind ``n`` local ranks run on (one GPU each, or CPU processes); a ``ValueError``
    in one line when this machine has fewer GPUs than ranks asked for."""

    dev = resolve_device(device)
    if dev.type == "cuda" and n > torch.cuda.device_count():
        raise ValueError(f"--devices {n} asked for, but this machine has {torch.cuda.device_count()} "
                         "GPU(s): one rank runs per GPU (use --device cpu for CPU processes)")
    return dev


def cpu_threads(local_world_size: int) -> int:
    """Threads per CPU rank: this machine's cores shared out (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, local_world_size))


@contextlib.contextmanager
def process_group(device: str | torch.device | None = "auto") -> Iterator[World]:
    """Join the job this process was launched into (:func:`launched`), or be a lone process.

    Yields the :class:`World` with this rank's device: ``"auto"``/``"cuda"`` on a GPU machine
    → nccl and ``cuda:LOCAL_RANK``; ``"cpu"`` (or no GPU) → gloo on the CPU, with the cores
    shared out among the local ranks (:func:`cpu_threads`). On leaving, every rank reports
    itself done (or failed: the others then stop); rank 0, which may host the rendezvous
    store, waits for the others first.
    """

    if not launched():
        yield World(device=resolve_device(device))
        return
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        torch.set_num_threads(cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", size))))
        backend = "gloo"
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=COLLECTIVE_TIMEOUT)
    prefix = f"interpretgan/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    world = World(rank, size, local, dev, _client(), prefix)
    dog = _Watchdog(world, float(os.environ.get("INTERPRETGAN_RANK_TIMEOUT", RANK_TIMEOUT_S)))
    dog.start()
    ok = False
    try:
        world.wait_all("start")
        log.debug("rank %d of %d on %s (%s)", rank, size, dev, backend)
        yield world
        ok = True
    finally:
        try:
            world._store.set(f"{prefix}/done/{rank}", "ok" if ok else "failed")
            if world.main and ok:  # keep the store up until every other rank is done (or dead)
                dog.wait_for_others()
        except (dist.DistError, RuntimeError):  # the store is gone: no one left to tell
            pass
        finally:
            dog.stop()
            dist.destroy_process_group()


def _client():
    """A new client of the rendezvous store at MASTER_ADDR:MASTER_PORT (each thread gets
    its own: store clients are not shared between threads)."""
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                         is_master=False, timeout=timedelta(seconds=60), wait_for_workers=False)


class _Watchdog(threading.Thread):
    """Beats this rank's counter in the store every second and checks the other ranks'
    counters: a rank that is not done and has not beaten for ``timeout`` seconds is dead,
    and so is a store that cannot be reached. Then this process logs one line and exits
    (``os._exit``: the main thread may be blocked inside a collective)."""

    def __init__(self, world: World, timeout: float):
        super().__init__(name="interpretgan-watchdog", daemon=True)
        self.world, self.timeout = world, timeout
        self._halt = threading.Event()
        self.store = _client()
        self.prefix = world._prefix
        self.store.add(f"{self.prefix}/beat/{world.rank}", 1)

    def run(self) -> None:
        seen = {r: (-1, time.monotonic()) for r in range(self.world.size) if r != self.world.rank}
        while not self._halt.wait(1.0):
            try:
                self.store.add(f"{self.prefix}/beat/{self.world.rank}", 1)
                for r, (count, since) in list(seen.items()):
                    if self.store.check([f"{self.prefix}/done/{r}"]):
                        if self.store.get(f"{self.prefix}/done/{r}") == b"failed":
                            self._die(f"rank {r} failed (its error is above)")
                        del seen[r]
                        continue
                    now_count = int(self.store.add(f"{self.prefix}/beat/{r}", 0))
                    if now_count != count:
                        seen[r] = (now_count, time.monotonic())
                    elif time.monotonic() - since > self.timeout:
                        self._die(f"rank {r} stopped responding {self.timeout:.0f} s ago (killed, "
                                  "crashed or its machine is gone)")
            except (dist.DistError, RuntimeError, OSError) as e:
                if self._halt.is_set():
                    return
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                self._die(f"lost the rendezvous store (rank 0 or the launcher is gone: {first})")

    def _die(self, why: str) -> None:
        log.error("rank %d: %s; stopping this rank too. Rerun the same command to resume from "
                  "the last checkpoints", self.world.rank, why)
        for h in logging.getLogger().handlers:
            h.flush()
        sys.stderr.flush()
        os._exit(EXIT_PEER_LOST)

    def wait_for_others(self) -> None:
        """Until every other rank is done; the watchdog itself ends a wait for a dead one."""
        others = [f"{self.prefix}/done/{r}" for r in range(self.world.size) if r != self.world.rank]
        store = _client()
        while others and not store.check(others):
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()


def one_line(e: BaseException) -> str:
    """A collective's failure as one line (its first line names the backend's reason)."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"a collective failed, most likely because another rank stopped ({first})"


def shard_members(members: Sequence[tuple[str, Sequence[int]]], costs: Sequence[float],
                  world: World) -> list[tuple[str, Sequence[int]]]:
    """This rank's share of the fit's members: the longest-processing-time rule (heaviest
    member first, to the rank with the least work so far; ties to the lower rank), so every
    rank computes the same split. Members keep their order within a share; a rank may get
    none when there are more ranks than members."""
    load = [(0.0, r) for r in range(world.size)]
    owner = {}
    for i in sorted(range(len(members)), key=lambda i: (-costs[i], i)):
        work, r = heapq.heappop(load)
        owner[i] = r
        heapq.heappush(load, (work + costs[i], r))
    return [m for i, m in enumerate(members) if owner[i] == world.rank]


# ---------------------------------------------------------------------------- training
def batch_share(idx: torch.Tensor, world: World, by_index: bool = False) -> torch.Tensor:
    """Positions in a global batch (example indices ``idx``, (B,)) that this rank trains on:
    its contiguous ``1/size`` of the batch, or, ``by_index``, the examples whose index is
    ``rank`` modulo ``size`` (the ones whose per-example state, e.g. ATTA's perturbations,
    this rank stores; b ≈ B / size, and a small batch may hold none). Returns (b,) positions."""
    if not world.distributed:
        return torch.arange(len(idx))
    if by_index:
        return (idx % world.size == world.rank).nonzero().squeeze(1)
    return torch.arange(len(idx)).tensor_split(world.size)[world.rank]


def average_gradients(params: Sequence[nn.Parameter], count: int) -> None:
    """Make every rank's gradients the gradient of the mean loss over the global batch.

    Each rank's ``p.grad`` is the gradient of its mean loss over its ``count`` examples;
    one all-reduce of (grad · count, count) gives Σ grad·count / Σ count on every rank,
    exact also when the ranks' shares differ in size (a rank with no examples passes
    ``count`` 0 and no gradients). No-op in a lone process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    ref = params[0]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * count
                      for p in params] + [torch.tensor([float(count)], device=ref.device, dtype=ref.dtype)])
    dist.all_reduce(flat)
    total = flat[-1].item()
    flat = flat[:-1] / max(total, 1.0)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).clone()
        offset += n


class BatchShare:
    """Which rows of the global batch this rank holds: ``rows`` (b,) positions in a global
    batch of ``total`` examples (set by the training loop before each step)."""

    def __init__(self):
        self.rows = torch.zeros(0, dtype=torch.long)
        self.total = 0


class ShareDropout(nn.Module):
    """Dropout that draws the mask of the whole global batch — the very draws of the global
    RNG that a lone process makes — and applies this rank's rows of it, so data-parallel
    training drops what one process drops. An input of k·b rows (TRADES feeds clean and
    adversarial examples as one batch) is k blocks of this rank's b rows."""

    def __init__(self, p: float, share: BatchShare):
        super().__init__()
        self.p, self.share = p, share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        b, total = len(self.share.rows), self.share.total
        k = x.shape[0] // b
        fmt = (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
               and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
        noise = torch.empty((k * total, *x.shape[1:]), dtype=x.dtype, device=x.device,
                            memory_format=fmt).bernoulli_(1 - self.p).div_(1 - self.p)
        rows = torch.cat([j * total + self.share.rows.to(x.device) for j in range(k)])
        return x * noise[rows]


def share_dropout(model: nn.Module, share: BatchShare) -> nn.Module:
    """``model`` with every ``nn.Dropout`` replaced by a :class:`ShareDropout` (no weights
    change: dropout has none)."""
    for name, child in list(model.named_children()):
        if type(child) is nn.Dropout:
            setattr(model, name, ShareDropout(child.p, share))
        else:
            share_dropout(child, share)
    return model


def all_sum(values: dict[str, float], world: World) -> dict[str, float]:
    """``values`` summed over the ranks (every rank gets the sums); keys must agree."""
    if not world.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if world.device.type == "cuda":
        t = t.to(world.device)
    dist.all_reduce(t)
    return dict(zip(keys, t.cpu().tolist()))


def sync_buffers(model: nn.Module, world: World) -> None:
    """Average the model's floating-point buffers (BatchNorm running statistics) over the
    ranks, so that every rank evaluates and saves the same model."""
    if not world.distributed:
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b.div_(world.size)
