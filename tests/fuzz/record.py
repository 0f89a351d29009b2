"""Record the frames of real sessions into `tests/fuzz/corpus/sessions.cbor`.

    python -m tests.fuzz.record

Starts a real server and one real agent (replaying the recorded RAV4 drive), puts a
recording TCP proxy between them and between the server and an analyst, and runs what
analysts and vehicles do: handshakes, vehicle status, two assignments (built-in
methods; an analyst's module with an off-board step), their tasks, results and
acknowledgements, a followed results stream, a deploy of a new module version, the
version table, a cancel, and an error. Each connection is stored as its role and its
frames in order, each with its direction ("c2s": client to server, "s2c").

Recorded once and committed, not at test time: a recording takes half a minute, the
fuzz tests a second to load it. Re-record after a protocol change. The mutation fuzzer
uses the handshake frames only to fuzz the handshake itself; authenticated fuzzing
connects with `harness.authenticate` and then sends mutations of the recorded
post-handshake frames, so a new handshake (TLS, challenge-response) needs no new
recording for that.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import cbor2

from oodida.testing import LocalFleet
from oodida.wire.framing import FrameDecoder
from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec

CORPUS = Path(__file__).with_name("corpus") / "sessions.cbor"

ON_BOARD = ModuleSource(
    name="peak.py", source="def on_board(window, params, state):\n    return {'n': len(window['SPEED'].v)}\n"
)
ON_BOARD_V2 = ModuleSource(
    name="peak.py", source="def on_board(window, params, state):\n    return {'n': 2 * len(window['SPEED'].v)}\n"
)
OFF_BOARD = ModuleSource(
    name="total.py",
    source="def off_board(results, params, state):\n    return {'total': sum(r['n'] for r in results.values())}\n",
)


class Recorder:
    """A TCP proxy that keeps every frame of every connection, split by direction."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.sessions: list[dict[str, Any]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:  # the server is not listening yet: the client retries
            writer.close()
            return
        frames: list[list[Any]] = []
        self.sessions.append({"frames": frames})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
            decoder = FrameDecoder(max_frame=1 << 30)
            try:
                while data := await src.read(65536):
                    decoder.receive_data(data)
                    while (payload := decoder.next_frame()) is not None:
                        frames.append([direction, payload])
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, "c2s"), pump(up_reader, writer, "s2c"))


def role_of(session: dict[str, Any]) -> str | None:
    for direction, payload in session["frames"]:
        if direction == "c2s":
            hello = cbor2.loads(payload)
            return hello.get("role") if isinstance(hello, dict) else None
    return None


async def analyst_work(fleet: LocalFleet) -> None:
    from oodida.client.protocol import RequestFailed

    client = await fleet.client()
    other = await fleet.client()  # a results stream holds its client until it ends
    try:
        await fleet.wait_connected(client)
        window = WindowSpec(amount=0.5, kind="next")
        built_in = await client.submit(
            AssignmentSpec(signals=["SPEED"], window=window, iterations=2, on_board=["mean", "max"], name="speeds")
        )
        async for _ in client.results(built_in.assignment, follow=True):
            pass
        module = await client.submit(
            AssignmentSpec(signals=["SPEED"], window=window, iterations=0, on_board_module=ON_BOARD,
                           off_board_module=OFF_BOARD, name="modules", deadline=5.0)
        )
        seen = 0
        async for _report in client.results(module.assignment, follow=True):
            seen += 1
            if seen == 2:
                async for _ in other.deploy(assignment=module.assignment, side="on_board", module=ON_BOARD_V2):
                    pass
            if seen == 4:
                await other.versions(module.assignment)
                await other.cancel(module.assignment)
        await client.status()
        try:
            await client.versions(10_000)  # an error reply, recorded too
        except RequestFailed:
            pass
    finally:
        await client.close()
        await other.close()


async def record(workdir: Path) -> list[dict[str, Any]]:
    fleet = LocalFleet(workdir, vehicles=1, speed=1.0, signals=["SPEED"], tls=False)  # the bytes, not ciphertext
    try:
        fleet.start_server()
        recorder = Recorder(fleet.port)
        proxy = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
        fleet.port = proxy.sockets[0].getsockname()[1]  # the agent and the analyst dial the proxy
        fleet.start_agent(0)
        await asyncio.wait_for(analyst_work(fleet), 120)
    finally:
        fleet.stop()
    await asyncio.sleep(0.5)
    proxy.close()
    sessions = []
    for session in recorder.sessions:
        role = role_of(session)
        if role is not None:  # (fleet.client() retries may leave empty connections)
            sessions.append({"role": role, "frames": session["frames"]})
    return sessions


def load() -> list[dict[str, Any]]:
    """The recorded sessions: [{"role": "vehicle"|"analyst", "frames": [[dir, bytes]]}]."""
    return cbor2.loads(CORPUS.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oodida-record-") as tmp:
        try:
            sessions = asyncio.run(record(Path(tmp)))
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
            raise
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(cbor2.dumps(sessions))
    for s in sessions:
        kinds: dict[str, int] = {}
        for direction, payload in s["frames"]:
            kind = f"{direction}:{cbor2.loads(payload).get('type')}"
            kinds[kind] = kinds.get(kind, 0) + 1
        print(s["role"], kinds)
    print(f"{len(sessions)} sessions, {sum(len(s['frames']) for s in sessions)} frames -> {args.out}")


if __name__ == "__main__":
    main()
