"""The analysts' Python API.

    import oodida
    fleet = oodida.connect()                     # the credential file (OODIDA_CREDENTIALS, ~/.config/oodida/)
    a = fleet.submit(signals=["SPEED"], window="5s", iterations=4, on_board=["mean", "histogram"])
    results = a.wait(progress=True)
    results.to_pandas()                          # tidy rows: see oodida.client.records.COLUMNS

`connect()` gives a synchronous `Client` (scripts and notebooks); `AsyncClient` has
the same methods as coroutines. Both import only `wire`, `link` and oodida's base
modules, never the server or the agent.
"""

from oodida.client.aio import AsyncAssignment, AsyncClient, DeployOutcome, SpecError, build_spec, connect_async
from oodida.client.config import ConfigurationError
from oodida.client.protocol import AnalystClient, ConnectionLost, HandshakeRefused, RequestFailed
from oodida.client.records import COLUMNS
from oodida.client.results import MissingExtra, Results
from oodida.client.sync import Assignment, Client, connect

__all__ = [
    "COLUMNS", "AnalystClient", "Assignment", "AsyncAssignment", "AsyncClient", "Client", "ConfigurationError",
    "ConnectionLost", "DeployOutcome", "HandshakeRefused", "MissingExtra", "RequestFailed", "Results", "SpecError",
    "build_spec", "connect", "connect_async",
]
