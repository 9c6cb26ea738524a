"""Session file commands, confined to the session's ``artifacts/`` directory."""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry
from personad.bus.processor import CommandContext
from personad.errors import BadRequestError, CommandFailedError, NotFoundError, PathEscapeError
from personad.files.confine import relative_name, resolve_inside

CAPABILITY = "files"
Encoding = Literal["utf8", "base64"]


class FileWriteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=512, description="path relative to the session artifacts dir")
    content: str = Field(description="file content, as text or base64")
    encoding: Encoding = "utf8"
    append: bool = False


class FileReadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=512)
    encoding: Encoding = "utf8"
    max_bytes: int = Field(default=4 << 20, ge=1, le=64 << 20)


class FileListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(default=".", max_length=512)
    recursive: bool = False


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """The file system's refusals as the protocol's errors (never an internal_error)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            raise BadRequestError(
                f"{path!r}: a file stands where a folder is needed, or a folder where a file is",
                code="not_a_directory",
            ) from None
        if exc.errno == errno.ELOOP:
            raise PathEscapeError(f"{path!r} is a symlink; symlinks are not followed") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise BadRequestError(f"{path!r} is too long for the file system", code="name_too_long") from None
        if exc.errno == errno.ENOENT:
            raise NotFoundError(f"no file {path!r} in the session artifacts", code="file_not_found") from None
        raise CommandFailedError(f"{path!r}: {exc.strerror}", code="file_error") from None


async def file_write(ctx: CommandContext, params: FileWriteParams) -> dict[str, Any]:
    """Write (or append to) a file in the session's artifacts dir.

    Returns `{"path", "absolute_path", "bytes"}`. Absolute paths, `..` and symlinks leading out are refused
    (`path_escape`).
    """
    root = ctx.session.artifacts_dir
    target = resolve_inside(root, params.path)
    if target == root.resolve() or target.is_dir():
        raise BadRequestError(f"{params.path!r} is a directory", code="is_a_directory")
    if params.encoding == "base64":
        try:
            data = base64.b64decode(params.content, validate=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters in the text
            raise BadRequestError(f"content is not valid base64: {exc}", code="invalid_params") from None
    else:
        data = params.content.encode("utf-8")
    # O_NOFOLLOW: a symlink swapped in after the check above still cannot redirect the write.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if params.append else os.O_TRUNC)
    with _os_errors(params.path):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        size = target.stat().st_size
    return {"path": relative_name(root, target), "absolute_path": str(target), "bytes": size}


async def file_read(ctx: CommandContext, params: FileReadParams) -> dict[str, Any]:
    """Read a file from the session's artifacts dir.

    Returns `{"path", "encoding", "bytes", "content"}`; `not_text` for binary files read as utf8.
    """
    root = ctx.session.artifacts_dir
    target = resolve_inside(root, params.path)
    if not target.is_file():
        raise NotFoundError(f"no file {params.path!r} in the session artifacts", code="file_not_found")
    with _os_errors(params.path):
        size = target.stat().st_size
        if size > params.max_bytes:
            raise BadRequestError(
                f"{params.path!r} is {size} bytes, over max_bytes={params.max_bytes}", code="file_too_large"
            )
        data = target.read_bytes()
    if params.encoding == "base64":
        content = base64.b64encode(data).decode("ascii")
    else:
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestError(
                f"{params.path!r} is not UTF-8 text; read it with encoding=base64", code="not_text"
            ) from None
    return {
        "path": relative_name(root, target),
        "encoding": params.encoding,
        "bytes": size,
        "content": content,
    }


async def file_list(ctx: CommandContext, params: FileListParams) -> dict[str, Any]:
    """List files in the session's artifacts dir (or a folder of it).

    Returns `{"path", "entries": [{path, type: file|dir|symlink, bytes}]}`; symlinks are listed, not followed.
    """
    root = ctx.session.artifacts_dir
    target = resolve_inside(root, params.path)
    if not target.is_dir():
        raise NotFoundError(f"no folder {params.path!r} in the session artifacts", code="file_not_found")
    entries = []
    with _os_errors(params.path):
        walker = target.rglob("*") if params.recursive else target.iterdir()
        for entry in sorted(walker):
            # A symlink inside artifacts may point anywhere; list it without following it.
            kind = "symlink" if entry.is_symlink() else "dir" if entry.is_dir() else "file"
            size = entry.lstat().st_size if kind == "file" else None
            path = entry.relative_to(root.resolve()).as_posix()
            entries.append({"path": path, "type": kind, "bytes": size})
    return {"path": relative_name(root, target) or ".", "entries": entries}


def register_commands(registry: CommandRegistry) -> None:
    registry.add("file_write", file_write, params=FileWriteParams, capability=CAPABILITY)
    registry.add("file_read", file_read, params=FileReadParams, capability=CAPABILITY)
    registry.add("file_list", file_list, params=FileListParams, capability=CAPABILITY)
