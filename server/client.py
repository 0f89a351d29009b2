"""Moved to `oodida.client.protocol` (the analysts' client may not live in the server
package: the dashboard and notebooks import it without the server). Kept so the
benchmarks and tests that import it from here go on working."""

from oodida.client.protocol import AnalystClient, RequestFailed

__all__ = ["AnalystClient", "RequestFailed"]
