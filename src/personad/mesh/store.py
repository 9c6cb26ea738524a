"""The mesh's copy of each adapter it seeds: ``<home>/mesh/store/<info_hash>/<adapter>/`` plus the
``.torrent`` next to it, and libtorrent's resume data for downloads in progress.

A seeded copy never changes (the registry's own copy may get new metrics), so its torrent stays valid.
Torrents are BEP 52 hybrids: libtorrent hashes every 16 KiB block with SHA-256 in a merkle tree per file
and checks each piece it receives against it; the creation date is fixed so the same files always make the
same info-hash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import libtorrent as lt

from personad.lora.manifest import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE

from .errors import UnsafeFormatError

#: The only files a mesh torrent may carry: stock PEFT (safetensors, never pickle) and our manifest.
ALLOWED_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE})
PIECE_SIZE = 16 * 1024  # BEP 52's smallest: an adapter of a few MB still spreads over many peers


def make_torrent(folder: Path) -> tuple[bytes, str]:
    """The bencoded torrent of ``folder`` (named after it) and its v2 info-hash, hex."""
    entries = lt.list_files(str(folder))
    creator = lt.create_torrent(entries, PIECE_SIZE)
    creator.set_creation_date(0)
    lt.set_piece_hashes(creator, str(folder.parent))
    data = lt.bencode(creator.generate())
    info = lt.torrent_info(data)
    return data, str(info.info_hashes().v2)


def torrent_info(data: bytes) -> lt.torrent_info:
    return lt.torrent_info(data)


def check_file_list(names: list[str], adapter: str) -> None:
    """Refuse a torrent that carries anything but the adapter's three files (a pickle, a script...)."""
    extra = sorted(set(names) - ALLOWED_FILES)
    if extra:
        raise UnsafeFormatError(
            f"the torrent of {adapter!r} carries {', '.join(extra)}: only {', '.join(sorted(ALLOWED_FILES))}"
            " are accepted (safetensors, never pickle)",
        )
    missing = sorted({CONFIG_FILE, WEIGHTS_FILE} - set(names))
    if missing:
        raise UnsafeFormatError(f"the torrent of {adapter!r} lacks {', '.join(missing)}")


class MeshStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, info_hash: str) -> Path:
        return self.root / info_hash

    def torrent_path(self, info_hash: str) -> Path:
        return self.root / f"{info_hash}.torrent"

    def resume_path(self, info_hash: str) -> Path:
        return self.root / f"{info_hash}.resume"

    def has(self, info_hash: str) -> bool:
        return self.torrent_path(info_hash).is_file() and (self.root / f"{info_hash}.complete").exists()

    def mark_complete(self, info_hash: str) -> None:
        (self.root / f"{info_hash}.complete").touch()
        self.resume_path(info_hash).unlink(missing_ok=True)

    def import_adapter(self, name: str, registry_folder: Path, files: list[str]) -> tuple[str, Path]:
        """Copy an adapter's files from the registry into the store; returns (info_hash, adapter folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import.", dir=self.root))
        try:
            folder = tmp / name
            folder.mkdir()
            for file in files:
                shutil.copyfile(registry_folder / file, folder / file)
            data, info_hash = make_torrent(folder)
            target = self.folder(info_hash)
            if target.exists():
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, target)
            self.torrent_path(info_hash).write_bytes(data)
            self.mark_complete(info_hash)
            return info_hash, target / name
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def discard(self, info_hash: str) -> None:
        shutil.rmtree(self.folder(info_hash), ignore_errors=True)
        for suffix in (".torrent", ".resume", ".complete"):
            (self.root / f"{info_hash}{suffix}").unlink(missing_ok=True)

    def quarantine(self, info_hash: str, why: str) -> Path:
        """Move a download that failed verification aside, with the reason, for a human to look at."""
        target = self.root.parent / "quarantine" / info_hash
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.folder(info_hash).exists():
            os.replace(self.folder(info_hash), target)
        else:
            target.mkdir()
        (target / "REJECTED.txt").write_text(why + "\n", encoding="utf-8")
        self.discard(info_hash)
        return target

    def seeded(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(".complete")] for p in self.root.glob("*.complete"))
