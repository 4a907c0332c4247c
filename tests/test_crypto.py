"""The primitives under the vault: Argon2id parameters, AES-GCM sealing, padding, subkeys."""

from __future__ import annotations

import os
import time
import unicodedata

import pytest

from localpers.vault import crypto
from localpers.errors import TamperedData, VaultError


def test_seal_round_trip_and_fresh_nonces():
    key = crypto.new_data_key()
    assert len(key) == 32
    a = crypto.seal(key, b"same text", aad=b"items|content|1")
    b = crypto.seal(key, b"same text", aad=b"items|content|1")
    assert a != b and a[:crypto.NONCE_BYTES] != b[:crypto.NONCE_BYTES]
    assert crypto.unseal(key, a, aad=b"items|content|1") == b"same text"
    assert crypto.unseal(crypto.cipher(key), b, aad=b"items|content|1") == b"same text"
    assert len(a) == crypto.NONCE_BYTES + len(b"same text") + crypto.TAG_BYTES


@pytest.mark.parametrize("position", [0, 5, 12, 20, -1])
def test_any_flipped_bit_is_detected(position):
    key = crypto.new_data_key()
    box = bytearray(crypto.seal(key, b"a secret worth protecting", aad=b"x"))
    box[position] ^= 0x01
    with pytest.raises(TamperedData):
        crypto.unseal(key, bytes(box), aad=b"x")


def test_wrong_aad_wrong_key_and_truncation_are_detected():
    key = crypto.new_data_key()
    box = crypto.seal(key, b"hello", aad=b"items|content|1|ada|1")
    for aad in (b"items|content|2|ada|1", b"items|metadata|1|ada|1", b"items|content|1|bob|1", b"items|content|1|ada|2"):
        with pytest.raises(TamperedData):
            crypto.unseal(key, box, aad=aad)
    with pytest.raises(TamperedData):
        crypto.unseal(crypto.new_data_key(), box, aad=b"items|content|1|ada|1")
    for cut in (box[:-1], box[:crypto.NONCE_BYTES], b""):
        with pytest.raises(TamperedData):
            crypto.unseal(key, cut, aad=b"items|content|1|ada|1")


def test_derive_key_is_deterministic_salted_and_unicode_normalized():
    params = crypto.minimum_params()
    k1 = crypto.derive_key("correct horse", params)
    assert k1 == crypto.derive_key("correct horse", params)
    assert k1 != crypto.derive_key("correct horsf", params)
    assert k1 != crypto.derive_key("correct horse", crypto.minimum_params())  # another salt
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert crypto.derive_key(composed, params) == crypto.derive_key(decomposed, params)


def test_params_never_below_owasp_minimum_and_bounded():
    assert crypto.minimum_params().memory_kib == 19 * 1024
    assert crypto.minimum_params().iterations == 2
    salt = os.urandom(16)
    for bad in (dict(memory_kib=1024), dict(iterations=1), dict(lanes=0), dict(memory_kib=1 << 40)):
        with pytest.raises(VaultError):
            crypto.KDFParams(salt, **bad)
    with pytest.raises(VaultError):
        crypto.KDFParams(b"short")
    with pytest.raises(VaultError):
        crypto.KDFParams.from_dict({"salt": "zz", "memory_kib": 19456, "iterations": 2, "lanes": 1})
    params = crypto.KDFParams(salt, 32768, 3, 1)
    assert crypto.KDFParams.from_dict(params.to_dict()) == params


def test_calibrate_targets_the_requested_time():
    start = time.perf_counter()
    params = crypto.calibrate(0.3)
    assert time.perf_counter() - start < 6
    assert params.memory_kib >= crypto.MIN_MEMORY_KIB and params.iterations >= crypto.MIN_ITERATIONS
    start = time.perf_counter()
    crypto.derive_key("x", params)
    elapsed = time.perf_counter() - start
    # Generous bounds: the CI machine is shared, so timings are noisy.
    assert 0.08 < elapsed < 1.5, elapsed
    tiny = crypto.calibrate(0.001)  # a target below the minimum's cost still gets the minimum
    assert (tiny.memory_kib, tiny.iterations) == (crypto.MIN_MEMORY_KIB, crypto.MIN_ITERATIONS)


def test_padding_hides_exact_lengths_and_round_trips():
    for n in list(range(0, 300)) + [1000, 4095, 4096, 65537]:
        data = os.urandom(n)[:-1] + b"\0" if n else b""  # a trailing zero byte must survive
        padded = crypto.pad(data)
        assert len(padded) == crypto.padded_length(n + 1) >= max(64, n + 1)
        assert len(padded) <= max(64, (n + 1) * 1.13)
        assert crypto.unpad(padded) == data
    # Short texts all look alike; long ones fall into few buckets.
    assert {len(crypto.pad(os.urandom(n))) for n in range(0, 63)} == {64}
    assert len({len(crypto.pad(os.urandom(n))) for n in range(1000, 1100)}) <= 4
    with pytest.raises(TamperedData):
        crypto.unpad(b"\0" * 64)


def test_subkeys_differ_per_purpose_and_salt():
    key = crypto.new_data_key()
    keys = {crypto.subkey(key, "backup"), crypto.subkey(key, "hmac"), crypto.subkey(key, "backup", b"s" * 16)}
    assert len(keys) == 3 and key not in keys
    assert crypto.subkey(key, "backup") == crypto.subkey(key, "backup")
