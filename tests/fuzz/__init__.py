"""Hostile input against the wire decoder and a real server process: hypothesis
properties, a mutation fuzzer over recorded real sessions, and network abuse (slow
senders, floods, half-open connections). Every test reports how many inputs it tried
(see `report.py`); `python -m tests.fuzz.campaign --minutes N` runs a longer campaign."""
