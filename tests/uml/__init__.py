"""Booting user-mode Linux to run the tests that need a kernel with SocketCAN.

`host` runs on the machine (finds the UML kernel, boots it, reads what the guest
left behind); `guest` runs inside UML (loads the CAN modules, creates vcan0, runs
pytest). The host's files are the guest's root filesystem (hostfs), so both see the
same worktree and virtual environment.
"""
