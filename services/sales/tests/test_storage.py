"""The attachment store: whole files by opaque key, never a path a user chose."""
import os

import pytest
from sqlalchemy import text

from crm_common.testing import memory_session

from sales import storage
from sales.models import Base


@pytest.fixture
def store(tmp_path):
    return storage.LocalDiskStore(tmp_path / "attachments")


def test_a_file_comes_back_as_it_was_put_and_is_gone_after_delete(store):
    key = storage.new_key()
    store.put(key, b"%PDF-1.7 contract")
    assert store.get(key) == b"%PDF-1.7 contract"
    store.delete(key)
    with pytest.raises(storage.StoredFileMissing):
        store.get(key)
    store.delete(key)  # a retried delete is no error


def test_keys_that_are_not_ours_are_refused_so_no_path_escapes_the_store(store, tmp_path):
    for key in ("../../etc/passwd", "a/b", "", "ABCDEF" * 6, storage.new_key() + "/..", None):
        with pytest.raises(ValueError):
            store.put(key, b"x")
    assert not (tmp_path / "etc").exists()


def test_a_failed_write_leaves_no_file_and_no_temp_file(store, monkeypatch):
    key = storage.new_key()

    def broken_replace(source, target):
        raise OSError("disk full")
    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.put(key, b"half")
    monkeypatch.undo()
    with pytest.raises(storage.StoredFileMissing):
        store.get(key)
    assert os.listdir(os.path.join(store.root, key[:2])) == []


def test_the_store_lives_under_crm_attachments_dir_or_the_var_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_ATTACHMENTS_DIR", raising=False)
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path / "var"))
    assert storage.store_from_env().root == str(tmp_path / "var" / "attachments")
    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "elsewhere"))
    assert storage.store_from_env().root == str(tmp_path / "elsewhere")


def test_files_follow_the_transaction_new_ones_go_on_rollback_removed_ones_after_commit(store):
    session = memory_session(Base.metadata)
    session.execute(text("SELECT 1"))  # inside a transaction, as a request is
    kept, added = storage.new_key(), storage.new_key()
    store.put(kept, b"signed scan")
    store.put(added, b"upload of a failed request")
    storage.delete_after_rollback(session, store, added)
    session.rollback()
    with pytest.raises(storage.StoredFileMissing):
        store.get(added)

    storage.delete_after_commit(session, store, kept)
    session.execute(text("SELECT 1"))
    session.rollback()  # the delete did not happen: the file stays
    session.execute(text("SELECT 1"))
    assert store.get(kept) == b"signed scan"
    storage.delete_after_commit(session, store, kept)
    session.commit()
    with pytest.raises(storage.StoredFileMissing):
        store.get(kept)
    session.close()
