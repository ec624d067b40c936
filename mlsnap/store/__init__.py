"""Every DVC operation mlsnap needs, through DVC's in-process Python API; nothing else in
mlsnap imports DVC.

DVC is imported only inside these functions: ``import dvc.repo`` costs ~0.3 s, and commands such
as ``log`` or ``--help`` never need it. One ``Repo`` is opened per command (``open_repo``).

- ``dvcrepo``: opening DVC, its configuration, ``.dvc`` pointers, add/checkout, cache addresses;
- ``remote``: the default remote, its failures explained, pushing object by object;
- ``objects``: verified reads of cache and remote objects (download, export, quarantine);
- ``collect``: what ``mlsnap gc`` needs from storage (sizes, listings, deletion, gc notes).

Callers use the names below (``store.push``); the submodules are an internal layout.
"""

from __future__ import annotations

from mlsnap.store.collect import (
    GC_NOTES,
    RemoteObject,
    cached_sizes,
    delete_cached,
    delete_remote,
    drop_gc_note,
    gc_notes,
    gc_remote,
    put_gc_note,
    remote_objects,
    remote_present,
    unit_objects,
)
from mlsnap.store.dvcrepo import (
    DEFAULT_REMOTE,
    add,
    cache_dir,
    cache_file,
    checkout,
    configure,
    default_remote,
    describe,
    dvc_file,
    in_cache,
    init,
    open_repo,
    quiet_dvc,
    read_dvc_file,
    remote_label,
    set_remote_option,
    unchanged_files,
    workspace_file_hashes,
    workspace_hash,
)
from mlsnap.store.objects import (
    cached_fully,
    dir_entries,
    download,
    export,
    fetch_folders,
    folder_listing,
    object_state,
    quarantine,
    record_hash,
    remote_read,
    state_proves,
    verified_copy,
)
from mlsnap.store.remote import (
    Sent,
    folder_remote_dir,
    probe_remote,
    push,
    remote_missing,
    remote_reason,
    send_missing,
)

__all__ = [
    "DEFAULT_REMOTE",
    "GC_NOTES",
    "RemoteObject",
    "Sent",
    "add",
    "cache_dir",
    "cache_file",
    "cached_fully",
    "cached_sizes",
    "checkout",
    "configure",
    "default_remote",
    "delete_cached",
    "delete_remote",
    "describe",
    "dir_entries",
    "download",
    "drop_gc_note",
    "dvc_file",
    "export",
    "fetch_folders",
    "folder_listing",
    "folder_remote_dir",
    "gc_notes",
    "gc_remote",
    "in_cache",
    "init",
    "object_state",
    "open_repo",
    "probe_remote",
    "push",
    "put_gc_note",
    "quarantine",
    "quiet_dvc",
    "read_dvc_file",
    "record_hash",
    "remote_label",
    "remote_missing",
    "remote_objects",
    "remote_present",
    "remote_read",
    "remote_reason",
    "send_missing",
    "set_remote_option",
    "state_proves",
    "unchanged_files",
    "unit_objects",
    "verified_copy",
    "workspace_file_hashes",
    "workspace_hash",
]
