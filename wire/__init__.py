"""The protocol, sans-IO: messages, CBOR encoding, framing and the connection state
machine. No sockets, no asyncio, no numpy: `link` and the services do the I/O."""

from oodida.wire import scram
from oodida.wire.connection import CLOSED, NEED_DATA, Connection, Side, State, version_problem
from oodida.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, ValidationError
from oodida.wire.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from oodida.wire.messages import PROTOCOL_VERSION, ErrorCode, Role

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FRAME",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Connection",
    "ErrorCode",
    "FrameDecoder",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "Side",
    "State",
    "ValidationError",
    "encode_frame",
    "scram",
    "version_problem",
]
