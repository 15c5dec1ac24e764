"""Detect a directory on a network filesystem, where SQLite must not be shared.

SQLite's locking relies on POSIX advisory locks and, in WAL mode, on a shared-memory
file; over NFS, SMB and similar filesystems the locks are unreliable and the
shared memory is not shared between hosts, so two hosts writing one file corrupt it.
On Linux the mount table (``/proc/self/mountinfo``) tells the filesystem type of the
directory; elsewhere nothing is detected (see docs/backends/sqlite.md).
"""

from __future__ import annotations

from pathlib import Path

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb3",
        "smbfs",
        "afs",
        "ncpfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",
        "gfs2",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.cephfs",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.gcsfuse",
        "davfs",
        "fuse.davfs2",
    }
)
"""Filesystem types (as the mount table names them) treated as network filesystems."""

_MOUNTINFO = "/proc/self/mountinfo"
_OCTAL_DIGITS = 3
_MOUNT_POINT_FIELD = 4


def _unescape(field: str) -> str:
    # The mount table escapes space, tab, newline and backslash as octal \NNN.
    out: list[str] = []
    index = 0
    while index < len(field):
        code = field[index + 1 : index + 4]
        if field[index] == "\\" and len(code) == _OCTAL_DIGITS and code.isdigit():
            out.append(chr(int(code, 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def mount_type(directory: str, mountinfo: str = _MOUNTINFO) -> str | None:
    """The filesystem type of the mount holding `directory`, or None if unknown."""
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(Path(directory).resolve())
    best: tuple[int, str] | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        kinds = right.split()
        if len(fields) <= _MOUNT_POINT_FIELD or not kinds:
            continue
        point = _unescape(fields[_MOUNT_POINT_FIELD])
        inside = target == point or target.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), kinds[0])
    return None if best is None else best[1]


def network_filesystem(directory: str, mountinfo: str = _MOUNTINFO) -> str | None:
    """The network filesystem type holding `directory` (e.g. ``"nfs4"``), else None.

    A directory that does not exist yet is judged by its nearest existing parent.
    """
    probe = Path(directory).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    kind = mount_type(str(probe), mountinfo)
    if kind is None:
        return None
    return kind if kind.lower() in NETWORK_FILESYSTEMS else None
