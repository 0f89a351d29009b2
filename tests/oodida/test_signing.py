"""Module signatures: what verifies, what does not, and the key files."""

from __future__ import annotations

import hashlib
import os
import stat

import cbor2
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from oodida.core.signing import (
    DOMAIN,
    SigningError,
    content_hash,
    generate_key,
    key_id,
    load_public_key,
    load_public_keys,
    load_signing_key,
    sign_spec,
    signature_problem,
    signed_message,
)
from oodida.sandbox.supervisor import source_hash
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.errors import RemoteProtocolError
from oodida.wire.messages import AssignmentSpec, LoadModule, ModuleSource, WindowSpec

MODULE = ModuleSource(name="speeding.py", source="def on_board(window, params, state):\n    return 1\n")


@pytest.fixture()
def alice(tmp_path):
    generate_key(tmp_path / "alice")
    return load_signing_key(tmp_path / "alice"), load_public_keys([tmp_path / "alice.pub"])


@pytest.fixture()
def mallory(tmp_path):
    generate_key(tmp_path / "mallory")
    return load_signing_key(tmp_path / "mallory")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_public_key(tmp_path):
    private, public, kid = generate_key(tmp_path / "alice")
    assert private == tmp_path / "alice" and public == tmp_path / "alice.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_signing_key(private)
    pub_id, pub = load_public_key(public)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == key.key_id == pub_id == key_id(pub) == hashlib.sha256(raw).hexdigest()[:16]


def test_keygen_refuses_to_overwrite_either_file(tmp_path):
    generate_key(tmp_path / "alice")
    before = (tmp_path / "alice").read_bytes()
    with pytest.raises(SigningError, match="exists; refusing to overwrite"):
        generate_key(tmp_path / "alice")
    assert (tmp_path / "alice").read_bytes() == before
    (tmp_path / "bob.pub").write_text("someone else's\n")
    with pytest.raises(SigningError, match="bob.pub exists"):
        generate_key(tmp_path / "bob")
    assert not (tmp_path / "bob").exists()  # nothing half-written
    assert (tmp_path / "bob.pub").read_text() == "someone else's\n"


def test_each_key_has_its_own_id(tmp_path):
    ids = {generate_key(tmp_path / f"k{i}")[2] for i in range(5)}
    assert len(ids) == 5 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_a_signed_module_verifies_for_its_side_under_its_key(alice):
    key, keys = alice
    signed = key.sign(MODULE, "on_board")
    assert signed.signer == key.key_id and len(signed.signature) == 64
    assert (signed.name, signed.source) == (MODULE.name, MODULE.source)
    assert signature_problem(signed, "on_board", keys, require=True) is None
    assert signature_problem(signed, "on_board", keys, require=False) is None
    # the signature covers the domain, the side and the content hash (the one the system uses everywhere)
    assert content_hash(MODULE.source) == source_hash(MODULE.source)
    keys[key.key_id].verify(signed.signature, DOMAIN + b"on_board\x00" + source_hash(MODULE.source).encode())


def test_a_tampered_source_does_not_verify(alice):
    key, keys = alice
    signed = key.sign(MODULE, "on_board")
    tampered = msgspec.structs.replace(signed, source=signed.source.replace("return 1", "return 2"))
    for require in (True, False):  # a known key whose signature fails is refused either way
        problem = signature_problem(tampered, "on_board", keys, require=require)
        assert problem is not None and "does not verify over this source" in problem and key.key_id in problem


def test_a_signature_for_the_other_side_does_not_verify(alice):
    key, keys = alice
    off = key.sign(MODULE, "off_board")
    assert signature_problem(off, "off_board", keys, require=True) is None
    assert "does not verify" in signature_problem(off, "on_board", keys, require=True)


def test_a_renamed_module_still_verifies(alice):
    key, keys = alice
    renamed = msgspec.structs.replace(key.sign(MODULE, "on_board"), name="other_name.py")
    assert signature_problem(renamed, "on_board", keys, require=True) is None


def test_an_untrusted_key_is_refused_only_when_signatures_are_required(alice, mallory):
    _, keys = alice
    signed = mallory.sign(MODULE, "on_board")
    problem = signature_problem(signed, "on_board", keys, require=True)
    assert problem is not None and f"signed by key {mallory.key_id}, which is not trusted" in problem
    assert signature_problem(signed, "on_board", keys, require=False) is None  # nothing to check it against


def test_a_signature_claimed_for_a_trusted_key_but_made_by_another_does_not_verify(alice, mallory):
    key, keys = alice
    forged = msgspec.structs.replace(mallory.sign(MODULE, "on_board"), signer=key.key_id)
    assert "does not verify" in signature_problem(forged, "on_board", keys, require=False)


def test_an_unsigned_module_is_refused_only_when_signatures_are_required(alice):
    _, keys = alice
    assert "is not signed" in signature_problem(MODULE, "on_board", keys, require=True)
    assert signature_problem(MODULE, "on_board", keys, require=False) is None


def test_malformed_signatures_are_refused_by_the_wire_and_by_the_check(alice):
    key, keys = alice
    signed = key.sign(MODULE, "on_board")
    short = msgspec.structs.replace(signed, signature=signed.signature[:63])
    assert "malformed signature (63 bytes" in signature_problem(short, "on_board", keys, require=False)
    flipped = msgspec.structs.replace(signed, signature=bytes(64))
    assert "does not verify" in signature_problem(flipped, "on_board", keys, require=False)
    with pytest.raises(ValueError, match="both its signature and its signer"):
        ModuleSource(name="a.py", source="", signature=signed.signature)

    def arrives(module: ModuleSource) -> str:
        """What the decoder of every received frame makes of a LoadModule carrying `module`."""
        message = LoadModule(assignment=1, code_hash=source_hash(MODULE.source), module=module)
        try:
            decode_payload(encode_payload(message))
        except RemoteProtocolError as exc:
            assert not exc.fatal  # a bad message, answered with the reason; the connection goes on
            return exc.reason
        return "accepted"

    assert arrives(signed) == "accepted"
    assert "length" in arrives(short) and "$.module.signature" in arrives(short)
    assert "$.module.signer" in arrives(msgspec.structs.replace(signed, signer="NOT-A-KEY-ID"))
    half = {**msgspec.to_builtins(LoadModule(assignment=1, code_hash=source_hash(MODULE.source), module=MODULE))}
    half["module"]["signer"] = signed.signer  # a signer without a signature
    with pytest.raises(RemoteProtocolError, match="both its signature and its signer"):
        decode_payload(cbor2.dumps(half))


def test_key_files_that_cannot_serve_are_refused_with_the_reason(tmp_path, alice):
    key, _ = alice
    with pytest.raises(SigningError, match="cannot read public key"):
        load_public_key(tmp_path / "nobody.pub")
    (tmp_path / "junk.pub").write_text("not a key\n")
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(key.path)  # the private key given where a public one belongs
    ec = generate_private_key(SECP256R1())
    (tmp_path / "ec.pub").write_bytes(
        ec.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningError, match="not an ed25519 public key"):
        load_public_key(tmp_path / "ec.pub")
    os.chmod(tmp_path / "junk.pub", 0o600)
    with pytest.raises(SigningError, match="not an unencrypted PEM private key"):
        load_signing_key(tmp_path / "junk.pub")
    os.chmod(key.path, 0o644)
    with pytest.raises(SigningError, match="readable by others .*chmod 600"):
        load_signing_key(key.path)
    with pytest.raises(SigningError, match="on_board or off_board"):
        signed_message("sideways", "00")


def test_sign_spec_signs_each_module_for_its_own_side(alice):
    key, keys = alice
    off = ModuleSource(name="fleet.py", source="def off_board(results, params, state):\n    return 1\n")
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board_module=MODULE, off_board_module=off)
    signed = sign_spec(key, spec)
    assert signature_problem(signed.on_board_module, "on_board", keys, require=True) is None
    assert signature_problem(signed.off_board_module, "off_board", keys, require=True) is None
    assert "does not verify" in signature_problem(signed.off_board_module, "on_board", keys, require=True)
    assert msgspec.json.decode(msgspec.json.encode(signed), type=AssignmentSpec) == signed  # as the server stores it
    with pytest.raises(SigningError, match="sends no module to sign"):
        sign_spec(key, AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1)))
