"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes of CBOR.

The announced length is checked against the maximum as soon as the 4 header bytes are
in, before any of the body is buffered: a peer cannot make us hold more than
`max_frame` bytes (plus one read) by announcing a huge frame.
"""

from __future__ import annotations

import struct

from oodida.wire.errors import LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


def encode_frame(payload: bytes, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Prefix `payload` with its length; refuse what the peer would refuse anyway."""
    if not payload:
        raise LocalProtocolError("refusing to send an empty frame")
    if len(payload) > max_frame:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds the maximum of {max_frame}")
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frames. Feed bytes in, take frames out.

    After an error the decoder is dead (every later call raises the same error): a
    stream whose framing broke cannot be resynchronised.
    """

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1 or max_frame > 0xFFFFFFFF:
            raise ValueError(f"max_frame must be in 1..{0xFFFFFFFF}, got {max_frame}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # body length of the frame being read
        self._error: RemoteProtocolError | None = None
        self.eof = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; b"" means the peer closed its side."""
        if self._error is not None:
            raise self._error
        if not data:
            self.eof = True
            return
        if self.eof:
            raise LocalProtocolError("data received after end of stream")
        self._buf += data
        self._check_header()

    def _check_header(self) -> None:
        if self._need is None and len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length == 0:
                self._fail("empty frame (length 0)")
            if length > self.max_frame:
                self._fail(f"frame of {length} bytes exceeds the maximum of {self.max_frame}")
            self._need = length

    def _fail(self, reason: str) -> None:
        self._error = RemoteProtocolError(reason, fatal=True)
        self._buf.clear()
        raise self._error

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or None until more bytes arrive.

        At end of stream, a partial frame left in the buffer is an error: the peer
        hung up in the middle of a message.
        """
        if self._error is not None:
            raise self._error
        self._check_header()
        if self._need is not None and len(self._buf) >= HEADER.size + self._need:
            end = HEADER.size + self._need
            payload = bytes(self._buf[HEADER.size : end])
            del self._buf[:end]
            self._need = None
            # The next header is checked on the next call (or the next receive_data):
            # checking it here would lose this whole frame if the next one is bad.
            return payload
        if self.eof and self._buf:
            self._fail(f"connection closed inside a frame ({len(self._buf)} bytes of it received)")
        return None
