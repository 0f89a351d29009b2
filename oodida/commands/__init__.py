"""The commands of `oodida` that run on the analyst's or the operator's machine and
talk to a server over the network (`submit`, `status`, `results`, `plot`, `cancel`,
`deploy`, `rollback`, `versions`, `signals`), `check`, and the one parser that reads
them together with the server package's own commands (`server`, `init`,
`credentials`: oodida.server.cli and oodida.server.admin_cli).

They are built on the analysts' client (oodida.client), which the server package may
not import: a server does not need the code that dials one.
"""
