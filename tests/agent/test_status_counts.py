"""What an agent's status tells the operator about input it could not use: error and
remote frames, unreadable log lines and late samples, each counted as what it is."""

from __future__ import annotations

from pathlib import Path

from oodida.agent.config import AgentConfig, LogSource, OutboxSettings, ServerLink
from oodida.agent.main import build_agent
from oodida.commands.render import render_status
from oodida.wire.messages import StatusReply, VehicleInfo
from tests.credentials import secret_file
from tests.helpers import DBC, LOG


def test_status_counts_unreadable_lines_and_shows_them(tmp_path: Path) -> None:
    lines = LOG.read_text().splitlines()[:2000]
    lines[10] = "(1.1) can0 123#0200 trailing words"  # too many values to unpack
    lines[20] = "garbage"
    log = tmp_path / "damaged.log"
    log.write_text("\n".join(lines) + "\n")
    config = AgentConfig(
        vehicle="car-1",
        server=ServerLink(secret_file=secret_file(tmp_path), host="127.0.0.1", port=1, plain=True),
        sources=[LogSource(path=str(log), dbc=str(DBC), speed=0)],
        outbox=OutboxSettings(path=str(tmp_path / "outbox.sqlite3")),
    )
    agent = build_agent(config)
    try:
        status = agent.status()  # the log is read when the source opens: its lines are counted by then
    finally:
        agent.outbox.close()
    assert status.unreadable_lines == 2
    assert status.error_frames == 0 and status.remote_frames == 0 and status.late_samples == 0
    reply = StatusReply(vehicles=[VehicleInfo(vehicle="car-1", address="127.0.0.1:5000", connected_at=0.0,
                                              status=status)], assignments=[], id=1, server_time=1.0)
    assert "unreadable log lines 2" in render_status(reply)
