"""Request bodies that are not what the method expects: bytes built by hand, never by the stubs.

Each generator takes a ``random.Random`` and a valid request of the method (to mutate or to
wrap), and returns bytes. Whether the bytes parse is decided by the caller with the same
protobuf runtime the sidecar uses; garbage that happens to parse is still sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

__all__ = ["GENERATORS", "parses", "varint"]


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def parses(cls: type[Message], body: bytes) -> bool:
    try:
        cls.FromString(body)
    except DecodeError:
        return False
    return True


def _empty(rng: random.Random, valid: bytes) -> bytes:
    return b""


def _single_byte(rng: random.Random, valid: bytes) -> bytes:
    return bytes([rng.choice([0x0F, 0x0A, 0x08, 0x12, 0xFF, 0x80, 0x00, 0x07, 0x0B, 0x0C])])


def _random_short(rng: random.Random, valid: bytes) -> bytes:
    return rng.randbytes(rng.randint(1, 64))


def _truncated_varint(rng: random.Random, valid: bytes) -> bytes:
    # A varint field whose value never ends: every byte has its continuation bit set.
    return tag(rng.randint(1, 9), 0) + b"\xff" * rng.randint(1, 12)


def _overlong_varint(rng: random.Random, valid: bytes) -> bytes:
    # Eleven bytes: longer than any 64-bit varint may be.
    return tag(rng.randint(1, 9), 0) + b"\xff" * 10 + b"\x01"


def _wrong_wire_type(rng: random.Random, valid: bytes) -> bytes:
    field = rng.randint(1, 9)
    wire = rng.choice([0, 1, 5])
    payload = {0: varint(rng.getrandbits(64)), 1: rng.randbytes(8), 5: rng.randbytes(4)}[wire]
    return tag(field, wire) + payload + rng.choice([b"", b"\xff", tag(field, 2) + b"\x03abc"])


def _huge_length_prefix(rng: random.Random, valid: bytes) -> bytes:
    length = rng.choice([2**31, 2**32 - 1, 2**63, 2**64 - 1, 1 << 28, 0x7FFFFFFF, 1000])
    return tag(rng.randint(1, 9), 2) + varint(length) + rng.randbytes(rng.randint(0, 16))


def _nested_garbage(rng: random.Random, valid: bytes) -> bytes:
    # A well-formed outer field (the scope, the prompt, the usage...) holding bytes that are not.
    inner = rng.choice([b"\x0f", b"\x0a\x05\xff\xfe", tag(1, 0) + b"\xff\xff", rng.randbytes(rng.randint(1, 40)),
                        tag(1, 2) + varint(1 << 30)])
    return tag(rng.randint(1, 9), 2) + varint(len(inner)) + inner


def _invalid_utf8(rng: random.Random, valid: bytes) -> bytes:
    bad = rng.choice([b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b"acme\x80", b"\xf8\x88\x80\x80\x80"])
    direct = tag(1, 2) + varint(len(bad)) + bad
    # Also one level down: field 1 of a nested message (Scope.org_id, Messages.items...).
    nested = tag(rng.randint(1, 3), 2) + varint(len(direct)) + direct
    return rng.choice([direct, nested, tag(2, 2) + varint(len(bad)) + bad])


def _group_wire_types(rng: random.Random, valid: bytes) -> bytes:
    return rng.choice([tag(1, 3), tag(1, 4), tag(2, 3) + tag(3, 4), tag(1, 3) + tag(1, 0) + b"\x01"])


def _field_zero(rng: random.Random, valid: bytes) -> bytes:
    return b"\x00" + rng.randbytes(rng.randint(0, 8))


def _truncated_valid(rng: random.Random, valid: bytes) -> bytes:
    if len(valid) < 2:
        return valid + b"\x0a"
    return valid[: rng.randint(1, len(valid) - 1)]


def _bit_flipped_valid(rng: random.Random, valid: bytes) -> bytes:
    body = bytearray(valid or b"\x0a\x00")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(body))
        body[i] ^= 1 << rng.randrange(8)
    return bytes(body)


def _valid_then_garbage(rng: random.Random, valid: bytes) -> bytes:
    return valid + rng.choice([b"\x0f", b"\xff", tag(3, 2) + varint(50) + b"x", b"\x0a"])


def _random_medium(rng: random.Random, valid: bytes) -> bytes:
    return rng.randbytes(rng.randint(65, 64 * 1024))


GENERATORS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "empty": _empty,
    "single-byte": _single_byte,
    "random-short": _random_short,
    "truncated-varint": _truncated_varint,
    "overlong-varint": _overlong_varint,
    "wrong-wire-type": _wrong_wire_type,
    "huge-length-prefix": _huge_length_prefix,
    "nested-garbage": _nested_garbage,
    "invalid-utf8": _invalid_utf8,
    "group-wire-types": _group_wire_types,
    "field-zero": _field_zero,
    "truncated-valid": _truncated_valid,
    "bit-flipped-valid": _bit_flipped_valid,
    "valid-then-garbage": _valid_then_garbage,
    "random-medium": _random_medium,
}
