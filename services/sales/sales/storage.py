"""Where the bytes of contract attachments live: one small interface, one store on local disk.

The database keeps an attachment's metadata (name, size, checksum) and an
opaque ``storage_key``; the bytes sit behind ``AttachmentStore``. Keys are
made here (``new_key``), never from a file name or any other user input, so
no upload can name a path outside the store.

Object storage plugs in as another ``AttachmentStore``: an S3/OSS/MinIO
client whose put/get/delete map to PUT/GET/DELETE of object ``key`` in one
bucket (an object PUT is atomic, so it needs no temp-and-rename), chosen by
``store_from_env`` from a setting such as CRM_ATTACHMENTS_URL=s3://bucket.
Nothing else changes: the contracts code sees only the interface.

Plain Python; nothing here knows about nameko.
"""
import logging
import os
import re
import tempfile
import uuid

from sqlalchemy import event

from crm_common.config import env, var_dir

log = logging.getLogger(__name__)

# What ``new_key`` makes: 32 lower-case hex digits. Anything else is refused.
KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")
FILES_TO_DELETE_ON_COMMIT = "sales_files_delete_on_commit"
FILES_TO_DELETE_ON_ROLLBACK = "sales_files_delete_on_rollback"


class StoredFileMissing(LookupError):
    """The store has nothing under a key the database names."""


def new_key():
    return uuid.uuid4().hex


def check_key(key):
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class AttachmentStore:
    """Bytes by key. Implementations must make ``put`` all-or-nothing: a reader
    sees the whole file or no file, never a part."""

    def put(self, key, data):
        raise NotImplementedError

    def get(self, key):
        """The bytes under ``key``; StoredFileMissing when there are none."""
        raise NotImplementedError

    def delete(self, key):
        """Remove ``key``; deleting a missing key is not an error (deletes are retried)."""
        raise NotImplementedError


class LocalDiskStore(AttachmentStore):
    """Files under one directory, two hex digits of fan-out (no directory grows huge)."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def _path(self, key):
        check_key(key)
        return os.path.join(self.root, key[:2], key)

    def put(self, key, data):
        path = self._path(key)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        # Written beside the target and renamed over it: rename is atomic within
        # a file system, so a crash leaves a stray temp file, never half a file.
        handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_path, path)
        except BaseException:
            try:
                os.unlink(temp_path)
            except FileNotFoundError:
                pass
            raise

    def get(self, key):
        try:
            with open(self._path(key), "rb") as stored:
                return stored.read()
        except FileNotFoundError:
            raise StoredFileMissing(key)

    def delete(self, key):
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass


def store_from_env():
    """The store this process uses: LocalDiskStore under CRM_ATTACHMENTS_DIR (default <CRM_VAR_DIR>/attachments)."""
    return LocalDiskStore(env("CRM_ATTACHMENTS_DIR") or os.path.join(var_dir(), "attachments"))


# --- keeping the store in step with the database transaction -----------------
#
# The bytes cannot join the database transaction, so each side effect is put
# where a failure costs least: a new file is written before its row and
# removed again if the transaction rolls back; a removed row's file is
# deleted only after the commit. A crash in between leaves an unreferenced
# file (wasted space), never a row whose file is gone.

def delete_after_commit(session, store, key):
    _remember(session, FILES_TO_DELETE_ON_COMMIT, store, key)


def delete_after_rollback(session, store, key):
    _remember(session, FILES_TO_DELETE_ON_ROLLBACK, store, key)


def _remember(session, bucket, store, key):
    if not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", _after_rollback)
    session.info.setdefault(bucket, []).append((store, key))


def _after_commit(session):
    session.info.pop(FILES_TO_DELETE_ON_ROLLBACK, None)
    _delete_all(session.info.pop(FILES_TO_DELETE_ON_COMMIT, ()))


def _after_rollback(session, previous_transaction):
    if previous_transaction.nested:
        return  # a savepoint: the outer transaction may still commit
    session.info.pop(FILES_TO_DELETE_ON_COMMIT, None)
    _delete_all(session.info.pop(FILES_TO_DELETE_ON_ROLLBACK, ()))


def _delete_all(pending):
    for store, key in pending:
        try:
            store.delete(key)
        except Exception:
            # The row is already settled; a file left behind only wastes space.
            log.exception("could not delete attachment file %s", key)
