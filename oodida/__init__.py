"""oodida: distributed data analytics on fleets of connected vehicles.

`oodida.connect()` is the analysts' entry point (see `oodida.client`); it is loaded
on first use, so the agent and the server, which import `oodida.core.errors` and the
like, never load the client.
"""

from typing import Any

__all__ = ["connect", "connect_async", "Client", "AsyncClient"]


def __getattr__(name: str) -> Any:
    if name in __all__ or name == "client":
        import oodida.client as client

        return client if name == "client" else getattr(client, name)
    raise AttributeError(f"module 'oodida' has no attribute {name!r}")
