"""Deciding a large batch in more than one process (``POSTSALE_DISPATCH_WORKERS``).

Deciding and rendering (``postsale.store.decide``: pure, no database) is most of a batch's CPU.
With ``workers`` = N > 1, a batch of at least ``POOL_MIN_JOBS`` customers is cut in N parts in
customer order: the first N-1 go to worker processes, the dispatcher decides the last itself,
then writes every part in order, in its own transaction. Claim, reads, writes and every
guarantee are the single-process ones; only who runs the pure middle changes. Timeline rows
keep the order the decisions were taken in, and the rows are the same bytes (the workers run
the same code on the same catalogue, templates and secret).

The workers are processes started lazily for a ``Context`` (fresh interpreters, never forks:
``serve`` runs threads), each built once (catalogue, renderer, the dialect's converters) and
reused for every batch after. Until the pool has started, batches are decided here:
no batch waits for a worker to import postsale. Small batches (what ``serve`` dispatches
right after an event) never use it: a round trip would add latency and save nothing.

A worker that dies fails the batch it was deciding: the dispatcher's transaction rolls back
(nothing written, nothing lost), the pool is dropped, and the next pass makes a new one and
takes those customers again.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from sqlalchemy import make_url

try:
    import fcntl
except ImportError:   # Windows
    fcntl = None  # type: ignore[assignment]

from postsale.spec.catalog import Catalog
from postsale.spec.model import Journey
from postsale.store.decide import Codec, Decided, Decider, Job

log = logging.getLogger("postsale.dispatch")

# Below this many customers a batch is decided here: a worker's round trip (pickling both ways,
# ~1 ms) is worth it only when its share takes well over that (~0.3 ms of CPU a customer).
POOL_MIN_JOBS = 64
# A pass starts workers only with at least this many due runs ahead of it: a worker takes a
# second or two of CPU to start (imports, templates, its own CSS skeletons), which a pass of a
# few batches never earns back on two cores (bench baseline, 1,000 customers: dispatch +
# deliver at 859 emails/s with a worker started for the pass, 1,535/s before there were
# workers). A running pool is used by every pass.
POOL_START_BACKLOG = 2_000
MAX_AUTO_WORKERS = 4


class WorkerLost(RuntimeError):
    """A dispatch worker process died while deciding a batch (the batch rolled back)."""


def auto_workers() -> int:
    """``POSTSALE_DISPATCH_WORKERS=0``: one process per core this process may run on, at most
    ``MAX_AUTO_WORKERS`` (the dispatcher's own reads, writes and commits do not split, so more
    processes than that gain little)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


def resolve_workers(workers: int) -> int:
    if workers < 0:
        raise ValueError(f"dispatch workers must be 0 (one per core) or more, not {workers}")
    return auto_workers() if workers == 0 else workers


class WorkerSpec:
    """What a worker is built from: the Context's catalogue, templates and secret, and the
    database URL (for its dialect's converters; a worker never connects, and gets no password)."""

    def __init__(self, *, url: str, catalog: Catalog, templates: Path, secret: str, renderer: Any) -> None:
        self.url = make_url(url).set(password=None).render_as_string(hide_password=False)
        self.catalog = catalog
        self.templates = Path(templates)
        self.secret = secret
        self._renderer = weakref.ref(renderer)   # the renderer built from these; not sent

    def describes(self, ctx: Any) -> bool:
        """Whether a worker built from this renders what ``ctx`` renders."""
        return ctx.catalog is self.catalog and ctx.renderer is self._renderer()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "catalog": self.catalog, "templates": self.templates, "secret": self.secret}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._renderer = lambda: None


# ------------------------------------------------------------------ the dispatcher's side

@dataclass
class _State:
    """What one Context keeps for deciding: its own Decider, and its pool once made."""
    decider: Decider
    pool: "_Pool | None" = None
    disabled: bool = False      # the workers could not start: decide here from now on


_lock = threading.Lock()


def _state(ctx: Any) -> _State:
    state = ctx._dispatch_state
    if (state is None or state.decider.renderer is not ctx.renderer or state.decider.catalog is not ctx.catalog
            or state.decider.codec.dialect is not ctx.engine.dialect):
        with _lock:
            old = ctx._dispatch_state
            if old is not None and old.pool is not None:
                old.pool.close()
            state = ctx._dispatch_state = _State(Decider(ctx.catalog, ctx.renderer, Codec(ctx.engine.dialect)))
    return state


def pool_running(ctx: Any) -> bool:
    """Whether ``ctx`` has worker processes already (started by an earlier pass or by hand)."""
    state = getattr(ctx, "_dispatch_state", None)
    return state is not None and state.pool is not None and not state.pool.broken


def decide_batch(ctx: Any, jobs: Sequence[Job], journeys: Mapping[int, Journey | None], now: datetime,
                 workers: int) -> list[Decided]:
    """Decide ``jobs``: the parts in customer order, together covering every job once."""
    state = _state(ctx)
    workers = resolve_workers(workers)
    pool = _pool(ctx, state, workers) if workers > 1 and len(jobs) >= POOL_MIN_JOBS else None
    # one batch at a time per pool (a worker's replies come in the order it was asked): a
    # thread that finds it busy (flows run tasks in threads) decides its batch here
    if pool is None or not pool.ready() or not pool.busy.acquire(blocking=False):
        return [state.decider.decide(jobs, journeys, now)]
    try:
        return _decide_shared(pool, state.decider, ctx.catalog, jobs, journeys, now)
    finally:
        pool.busy.release()


def _decide_shared(pool: "_Pool", decider: Decider, catalog: Catalog, jobs: Sequence[Job],
                   journeys: Mapping[int, Journey | None], now: datetime) -> list[Decided]:
    cuts = _cuts(len(jobs), pool.processes + 1)
    refs = _refs(journeys, catalog)
    sent = [pool.submit(n, jobs[start:end], refs, now) for n, (start, end) in enumerate(cuts[:-1])]
    start, end = cuts[-1]
    try:
        local = decider.decide(jobs[start:end], journeys, now)
    finally:
        # every reply is read, even when this part failed: a worker's next part must not
        # be answered with this one's result
        results = [_settle(pool, worker) for worker in sent]
    return [_unwrap(r) for r in results] + [local]


def _settle(pool: "_Pool", worker: "_Worker") -> tuple[bool, Any]:
    try:
        return True, pool.result(worker)
    except BaseException as exc:   # noqa: BLE001 (raised by _unwrap, in part order)
        return False, exc


def _unwrap(result: tuple[bool, Any]) -> Decided:
    ok, value = result
    if not ok:
        raise value
    return value


def start_workers(ctx: Any, workers: int | None = None, *, timeout: float | None = None) -> bool:
    """Start ``ctx``'s worker processes now rather than at the first large batch; with
    ``timeout``, wait up to that long for them to be ready. True once they are."""
    workers = resolve_workers(ctx.dispatch_workers if workers is None else workers)
    pool = _pool(ctx, _state(ctx), workers) if workers > 1 else None
    if pool is None:
        return False
    deadline = None if timeout is None else time.monotonic() + timeout
    while not pool.ready():
        if pool.broken or deadline is None or time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _cuts(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, end) ranges over ``total`` jobs, as equal as can be."""
    size, extra = divmod(total, parts)
    cuts, start = [], 0
    for n in range(parts):
        end = start + size + (1 if n < extra else 0)
        cuts.append((start, end))
        start = end
    return cuts


def _refs(journeys: Mapping[int, Journey | None], catalog: Catalog) -> dict[int, Any]:
    """Journey versions as a worker finds them: the id of a catalogue journey (the worker has
    the same catalogue), the journey itself for an older version, None for a removed one."""
    return {vid: (None if j is None else j.id if catalog.journeys.get(j.id) is j else j)
            for vid, j in journeys.items()}


def _pool(ctx: Any, state: _State, workers: int) -> "_Pool | None":
    spec = getattr(ctx, "worker_spec", None)
    if spec is None or not spec.describes(ctx) or state.disabled:
        return None   # a Context not built from files (tests with stand-in renderers): decide here
    pool = state.pool
    if pool is not None and pool.failed_start:
        state.disabled = True
        pool.close()
        state.pool = None
        return None
    if pool is not None and (pool.broken or pool.processes != workers - 1):
        pool.close()
        pool = state.pool = None
    if pool is None:
        with _lock:
            if state.pool is None:
                try:
                    state.pool = _Pool(spec, workers - 1)
                except OSError as exc:   # no interpreter to start, no processes left
                    log.error("dispatch workers could not start, deciding in this process: %s", exc)
                    state.disabled = True
                    return None
                weakref.finalize(ctx, state.pool.close)
            pool = state.pool
    return pool


class _Pool:
    """``processes`` worker processes, each deciding one part of a batch at a time."""

    def __init__(self, spec: WorkerSpec, processes: int) -> None:
        self.processes = processes
        self.broken = False
        self.failed_start = False
        self.busy = threading.Lock()
        self._ready = False
        self.workers: list[_Worker] = []
        try:
            for _ in range(processes):
                self.workers.append(_Worker(spec))
        except BaseException:
            self.close()
            raise

    def ready(self) -> bool:
        """Whether every worker has built its Decider (never waits)."""
        if not self._ready:
            try:
                self._ready = all([w.started() for w in self.workers])
            except WorkerLost as exc:
                log.error("dispatch workers failed to start, deciding in this process: %s", exc)
                self.broken = self.failed_start = True
        return self._ready and not self.broken

    def submit(self, part: int, jobs: Sequence[Job], refs: dict[int, Any], now: datetime) -> "_Worker":
        worker = self.workers[part]
        self._guard(worker.send, ("decide", list(jobs), refs, now))
        return worker

    def result(self, worker: "_Worker") -> Decided:
        return self._guard(worker.receive)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except WorkerLost:
            self.close()
            raise

    def close(self) -> None:
        self.broken = True
        for worker in self.workers:
            worker.close()


class _Worker:
    """One worker process (``python -c _BOOT``) and the pipe pair it is driven through.

    A plain interpreter, not ``multiprocessing``: its ``spawn`` and ``forkserver`` run the
    parent's ``__main__`` again in the child, and a script that calls ``dispatch`` without an
    ``if __name__ == "__main__"`` guard would dispatch again from the worker. Frames are
    length-prefixed pickles; a thread reads the replies so that ``started`` never blocks.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        _widen(self.proc.stdin, self.proc.stdout)
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self._started = False
        self._closed = False
        threading.Thread(target=self._read, name=f"dispatch-worker-{self.proc.pid}", daemon=True).start()
        self.send(list(sys.path))        # first: where to import postsale from (plain strings)
        self.send(("init", spec))

    def started(self) -> bool:
        if not self._started:
            try:
                reply = self.replies.get_nowait()
            except queue.Empty:
                return False
            self._check(reply)
            self._started = True
        return True

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)))
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:   # broken pipe: the worker is gone
            raise WorkerLost(f"dispatch worker {self.proc.pid} is gone: the batch is rolled back and retried") from exc

    def receive(self) -> Any:
        if not self._started:
            self._check(self.replies.get())
            self._started = True
        return self._check(self.replies.get())

    def _check(self, reply: Any) -> Any:
        if reply is _GONE:
            code = self.proc.poll()
            raise WorkerLost(f"dispatch worker {self.proc.pid} died (exit {code}): "
                             "the batch is rolled back and retried")
        kind, value = reply
        if kind == "error":
            raise value
        return value

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                self.replies.put(pickle.loads(_read_frame(stream)))
        except Exception:   # noqa: BLE001 (EOF or a torn frame: the worker is gone)
            self.replies.put(_GONE)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.proc.stdin.close()      # a started worker exits at the end of its input
        except OSError:
            pass
        if self._started:
            try:
                self.proc.wait(timeout=1)
                return
            except subprocess.TimeoutExpired:
                pass
        # still importing, or stuck: it holds nothing (no database, no files), so a short
        # run never waits for a worker it did not get to use
        self.proc.kill()
        self.proc.wait()


_GONE = object()
_HEADER = struct.Struct("!Q")

# The worker's first frame is the parent's sys.path, so that it imports the same postsale.
_BOOT = ("import pickle, struct, sys; "
         "n, = struct.unpack('!Q', sys.stdin.buffer.read(8)); "
         "sys.path[:] = pickle.loads(sys.stdin.buffer.read(n)); "
         "from postsale.store.workers import serve; serve()")


def _widen(*pipes: Any) -> None:
    """Pipes of 1 MiB where Linux allows (64 KiB by default): a part's rows (~3 KB a
    customer, mostly HTML) then cross in a few reads instead of one per 64 KiB."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl else None
    if set_size is None:
        return
    for pipe in pipes:
        try:
            fcntl.fcntl(pipe.fileno(), set_size, 1 << 20)
        except OSError:   # above /proc/sys/fs/pipe-max-size: the default is fine too
            pass


def _read_frame(stream: Any) -> bytes:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


# ------------------------------------------------------------------ the worker's side

def serve() -> None:
    """A worker's loop: build the Decider, then decide each part sent until the input ends."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                     # anything printed goes to stderr, never into the frames
    sys.stdout = sys.stderr
    stream = sys.stdin.buffer
    decider = None
    while True:
        try:
            message = pickle.loads(_read_frame(stream))
        except EOFError:
            return
        try:
            if message[0] == "init":
                decider = _build(message[1])
                reply: tuple = ("ok", os.getpid())
            else:
                _, jobs, refs, now = message
                catalog = decider.catalog
                journeys = {vid: (catalog.journeys[ref] if isinstance(ref, str) else ref) for vid, ref in refs.items()}
                reply = ("ok", decider.decide(jobs, journeys, now))
        except BaseException as exc:   # noqa: BLE001 (the dispatcher raises it: its batch fails)
            reply = ("error", exc)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:   # noqa: BLE001 (an exception that does not pickle)
            data = pickle.dumps(("error", RuntimeError(repr(reply[1]))), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_HEADER.pack(len(data)))
        out.write(data)
        out.flush()


def _build(spec: WorkerSpec) -> Decider:
    """This worker's Decider: the Context's catalogue, a renderer on the same templates and
    secret, the converters of the same dialect."""
    from models import create_db_engine
    from postsale.links import Links
    from postsale.render.templates import TemplateRenderer
    dialect = create_db_engine(spec.url).dialect   # never connected: the converters are all it needs
    links = Links(spec.secret, spec.catalog.policy.public_url)
    renderer = TemplateRenderer(spec.templates, spec.catalog.policy, links)
    _warm(renderer, spec.templates)
    return Decider(spec.catalog, renderer, Codec(dialect))


def _warm(renderer: Any, templates: Path) -> None:
    """Compile every template variant now, while the dispatcher still decides alone, rather
    than in the first batch that needs it. A template that fails stays for the render to report."""
    for path in sorted(templates.glob("*.html.j2")):
        name, _, rest = path.name.partition(".")
        if name.startswith("_"):
            continue
        locale = rest[:-len("html.j2")].rstrip(".") or None
        try:
            renderer.compile(name, locale)
        except Exception:   # noqa: BLE001 (reported when a send renders it)
            pass
