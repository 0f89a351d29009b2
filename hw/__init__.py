"""Signal sources of the vehicle: where CAN frames come from and what they mean.

`hw.sources` gives frames (a live bus through python-can, or a recorded log replayed
in real time), `hw.dbc` turns the frames of one bus into named signal values. Nothing
here knows about assignments or the server; the agent wires these together.
"""
