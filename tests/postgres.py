"""A throw-away PostgreSQL cluster for tests: initdb in a temporary directory, run as an
unprivileged user (postgres refuses root), loopback only, trust auth (nothing else can reach
it: 127.0.0.1 and a private socket dir), fsync off since the data is thrown away."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install postgresql"
USER = "nobody"


def bindir() -> Path | None:
    """Where initdb/pg_ctl/postgres are: pg_config --bindir, Debian's versioned dir, PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if shutil.which("postgres"):
        candidates.append(Path(shutil.which("postgres") or "").parent)
    for d in candidates:
        if all((d / n).is_file() for n in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def problem() -> str | None:
    if bindir() is None:
        return f"PostgreSQL (initdb, pg_ctl, postgres) is not installed: {INSTALL}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgresql]'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cluster(db: str = "oodida") -> Iterator[str]:
    """Start a cluster, create `db`, yield its URL; stop it (fast) and remove it after."""
    bins = bindir()
    assert bins is not None, problem()
    root = Path(tempfile.mkdtemp(prefix="oodida-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    user = pwd.getpwuid(os.getuid()).pw_name
    prefix: list[str] = []
    if os.getuid() == 0:
        user = USER
        ent = pwd.getpwnam(USER)
        os.chmod(root, 0o755)
        os.chown(root, ent.pw_uid, ent.pw_gid)
        os.chown(sock, ent.pw_uid, ent.pw_gid)
        prefix = ["runuser", "-u", USER, "--"]
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(prefix + [str(bins / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                             "--no-sync", "-E", "UTF8"], check=True, capture_output=True, env=env)
    subprocess.run(prefix + [str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                             "-o", f"-k {sock} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off"
                             " -c synchronous_commit=off -c full_page_writes=off",
                             "start"], check=True, capture_output=True, env=env)
    try:
        import psycopg

        with psycopg.connect(f"postgresql://{user}@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        yield f"postgresql://{user}@127.0.0.1:{port}/{db}"
    finally:
        subprocess.run(prefix + [str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                                 "stop"], capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    t = time.perf_counter()
    with cluster() as url:
        print(url, f"started in {time.perf_counter() - t:.2f} s")
