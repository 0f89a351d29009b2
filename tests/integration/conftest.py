"""Integration tests run real local fleets: the `fleet` fixture is in tests/conftest.py,
each module's FleetSpec and the start-and-wait helpers in tests/fleets.py."""
