"""The agent's `[signing]` section: key files relative to the config, every problem a
config error with the reason (exit 2 from `oodida agent`), unknown keys refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oodida.agent.config import ConfigError, load_agent_config
from oodida.core.signing import generate_key
from tests.helpers import DBC, LOG

BASE = f"""vehicle = "car-1"
[server]
secret_file = "vehicle.secret"
plain = true
[[sources]]
kind = "log"
path = "{LOG}"
dbc = "{DBC}"
"""


def secret(folder: Path) -> None:
    """The vehicle's secret file, next to the config (readable by its owner only)."""
    path = folder / "vehicle.secret"
    path.write_text("a-long-enough-secret\n")
    path.chmod(0o600)


def write(tmp_path: Path, signing: str) -> Path:
    secret(tmp_path)
    path = tmp_path / "agent.toml"
    path.write_text(BASE + "[signing]\n" + signing)
    return path


def test_trusted_keys_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "keys").mkdir()
    generate_key(tmp_path / "keys" / "alice")
    config = load_agent_config(write(tmp_path, 'require = true\ntrusted_keys = ["keys/alice.pub"]\n'))
    assert config.signing.require
    assert config.signing.trusted_keys == [str((tmp_path / "keys" / "alice.pub").resolve())]


def test_no_signing_section_means_nothing_required(tmp_path):
    secret(tmp_path)
    path = tmp_path / "agent.toml"
    path.write_text(BASE)
    config = load_agent_config(path)
    assert not config.signing.require and config.signing.trusted_keys == []


@pytest.mark.parametrize(
    "signing, reason",
    [
        ('require = true\ntrusted_keys = ["nobody.pub"]\n', "cannot read public key .*nobody.pub"),
        ('require = true\ntrusted_keys = ["junk.pub"]\n', "junk.pub is not a PEM public key"),
        ("require = true\n", "require = true needs trusted_keys"),
        ('require = true\ntrusted_key = ["alice.pub"]\n', "unknown field `trusted_key`"),
        ('require = "yes"\n', "Expected `bool`"),
    ],
)
def test_a_bad_signing_section_is_a_config_error_with_the_reason(tmp_path, signing, reason):
    generate_key(tmp_path / "alice")
    (tmp_path / "junk.pub").write_text("not a key\n")
    with pytest.raises(ConfigError, match=reason):
        load_agent_config(write(tmp_path, signing))


def test_oodida_agent_exits_2_on_a_missing_key_file(tmp_path):
    path = write(tmp_path, 'require = true\ntrusted_keys = ["gone.pub"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "oodida", "agent", "--config", str(path)], capture_output=True, text=True, timeout=60,
        check=False
    )
    assert proc.returncode == 2
    assert "trusted_keys: cannot read public key" in proc.stderr and "gone.pub" in proc.stderr
