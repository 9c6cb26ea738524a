"""Resolve client-supplied paths strictly inside one directory."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from personad.errors import BadRequestError, PathEscapeError

# POSIX NAME_MAX on every filesystem we run on; checked here so a long name is a clear error, not an OSError.
NAME_MAX_BYTES = 255


def resolve_inside(root: Path, relative: str) -> Path:
    """Return ``root/relative`` resolved, refusing absolute paths, ``..`` and symlinks that lead out.

    The final check runs on the fully resolved path, so a symlink planted inside the directory that
    points elsewhere is refused too.
    """
    if "\x00" in relative:
        raise PathEscapeError("path contains a NUL byte")
    if relative.startswith(("/", "\\")) or PureWindowsPath(relative).drive:
        raise PathEscapeError(
            f"absolute path {relative!r} refused; give a path relative to the session artifacts"
        )
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if ".." in parts:
        raise PathEscapeError(f"path {relative!r} refused: '..' may not appear in session paths")
    for part in parts:
        try:
            size = len(os.fsencode(part))
        except UnicodeError:
            raise BadRequestError(
                f"path {relative!r} cannot be a file name here (not encodable as UTF-8)", code="invalid_path"
            ) from None
        if size > NAME_MAX_BYTES:
            raise BadRequestError(
                f"path component of {size} bytes is too long (at most {NAME_MAX_BYTES} bytes each)",
                code="name_too_long",
            )
    base = root.resolve()
    target = (base / PurePosixPath(*parts)).resolve() if parts else base
    if target != base and not target.is_relative_to(base):
        raise PathEscapeError(f"path {relative!r} resolves outside the session directory (symlink?)")
    return target


def relative_name(root: Path, path: Path) -> str:
    return path.relative_to(root.resolve()).as_posix()
