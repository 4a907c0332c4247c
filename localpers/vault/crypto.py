"""Keys and authenticated encryption for the vault.

- The user's passphrase never encrypts data directly. Argon2id turns it into a
  key-encryption key (KEK), which wraps a random 256-bit data key. Changing the
  passphrase rewraps that one key; no record is re-encrypted.
- Every field is sealed with AES-256-GCM under the data key, with a fresh random
  96-bit nonce and *associated data* naming where the field lives (table, column,
  row, user, key version). A ciphertext moved anywhere else fails to open.
- Plaintexts are padded before sealing (:func:`pad`), so a ciphertext's length
  says little about the length of what it hides.

Example::

    >>> key = new_data_key()
    >>> box = seal(key, b"hello", aad=b"items|content|42")
    >>> unseal(key, box, aad=b"items|content|42")
    b'hello'
    >>> box != seal(key, b"hello", aad=b"items|content|42")   # fresh nonce every time
    True
"""

from __future__ import annotations

import os
import time
import unicodedata
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import TamperedData, VaultError

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32

# OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
MIN_MEMORY_KIB = 19 * 1024
MIN_ITERATIONS = 2
# Upper bounds accepted from a vault file: parameters are stored in the clear, so a
# damaged or hostile file must not be able to make unlocking eat all memory or hang.
# calibrate() never writes more than 256 MiB x a few passes; these caps leave room
# for a much faster machine and refuse what would take minutes or exhaust memory.
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_ITERATIONS = 20
MAX_WORK_KIB = 4 * 1024 * 1024 * 2  # memory x passes: at most 4 GiB x 2 or 1 GiB x 8 (a few seconds)
MAX_LANES = 64


@dataclass(frozen=True)
class KDFParams:
    """Argon2id parameters, stored in the clear next to the wrapped key (they are not secret).

    Example::

        >>> KDFParams(salt=b"0123456789abcdef").memory_kib   # OWASP's minimum by default
        19456
    """

    salt: bytes
    memory_kib: int = MIN_MEMORY_KIB
    iterations: int = MIN_ITERATIONS
    lanes: int = 1

    def __post_init__(self) -> None:
        if not (MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB and MIN_ITERATIONS <= self.iterations
                <= MAX_ITERATIONS and 1 <= self.lanes <= MAX_LANES and 16 <= len(self.salt) <= 64
                and self.memory_kib * self.iterations <= MAX_WORK_KIB):
            raise VaultError(f"refusing Argon2id parameters beyond what localpers writes (memory "
                             f"{self.memory_kib // 1024} MiB, {self.iterations} passes, {self.lanes} lanes, "
                             f"{len(self.salt)}-byte salt; at most {MAX_MEMORY_KIB // 1024 // 1024} GiB, "
                             f"{MAX_ITERATIONS} passes): the file is damaged or was tampered with; restore a backup")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["salt"] = self.salt.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KDFParams":
        try:
            values = [d["memory_kib"], d["iterations"], d["lanes"]]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise TypeError("memory, passes and lanes must be whole numbers")
            return cls(bytes.fromhex(d["salt"]), *values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise VaultError(f"unreadable key-derivation parameters ({type(exc).__name__}: {exc}): "
                             "the vault file is damaged; restore a backup") from None


def derive_key(passphrase: str, params: KDFParams) -> bytes:
    """The key-encryption key for ``passphrase`` (slow on purpose: about half a second).

    The passphrase is Unicode-normalized (NFC) first, so the same words typed on
    another system, which may compose accents differently, give the same key.
    """
    kdf = Argon2id(salt=params.salt, length=KEY_BYTES, iterations=params.iterations,
                   lanes=params.lanes, memory_cost=params.memory_kib)
    return kdf.derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))


def calibrate(target_seconds: float = 0.5, *, max_memory_kib: int = 256 * 1024) -> KDFParams:
    """Pick Argon2id parameters that take about ``target_seconds`` here, never below OWASP's minimum.

    Memory is raised first (it is what makes GPU guessing expensive), then passes.
    Argon2's cost is close to linear in memory x passes, so one measurement at the
    minimum predicts the rest; a second measurement corrects the estimate.

    Example::

        >>> params = calibrate(0.5)            # doctest: +SKIP
        >>> params.memory_kib, params.iterations  # doctest: +SKIP
        (138040, 2)
    """
    salt = os.urandom(16)
    params = KDFParams(salt)
    for _ in range(3):
        start = time.perf_counter()
        derive_key("calibration", params)
        elapsed = max(time.perf_counter() - start, 1e-4)
        if abs(elapsed - target_seconds) <= 0.2 * target_seconds:
            break
        work = params.memory_kib * params.iterations * target_seconds / elapsed
        memory = int(min(max_memory_kib, max(MIN_MEMORY_KIB, work / MIN_ITERATIONS)))
        iterations = max(MIN_ITERATIONS, round(work / memory))
        better = KDFParams(salt, memory, min(iterations, MAX_ITERATIONS), 1)
        if better == params:  # already at the minimum (or the cap): nothing left to adjust
            break
        params = better
    return params


def minimum_params() -> KDFParams:
    """OWASP's minimum with a fresh salt: for tests and the public demo vault only."""
    return KDFParams(os.urandom(16))


def new_data_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def cipher(key: bytes) -> AESGCM:
    """An AES-256-GCM object for ``key``; build it once and pass it to :func:`seal` for speed."""
    return AESGCM(key)


def seal(key: bytes | AESGCM, plaintext: bytes, *, aad: bytes) -> bytes:
    """Encrypt and authenticate: returns ``nonce || ciphertext || tag``."""
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def unseal(key: bytes | AESGCM, box: bytes, *, aad: bytes) -> bytes:
    """Decrypt a :func:`seal` result; raises :class:`TamperedData` if anything was changed or moved."""
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return aead.decrypt(bytes(box[:NONCE_BYTES]), bytes(box[NONCE_BYTES:]), aad)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise TamperedData(f"a ciphertext failed authentication ({aad.decode(errors='replace')}): "
                           "the vault was modified outside localpers or is corrupted") from exc


def subkey(key: bytes, purpose: str, salt: bytes | None = None) -> bytes:
    """A separate 256-bit key for one purpose (HKDF-SHA256), so one key never serves two jobs.

    Example::

        >>> k = new_data_key()
        >>> subkey(k, "backup") != subkey(k, "hmac")
        True
    """
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                info=b"localpers|" + purpose.encode()).derive(key)


# ---------------------------------------------------------------------- padding

MIN_PADDED = 64


def padded_length(n: int) -> int:
    """The length ``n`` bytes are padded to: at least 64, then the Padme scheme.

    Padme (Nikitin et al., PETS 2019) rounds up to a number with few significant
    bits: at most 12% overhead, and lengths fall into few buckets, so a ciphertext
    reveals roughly the order of magnitude of its plaintext, not its exact size.

    Example::

        >>> [padded_length(n) for n in (1, 63, 64, 100, 1000, 5000)]
        [64, 64, 64, 104, 1024, 5120]
    """
    n = max(n, MIN_PADDED)
    exponent = n.bit_length() - 1
    low_bits = exponent - exponent.bit_length()
    mask = (1 << low_bits) - 1
    return (n + mask) & ~mask


def pad(data: bytes) -> bytes:
    """Append ``0x80`` then zeros up to :func:`padded_length` (ISO/IEC 7816-4 padding)."""
    target = padded_length(len(data) + 1)
    return data + b"\x80" + bytes(target - len(data) - 1)


def unpad(data: bytes) -> bytes:
    """Undo :func:`pad`."""
    end = len(data.rstrip(b"\0"))
    if end == 0 or data[end - 1] != 0x80:
        raise TamperedData("bad padding in a decrypted field: the vault is corrupted")
    return data[:end - 1]
