"""A serial device (a GPS receiver on /dev/ttyUSB0, a pty in tests) through pyserial.

Only opening, reading and closing: what the bytes mean is `hw.nmea`'s job, and when to
reopen is the agent's. pyserial's errors are translated into `SourceError` here, at
the boundary, once, as `hw.bus` does for python-can: a USB receiver that is pulled out
raises `SerialException` on one kernel, `OSError` (EIO) on another, and "ready to read
but returned no data" on a third, and the caller only needs to know "the device is gone".
"""

from __future__ import annotations

import serial

from oodida.hw.errors import SourceError

# How long one read may block: the bound on how late a stop request is noticed.
READ_TIMEOUT = 0.1


class SerialPort:
    """One serial port, opened on demand; `port` is a device path or any pyserial URL
    (`socket://host:port`, `rfc2217://...`), so a receiver behind a network bridge works too."""

    def __init__(self, port: str, baudrate: int = 9600, *, read_timeout: float = READ_TIMEOUT) -> None:
        self.port = port
        self.baudrate = baudrate
        self._read_timeout = read_timeout
        self._serial: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def describe(self) -> str:
        return f"serial {self.port} at {self.baudrate} Bd"

    def open(self) -> None:
        """Open the device; `SourceError` if it is absent, busy or refuses the settings."""
        self.close()
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self._read_timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open {self.describe()}: {exc}") from exc

    def read(self) -> bytes:
        """What the device sent: blocks until the first byte or `read_timeout` (then
        b""), and returns it with everything already waiting behind it, so a burst of
        sentences costs one call. `SourceError` once the device is gone."""
        device = self._serial
        if device is None:
            raise SourceError(f"{self.describe()} is not open")
        try:
            data: bytes = device.read(1)
            if data:
                waiting = device.in_waiting
                if waiting:
                    data += device.read(waiting)
            return data
        except (serial.SerialException, OSError) as exc:
            raise SourceError(f"{self.describe()} failed: {exc}") from exc

    def close(self) -> None:
        """Release the device; safe to call twice, and on a device already gone."""
        device, self._serial = self._serial, None
        if device is not None:
            try:
                device.close()
            except (serial.SerialException, OSError):
                pass  # a vanished device may refuse even to be closed; its descriptor is freed
