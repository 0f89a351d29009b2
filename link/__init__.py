"""The asyncio I/O around `wire`: one `Channel` per TCP connection.

`wire` is sans-IO and must stay so; `agent`, `server` and the analyst CLI all need the
same thin loop of "read, feed, drain events" and "encode, write". It lives here, in a
package of its own that imports only `wire` and the stdlib, so that neither service
imports the other (httpcore's `_async` layer is the model).
"""

from oodida.link.channel import (
    Channel,
    ChannelClosed,
    ChannelError,
    HandshakeRefused,
    ProtocolBroken,
    connect,
    handshake,
)

__all__ = ["Channel", "ChannelClosed", "ChannelError", "HandshakeRefused", "ProtocolBroken", "connect", "handshake"]
