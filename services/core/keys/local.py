"""The development key provider: KEKs are files in one directory (``.run/<deployment>/kms/``).

Development only (``LocalKms.from_settings`` refuses otherwise): the KEK lies on the same
disk as everything else, so it protects nothing; it stands in for a KMS so that envelope
encryption, key rotation and a disabled key can be run and tested without one.

A KEK reference reads ``local:<name>`` (NAME_RE); the platform's is ``local:platform``.
Each KEK has versions 1, 2, … , one file each, ``<name>.v<N>.key``: KEK_BYTES random
bytes, mode 0600, in a directory of mode 0700. The first wrap under a name (or ``check``,
``rotate``) creates its version 1; ``rotate`` adds the next version, and new wraps use the
newest while older versions stay readable. A version file is written to a temporary file
and published with ``link``, which fails when the name exists: the file appears whole or
not at all, and of two processes creating one version at once the loser reads the
winner's key. ``<name>.disabled`` disables a KEK (``disable``, ``enable``): while it
exists every operation with it raises KeyUnavailable("disabled"), the fail-closed demo.

A wrapped data key is a sealed value of the field format (fields.py): format byte, KEK
version, nonce, AES-256-GCM ciphertext and tag; its associated data is ``encode_parts``
of the KEK name and the encryption context (sorted by key), so that a blob presented with
another context or KEK does not unwrap. Files are read on every call (no cache), so a
rotation or a disable by another process applies at once. No key bytes are logged.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ontrackio.core import config
from ontrackio.core.errors import FieldUnreadable, KeyUnavailable
from ontrackio.core.keys import fields
from ontrackio.core.keys.kms import DATA_KEY_BYTES, DataKey, InvalidKey

log = logging.getLogger(__name__)

__all__ = ["LocalKms"]

PREFIX = "local:"
NAME_RE = re.compile(r"[a-z0-9-]{1,40}\Z")
PLATFORM_NAME = "platform"
KEK_BYTES = 32  # AES-256
KMS_DIRECTORY = "kms"  # under .run/<deployment>/
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
_VERSION_FILE_RE = re.compile(r"(?P<name>[a-z0-9-]{1,40})\.v(?P<version>[1-9][0-9]{0,9})\.key\Z")
# Associated data of a wrap: this label, the KEK name, then the context's keys and values.
WRAP_LABEL = b"ontrack:local-kms:wrap:v1"
CHECK_CONTEXT = {"ontrack:check": "local"}
# A wrapped data key: the field format around DATA_KEY_BYTES.
WRAPPED_BYTES = fields.MIN_BLOB_BYTES + DATA_KEY_BYTES


def name_of(kek: Any) -> str:
    """The KEK name in reference `kek` (``local:<name>``); InvalidKey for anything else."""
    if isinstance(kek, str) and kek.startswith(PREFIX) and NAME_RE.match(kek[len(PREFIX) :]):
        return kek[len(PREFIX) :]
    raise InvalidKey(
        f"a local KEK reference reads {PREFIX}<name>, the name 1 to 40 of a-z, 0-9 and -"
    )


def wrap_aad(name: str, context: Mapping[str, str]) -> bytes:
    """The associated data of a wrap under KEK `name` with `context`: injective on both
    (each part length-prefixed, keys sorted by their UTF-8 form). InvalidArgument for a
    context key or value that is not Unicode text."""
    pairs = sorted(context.items())  # code point order: the order of the UTF-8 forms too
    return fields.encode_parts(WRAP_LABEL, [name, *(part for pair in pairs for part in pair)])


@contextmanager
def _os_errors() -> Iterator[None]:
    """File system failures as the KMS causes they stand for."""
    try:
        yield
    except FileNotFoundError:
        raise KeyUnavailable("not_found") from None
    except PermissionError:
        raise KeyUnavailable("access_denied") from None
    except OSError:
        raise KeyUnavailable("unreachable") from None


class LocalKms:
    """KeyProvider over KEK files in `directory` (made on first use, mode 0700). Safe for
    threads and for several processes sharing the directory. Every method raises
    InvalidKey for a malformed reference and KeyUnavailable naming the cause: ``disabled``,
    ``not_found`` (no file for the version a blob names), ``invalid`` (wrong context or
    KEK, a tampered or malformed blob, a damaged key file), ``access_denied`` and
    ``unreachable`` (the directory cannot be read or written)."""

    name = "local"

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    @classmethod
    def from_settings(cls, settings: config.Settings) -> LocalKms:
        """The provider of a development deployment, in ``.run/<deployment>/kms``.

        Raises ConfigError (one line, naming ONTRACK_KMS_PROVIDER) outside development
        mode: a KEK stored beside the data protects nothing."""
        if not settings.development:
            raise config.ConfigError(
                "ONTRACK_KMS_PROVIDER: the local key provider is for development only "
                "(ONTRACK_DEVELOPMENT=true); use aws with ONTRACK_KMS_KEY_ID"
            )
        return cls(config.ROOT / ".run" / settings.deployment / KMS_DIRECTORY)

    # -- KeyProvider ------------------------------------------------------------------------

    def platform_key(self) -> str:
        return PREFIX + PLATFORM_NAME

    def generate_data_key(self, kek: str, context: Mapping[str, str]) -> DataKey:
        plaintext = os.urandom(DATA_KEY_BYTES)
        return DataKey(plaintext, self._wrap(self._usable(kek), plaintext, context))

    def unwrap(self, kek: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return self._unwrap(self._usable(kek), wrapped, context)

    def rewrap(
        self, source: str, destination: str, wrapped: bytes, context: Mapping[str, str]
    ) -> bytes:
        """`wrapped` unwrapped under `source`, wrapped under `destination`'s newest version
        (the data key passes through this process: there is no KMS to keep it)."""
        source_name, destination_name = self._usable(source), self._usable(destination)
        plaintext = self._unwrap(source_name, wrapped, context)
        return self._wrap(destination_name, plaintext, context)

    def check(self, kek: str, context: Mapping[str, str] = CHECK_CONTEXT) -> None:
        name = self._usable(kek)
        probe = os.urandom(DATA_KEY_BYTES)
        if self._unwrap(name, self._wrap(name, probe, context), context) != probe:
            raise KeyUnavailable("invalid")

    def region_of(self, kek: str) -> str | None:
        name_of(kek)
        return None

    # -- development conveniences -------------------------------------------------------------

    def rotate(self, kek: str) -> int:
        """Add the next version of `kek` (version 1 of a new KEK) and return it; new wraps
        use it from now on. Two rotations at once each add a version."""
        name = self._usable(kek)
        while True:
            version = self._newest(name) + 1
            if self._create(name, version):
                return version

    def disable(self, kek: str) -> None:
        """Make every operation with `kek` raise KeyUnavailable("disabled") until ``enable``."""
        name = name_of(kek)
        with _os_errors():
            self._ensure_directory()
            os.close(os.open(self._marker(name), os.O_WRONLY | os.O_CREAT, FILE_MODE))
        log.info("local KMS: %s%s disabled", PREFIX, name)

    def enable(self, kek: str) -> None:
        name = name_of(kek)
        with _os_errors():
            self._marker(name).unlink(missing_ok=True)
        log.info("local KMS: %s%s enabled", PREFIX, name)

    # -- files ---------------------------------------------------------------------------------

    def _path(self, name: str, version: int) -> Path:
        return self.directory / f"{name}.v{version}.key"

    def _marker(self, name: str) -> Path:
        return self.directory / f"{name}.disabled"

    def _usable(self, kek: str) -> str:
        """The name of `kek`, unless it is disabled."""
        name = name_of(kek)
        with _os_errors():
            if self._marker(name).exists():
                raise KeyUnavailable("disabled")
        return name

    def _versions(self, name: str) -> list[int]:
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except PermissionError:
            raise KeyUnavailable("access_denied") from None
        except OSError:
            raise KeyUnavailable("unreachable") from None
        found = (_VERSION_FILE_RE.match(entry) for entry in entries)
        return [int(m["version"]) for m in found if m and m["name"] == name]

    def _newest(self, name: str) -> int:
        """The newest version of `name`; 0 when it has none."""
        return max(self._versions(name), default=0)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o777 != DIRECTORY_MODE:
            os.chmod(self.directory, DIRECTORY_MODE)

    def _create(self, name: str, version: int) -> bool:
        """Publish a new random key as `version` of `name`; False when that version exists
        already (another process or thread made it first)."""
        with _os_errors():
            self._ensure_directory()
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".new-")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(os.urandom(KEK_BYTES))
                    file.flush()
                    os.fsync(file.fileno())
                try:
                    os.link(temporary, self._path(name, version))
                except FileExistsError:
                    return False
            finally:
                os.unlink(temporary)
        log.info("local KMS: created %s%s version %d", PREFIX, name, version)
        return True

    def _read(self, name: str, version: int) -> bytes:
        with _os_errors():
            key = self._path(name, version).read_bytes()
        if len(key) != KEK_BYTES:
            raise KeyUnavailable("invalid")
        return key

    # -- wrapping ------------------------------------------------------------------------------

    def _wrap(self, name: str, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        version = self._newest(name)
        if not version:
            self._create(name, 1)  # unless another process or thread just did
            version = self._newest(name)
        return fields.seal(self._read(name, version), version, wrap_aad(name, context), plaintext)

    def _unwrap(self, name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if not isinstance(wrapped, bytes | bytearray) or len(wrapped) != WRAPPED_BYTES:
            raise KeyUnavailable("invalid")
        try:
            version = fields.version_of(wrapped)
        except FieldUnreadable:
            raise KeyUnavailable("invalid") from None
        key = self._read(name, version)  # not_found when that version has no file
        try:
            return fields.unseal(key, wrap_aad(name, context), wrapped)
        except FieldUnreadable:
            raise KeyUnavailable("invalid") from None
