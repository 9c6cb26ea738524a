"""Resolve client-supplied paths strictly inside one directory."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from personad.errors import PathEscapeError


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
    base = root.resolve()
    target = (base / PurePosixPath(*parts)).resolve() if parts else base
    if target != base and not target.is_relative_to(base):
        raise PathEscapeError(f"path {relative!r} resolves outside the session directory (symlink?)")
    return target


def relative_name(root: Path, path: Path) -> str:
    return path.relative_to(root.resolve()).as_posix()
