"""The base every oodida package stands on: the error root, resource limits, logging
set-up, inert text, signing primitives, metrics helpers and service glue.

It imports nothing of oodida's own (import-linter holds it to that, see
`tests/test_architecture.py`), so `wire`, the bottom of the protocol stack, can
depend on it without depending on the application shell in `oodida/`.
"""
