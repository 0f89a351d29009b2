"""The throw-away PostgreSQL of tests/postgres.py is a real server: a version, a non-root
owner, loopback only, and two connections that see each other's commits."""

from __future__ import annotations

import psycopg


def test_the_cluster_is_a_real_postgresql_15_plus(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
        num = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]  # type: ignore[index]
    assert version.startswith("PostgreSQL") and num >= 150000
    assert user != "root"
    assert listen == "127.0.0.1"


def test_a_second_connection_sees_a_committed_row(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as a, psycopg.connect(postgres_url) as b:
        a.execute("CREATE TABLE harness (v int)")
        a.execute("INSERT INTO harness VALUES (42)")
        a.commit()
        assert b.execute("SELECT v FROM harness").fetchall() == [(42,)]
        assert a.info.backend_pid != b.info.backend_pid
