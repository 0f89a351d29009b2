"""`oodida keygen NAME`: an analyst's ed25519 key pair for signing modules.

Writes the private key to NAME (mode 0600; it never leaves the analyst's machine)
and the public key to NAME.pub (for the vehicles' `[signing] trusted_keys`, and the
server's `known_keys` if it should refuse bad signatures early). Refuses to
overwrite either file.
"""

from __future__ import annotations

import argparse
import json
import sys

from oodida.core.signing import SigningError, generate_key
from oodida.core.suggest import SuggestingParser


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(
        prog="oodida keygen", description="Make an ed25519 key pair to sign your modules with (--sign)."
    )
    parser.add_argument("name", metavar="NAME", help="private key file to write; the public key goes to NAME.pub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        private, public, kid = generate_key(args.name)
    except SigningError as exc:
        print(f"oodida keygen: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"private": str(private), "public": str(public), "key_id": kid}))
    else:
        print(f"key {kid}: private key {private} (mode 0600, keep it to yourself), public key {public}")
        print(f"sign with: oodida submit ... --sign {private}   /   oodida deploy ... --sign {private}")
        print(f"vehicles trust it with [signing] trusted_keys = [\"{public.name}\"] in their agent.toml")
    return 0
