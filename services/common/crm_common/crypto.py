"""Encryption of personal data at rest, and blind indexes for exact lookup.

Values are sealed with AES-256-GCM into ``enc1:<kid>:<base64url(nonce + ciphertext + tag)>``
(the key id is authenticated as associated data, so a token cannot be moved
under another key id). The keyring comes from, in order:

- ``CRM_DATA_KEYS`` = ``"k2:<base64 32 bytes>,k1:<base64>"`` (first = current),
  with the blind-index key in ``CRM_BLIND_INDEX_KEY``;
- the JSON file named by ``CRM_DATA_KEYS_FILE``, else ``<CRM_VAR_DIR>/data-keys.json``:
  ``{"current": "k2", "keys": {"k2": "<b64>", "k1": "<b64>"}, "blind_index_key": "<b64>"}``.
  The default file is created on first use (mode 0600) by linking a complete
  temporary file into place, so processes starting together agree on one
  keyring. A file-backed keyring reloads itself when the file changes (checked
  at most every ``RELOAD_INTERVAL`` seconds, and at once when a token names a
  key id it does not know), so a key added to the file is used by running
  services without a restart. ``CRM_BLIND_INDEX_KEY`` overrides the file's
  blind-index key.

Keys never go into a database. Columns that may hold personal data use the
``EncryptedText`` / ``EncryptedJson`` column types; values stored before
encryption existed (plain text) are still read as they are, counted by
``count_stale_values`` and encrypted by ``reencrypt_columns``, which also
moves values under old keys to the current one.
"""
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text, func, inspect, literal, select, tuple_, type_coerce, update
from sqlalchemy.types import TypeDecorator

from crm_common import jsonutil
from crm_common.config import env, var_dir

log = logging.getLogger(__name__)

PREFIX = "enc1"
KEYS_FILE_NAME = "data-keys.json"
# Seconds between two looks at the key file's mtime.
RELOAD_INTERVAL = 2.0
_NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_TOKEN = re.compile(r"^enc1:([A-Za-z0-9_.-]{1,32}):([A-Za-z0-9_-]+=*)$")


class CryptoError(ValueError):
    """A token that cannot be decrypted: malformed, tampered with, or under an unknown key."""


class KeyConfigError(RuntimeError):
    """The key configuration is unusable (bad base64, wrong length, no current key)."""


def generate_key():
    """A new random 256-bit key, base64 as the key file and CRM_DATA_KEYS hold it."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(value, name):
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError, AttributeError) as exc:
        raise KeyConfigError(f"key {name!r} is not valid base64") from exc
    if len(key) != 32:
        raise KeyConfigError(f"key {name!r} must be 32 bytes, got {len(key)}")
    return key


def _check_kid(kid):
    if not _KID.match(kid or ""):
        raise KeyConfigError(f"key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ . -")
    return kid


class Keyring:
    """Data keys by id, the current key id, and the blind-index key."""

    def __init__(self, keys, current, blind_index_key):
        if current not in keys:
            raise KeyConfigError(f"current key id {current!r} is not among the keys")
        self.keys = dict(keys)
        self.current = current
        self.blind_index_key = blind_index_key
        self._aead = {kid: AESGCM(key) for kid, key in self.keys.items()}
        # Keyed once; each blind index copies it (cheaper than keying an HMAC per value,
        # and without OpenSSL's per-call digest lookup).
        self._blind = hmac.new(blind_index_key, digestmod=hashlib.sha256)

    def blind_index(self, message):
        mac = self._blind.copy()
        mac.update(message)
        return mac.hexdigest()

    @classmethod
    def from_env(cls, spec, blind_index_key):
        keys, current = {}, None
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, value = part.partition(":")
            if not sep:
                raise KeyConfigError("CRM_DATA_KEYS entries are kid:<base64 key>")
            kid = _check_kid(kid.strip())
            keys[kid] = _decode_key(value, kid)
            current = current or kid
        if not keys:
            raise KeyConfigError("CRM_DATA_KEYS holds no key")
        if not blind_index_key:
            raise KeyConfigError("CRM_DATA_KEYS is set but CRM_BLIND_INDEX_KEY is not")
        return cls(keys, current, _decode_key(blind_index_key, "CRM_BLIND_INDEX_KEY"))

    @classmethod
    def from_document(cls, document, blind_index_override=None):
        keys = {_check_kid(kid): _decode_key(value, kid)
                for kid, value in (document.get("keys") or {}).items()}
        blind = blind_index_override or document.get("blind_index_key")
        if not blind:
            raise KeyConfigError("the key file has no blind_index_key")
        return cls(keys, document.get("current"), _decode_key(blind, "blind_index_key"))

    def aead(self, kid):
        return self._aead.get(kid)


def keys_file_path():
    """The key file this process uses: CRM_DATA_KEYS_FILE, else <var_dir>/data-keys.json."""
    return env("CRM_DATA_KEYS_FILE") or os.path.join(var_dir(), KEYS_FILE_NAME)


def new_keys_document(kid="k1"):
    return {"current": kid, "keys": {kid: generate_key()}, "blind_index_key": generate_key()}


def write_keys_file(path, document, replace=True):
    """Write ``document`` to ``path`` atomically, mode 0600.

    With ``replace=False`` the file is only created: returns False (and writes
    nothing) when it exists already, so concurrent creators agree on the first.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".data-keys-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            tmp = None
            return True
        try:
            # link() fails when the name exists: the O_EXCL of a complete file.
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if tmp is not None:
            os.unlink(tmp)


class _FileKeyring:
    """A keyring read from a JSON file, re-read when the file changes."""

    def __init__(self, path, blind_override):
        self.path = path
        self.blind_override = blind_override
        self._lock = threading.Lock()
        self._stamp = None
        self._checked = 0.0
        self._ring = None
        self.reload(force=True)

    def _read(self):
        try:
            with open(self.path) as handle:
                stat = os.fstat(handle.fileno())
                document = json.load(handle)
        except FileNotFoundError:
            write_keys_file(self.path, new_keys_document(), replace=False)
            with open(self.path) as handle:
                stat = os.fstat(handle.fileno())
                document = json.load(handle)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size), document

    def reload(self, force=False):
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return self._ring
        with self._lock:
            self._checked = now
            try:
                stat = os.stat(self.path)
                stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = None
            if self._ring is not None and stamp == self._stamp:
                return self._ring
            stamp, document = self._read()
            self._ring = Keyring.from_document(document, self.blind_override)
            self._stamp = stamp
            return self._ring

    def get(self):
        return self.reload()


class _EnvKeyring:
    def __init__(self, ring):
        self._ring = ring

    def get(self):
        return self._ring

    def reload(self, force=False):
        return self._ring


_sources = {}
_sources_lock = threading.Lock()


def _source():
    environ = os.environ
    spec = environ.get("CRM_DATA_KEYS") or None
    blind = environ.get("CRM_BLIND_INDEX_KEY") or None
    # The configuration as read from the environment, without touching the file system
    # (this runs for every value encrypted: an import does it hundreds of thousands of times).
    # (Without CRM_VAR_DIR the file is under the working directory as it was on first use.)
    config = (spec, blind) if spec else (
        None, blind, environ.get("CRM_DATA_KEYS_FILE"), environ.get("CRM_VAR_DIR"))
    source = _sources.get(config)
    if source is None:
        with _sources_lock:
            source = _sources.get(config)
            if source is None:
                source = (_EnvKeyring(Keyring.from_env(spec, blind)) if spec
                          else _FileKeyring(keys_file_path(), blind))
                _sources[config] = source
    return source


def get_keyring():
    """The keyring of the current configuration (environment read at call time)."""
    return _source().get()


def reload_keyring():
    """Re-read the key file now (a rotation in this process wrote it)."""
    return _source().reload(force=True)


def reset_keyring():
    """Forget every loaded keyring (tests that change the key configuration)."""
    with _sources_lock:
        _sources.clear()


def current_key_id():
    return get_keyring().current


def _b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(text):
    """``text`` sealed under the current key: ``enc1:<kid>:<base64url(nonce + ciphertext + tag)>``."""
    if not isinstance(text, str):
        raise TypeError(f"encrypt() takes str, not {type(text).__name__}")
    ring = get_keyring()
    kid = ring.current
    nonce = os.urandom(_NONCE_BYTES)
    sealed = ring.aead(kid).encrypt(nonce, text.encode("utf-8"), kid.encode("ascii"))
    return f"{PREFIX}:{kid}:{_b64e(nonce + sealed)}"


def decrypt(token, keyring=None):
    """The text sealed in ``token``; CryptoError when it is malformed, tampered with or its key is unknown.

    ``keyring`` (a Keyring) decrypts with that one instead of this process's own
    (a test reading another process's database)."""
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if not match:
        raise CryptoError("not an encrypted value")
    kid, body = match.groups()
    if keyring is not None:
        aead = keyring.aead(kid)
    else:
        source = _source()
        aead = source.get().aead(kid)
        if aead is None:
            # Another process may have just added the key to the file.
            aead = source.reload(force=True).aead(kid)
    if aead is None:
        raise CryptoError(f"unknown key id {kid!r}")
    try:
        raw = _b64d(body)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("malformed encrypted value") from exc
    if len(raw) < _NONCE_BYTES + 16:
        raise CryptoError("malformed encrypted value")
    try:
        plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kid.encode("ascii"))
    except InvalidTag as exc:
        raise CryptoError("encrypted value failed authentication (tampered or wrong key)") from exc
    return plain.decode("utf-8")


def key_id(token):
    """The key id ``token`` is sealed under, or None when it is not an encrypted value."""
    match = _TOKEN.match(token) if isinstance(token, str) else None
    return match.group(1) if match else None


def is_encrypted(value):
    return key_id(value) is not None


def blind_index(kind, normalised_value):
    """Hex HMAC-SHA256 of ``f"{kind}:{value}"`` under the blind-index key.

    Deterministic, so equal (normalised) inputs match in SQL for exact lookup
    and duplicate detection, while the stored value reveals nothing without
    the key. Callers normalise first (e.g. E.164 phones, lower-case emails).
    """
    message = f"{kind}:{normalised_value}".encode("utf-8")
    return get_keyring().blind_index(message)


def _open(value):
    # Rows written before encryption hold plain text: read as they are until
    # the migration or reencrypt_columns seals them.
    return decrypt(value) if is_encrypted(value) else value


class EncryptedText(TypeDecorator):
    """Text encrypted on write and decrypted on read; None stays NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return encrypt(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return _open(value)


class EncryptedJson(TypeDecorator):
    """A JSON document stored encrypted as text; None stays NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return encrypt(jsonutil.dumps(value))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return jsonutil.loads(_open(value))


class EncryptedBytes(TypeDecorator):
    """Bytes (an uploaded file) stored encrypted as text: base64 inside the token; None stays NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return encrypt(base64.b64encode(bytes(value)).decode("ascii"))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return base64.b64decode(_open(value))


ENCRYPTED_TYPES = (EncryptedText, EncryptedJson, EncryptedBytes)


def encrypted_columns(metadata_list):
    """(table, column) of every encrypted column in the given MetaData objects."""
    found = []
    for metadata in metadata_list:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, ENCRYPTED_TYPES):
                    found.append((table, column))
    return found


def _existing(session, table):
    return inspect(session.connection()).has_table(table.name, schema=table.schema)


def _stale(raw, current_prefix):
    # Text comparison on the stored value: neither decrypts nor needs the type.
    return ~raw.like(current_prefix.replace("_", "\\_") + "%", escape="\\")


def count_stale_values(session_factory, metadata_list):
    """{"table.column": values not under the current key (old key ids or plain text)}."""
    counts = {}
    with session_factory() as session:
        prefix = f"{PREFIX}:{current_key_id()}:"
        for table, column in encrypted_columns(metadata_list):
            if not _existing(session, table):
                continue
            raw = type_coerce(column, Text)
            counts[f"{table.name}.{column.name}"] = session.execute(
                select(func.count()).select_from(table).where(raw.isnot(None), _stale(raw, prefix))
            ).scalar_one()
    return counts


def reencrypt_columns(session_factory, metadata_list, batch_size=500):
    """Seal every encrypted column's values under the current key; {"table.column": rows changed}.

    Each batch commits on its own. Updates are compare-and-set (the row is
    changed only while it still holds the value read), so a value written
    concurrently, already under the current key, is never overwritten.
    Values that cannot be decrypted (their key is gone) are logged and left.
    """
    results = {}
    for table, column in encrypted_columns(metadata_list):
        pk = list(table.primary_key.columns)
        if not pk:
            raise ValueError(f"{table.name} has no primary key: cannot re-encrypt {column.name}")
        name = f"{table.name}.{column.name}"
        changed = 0
        last = None
        # Core UPDATE runs onupdate defaults (updated_at): a key change is no edit.
        untouched = {c.name: c for c in table.columns if c.onupdate is not None and c is not column}
        with session_factory() as session:
            if not _existing(session, table):
                continue
        while True:
            with session_factory() as session:
                prefix = f"{PREFIX}:{current_key_id()}:"
                raw = type_coerce(column, Text)
                query = (select(*pk, raw.label("raw")).where(raw.isnot(None), _stale(raw, prefix))
                         .order_by(*pk).limit(batch_size))
                if last is not None:
                    query = query.where(tuple_(*pk) > tuple_(*[literal(v) for v in last])
                                        if len(pk) > 1 else pk[0] > last[0])
                rows = session.execute(query).all()
                if not rows:
                    break
                for row in rows:
                    keys = tuple(row[:len(pk)])
                    old = row.raw
                    try:
                        new = encrypt(_open(old))
                    except CryptoError:
                        log.error("%s of %s %s cannot be decrypted; left as it is",
                                  column.name, table.name, keys)
                        continue
                    condition = [c == v for c, v in zip(pk, keys)]
                    result = session.execute(
                        update(table).where(*condition, raw == literal(old, Text))
                        .values({column.name: literal(new, Text), **untouched}))
                    changed += result.rowcount
                session.commit()
                last = tuple(rows[-1][:len(pk)])
                if len(rows) < batch_size:
                    break
        results[name] = changed
    return results
