"""`Client`: the analysts' API without `await`, for scripts and notebooks.

A notebook already runs an event loop in its main thread, so `asyncio.run()` cannot
be used there, and nesting loops (nest_asyncio) breaks other libraries. Each
`Client` therefore runs its own event loop in a background thread and hands it the
`AsyncClient`'s coroutines; every method blocks until its answer, wherever it is
called from: a script, a notebook cell, or a thread of an asyncio program.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from oodida.client.aio import AsyncAssignment, AsyncClient, DeployOutcome
from oodida.client.results import Results
from oodida.wire.messages import AssignmentInfo, StatusReply

T = TypeVar("T")


class _LoopThread:
    """An event loop of our own, in a daemon thread, until `stop()`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="oodida-client", daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # a script that never closes its client exits quietly

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a Client's method called from its own loop: use the AsyncClient there")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:  # Ctrl-C in the calling thread: stop the request too
            future.cancel()
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> T:
            return await agen.__anext__()

        try:
            while True:
                try:
                    yield self.run(step())
                except StopAsyncIteration:
                    return
        finally:
            if self.loop.is_running():
                self.run(_aclose(agen))

    def stop(self) -> None:
        """Cancel what still runs on the loop (a reader, a follow left half-read), then
        stop it; idempotent."""
        atexit.unregister(self.stop)
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(5)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _aclose(agen: Any) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        await close()


async def _connect(credentials: Any, options: dict[str, Any]) -> AsyncClient:
    return await AsyncClient.connect(credentials, **options)


class Client:
    """The synchronous client: the same methods as `AsyncClient`, without `await`.
    Close it with `close()` or use it in a `with` block."""

    def __init__(self, client: AsyncClient, runner: _LoopThread) -> None:
        self._async = client
        self._runner = runner

    @classmethod
    def connect(cls, credentials: str | os.PathLike[str] | None = None, **options: Any) -> Client:
        """See `oodida.connect`."""
        runner = _LoopThread()
        try:
            client = runner.run(_connect(credentials, options))
        except BaseException:
            runner.stop()
            raise
        return cls(client, runner)

    @property
    def aio(self) -> AsyncClient:
        """The `AsyncClient` underneath (its coroutines run on this client's loop only)."""
        return self._async

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        """Close the connection and stop the client's loop thread."""
        try:
            self._run(self._async.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<oodida.Client {self._async.protocol.channel.peer}>"

    # --- the fleet -------------------------------------------------------------------

    def status(self) -> StatusReply:
        """The server's status message as it came (vehicles, assignments, sandbox)."""
        return self._run(self._async.status())

    def vehicles(self, *, as_frame: bool | None = None) -> Any:
        """The connected vehicles and their status (a DataFrame with pandas, else records)."""
        return self._run(self._async.vehicles(as_frame=as_frame))

    def assignments(self, *, as_frame: bool | None = None) -> Any:
        """Every assignment the server knows, with its state and progress."""
        return self._run(self._async.assignments(as_frame=as_frame))

    def signals(self, *, vehicle: str | None = None, as_frame: bool | None = None) -> Any:
        """The signals the vehicles can serve (see `AsyncClient.signals`)."""
        return self._run(self._async.signals(vehicle=vehicle, as_frame=as_frame))

    # --- assignments -----------------------------------------------------------------

    def submit(self, signals: Any = None, window: Any = "5s", iterations: int = 1, on_board: Any = ("count",),
               off_board: Any = "fleet", params: dict[str, Any] | None = None, **options: Any) -> Assignment:
        """Start an assignment (see `AsyncClient.submit` and `build_spec`)."""
        handle = self._run(self._async.submit(signals, window, iterations, on_board, off_board, params, **options))
        return Assignment(self, handle)

    def assignment(self, assignment: int) -> Assignment:
        """A handle on an assignment by its number."""
        return Assignment(self, self._async.assignment(assignment))

    def info(self, assignment: int) -> AssignmentInfo:
        """The assignment's entry in the server's status (state, iterations done)."""
        return self._run(self._async.info(assignment))

    def results(self, assignment: int, *, since: int = 0, iteration: int | None = None) -> Results:
        """The iterations closed so far (after `since`, or only `iteration`)."""
        return self._run(self._async.results(assignment, since=since, iteration=iteration))

    def follow(self, assignment: int, *, since: int = 0) -> Iterator[Results]:
        """Each iteration as it closes, until the assignment ends."""
        return self._runner.iterate(self._async.follow(assignment, since=since))

    def wait(self, assignment: int, *, progress: bool | None = None, **options: Any) -> Results:
        """Until the assignment ends; all its results (see `AsyncClient.wait`)."""
        return self._run(self._async.wait(assignment, progress=progress, **options))

    def cancel(self, assignment: int) -> str:
        """Stop the assignment after its current iteration; returns its state."""
        return self._run(self._async.cancel(assignment))

    def deploy(self, assignment: int, module: Any, side: str = "on_board", **options: Any) -> DeployOutcome:
        """Replace the assignment's module on one side (see `AsyncClient.deploy`)."""
        return self._run(self._async.deploy(assignment, module, side, **options))

    def rollback(self, assignment: int, hash_prefix: str, side: str | None = None, **options: Any) -> DeployOutcome:
        """Deploy an earlier version again (see `AsyncClient.rollback`)."""
        return self._run(self._async.rollback(assignment, hash_prefix, side, **options))

    def versions(self, assignment: int, *, as_frame: bool | None = None) -> Any:
        """Every deploy of the assignment's modules."""
        return self._run(self._async.versions(assignment, as_frame=as_frame))


class Assignment:
    """A submitted assignment: `wait`, `results`, `follow`, `deploy`, `versions`,
    `rollback`, `cancel` as the client's, for this one."""

    def __init__(self, client: Client, handle: AsyncAssignment) -> None:
        self.client = client
        self._handle = handle

    @property
    def id(self) -> int:
        return self._handle.id

    @property
    def vehicles(self) -> list[str]:
        return self._handle.vehicles

    @property
    def spec(self) -> Any:
        return self._handle.spec

    def __repr__(self) -> str:
        return f"<Assignment {self.id} on {len(self.vehicles)} vehicles>"

    def __int__(self) -> int:
        return self.id

    def info(self) -> AssignmentInfo:
        return self.client.info(self.id)

    def state(self) -> str:
        return self.info().state

    def wait(self, progress: bool | None = None, **options: Any) -> Results:
        return self.client.wait(self.id, progress=progress, **options)

    def results(self, *, since: int = 0, iteration: int | None = None) -> Results:
        return self.client.results(self.id, since=since, iteration=iteration)

    def follow(self, *, since: int = 0) -> Iterator[Results]:
        return self.client.follow(self.id, since=since)

    def cancel(self) -> str:
        return self.client.cancel(self.id)

    def deploy(self, module: Any, side: str = "on_board", **options: Any) -> DeployOutcome:
        return self.client.deploy(self.id, module, side, **options)

    def rollback(self, hash_prefix: str, side: str | None = None, **options: Any) -> DeployOutcome:
        return self.client.rollback(self.id, hash_prefix, side, **options)

    def versions(self, *, as_frame: bool | None = None) -> Any:
        return self.client.versions(self.id, as_frame=as_frame)


def connect(credentials: str | os.PathLike[str] | None = None, **options: Any) -> Client:
    """Connect to the server as the analyst of a credential file: `credentials`,
    else $OODIDA_CREDENTIALS, else ~/.config/oodida/credentials.toml. Options:
    `server="HOST:PORT"` (default $OODIDA_SERVER, else the file's), `ca=PEM`,
    `timeout` (seconds). Works in scripts and in notebooks alike."""
    return Client.connect(credentials, **options)
