"""Built-in analytics methods: an on-board half per vehicle, an off-board half that
merges the vehicles' partials into exactly the fleet-wide answer.

Callers (agent, server) use the registry functions re-exported here; `Series` and
`Window` are what the agent hands in; `to_wire`/`from_wire` move partials and states
across the protocol.
"""

from oodida.analytics.arrays import from_wire, to_wire
from oodida.analytics.base import Method, MethodError
from oodida.analytics.registry import check, get_method, method_names, run_off_board, run_on_board, summarize
from oodida.analytics.series import Series, Window

__all__ = [
    "Method",
    "MethodError",
    "Series",
    "Window",
    "check",
    "from_wire",
    "get_method",
    "method_names",
    "run_off_board",
    "run_on_board",
    "summarize",
    "to_wire",
]
