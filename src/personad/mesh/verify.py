"""Verification before load, always: what an acquired adapter must pass before it enters the registry.

Before the download: the announcement's base model is ours. After it (libtorrent has checked every piece
against the torrent's SHA-256 merkle tree): only the three allowed files (safetensors, never pickle), the
weights' sha256 is the signed ``lora_hash``, the manifest inside agrees with the signed announcement, every
parent is in the registry (acquired first), the weights parse, and — where the announcement names an exam
this node has — the adapter measures as announced. Only then :meth:`Verifier.register` copies it into the
registry.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from personad.errors import PersonadError
from personad.lora.manifest import MANIFEST_FILE, WEIGHTS_FILE, AdapterManifest
from personad.lora.registry import AdapterRegistry
from personad.lora.weights import sha256_file

from .announcement import Announcement
from .errors import (
    BadAnnouncementError,
    BaseModelMismatchError,
    HashMismatchError,
    ParentMissingError,
    RemeasureFailedError,
    UnsafeFormatError,
)
from .exams import ExamRequest
from .store import check_file_list

if TYPE_CHECKING:
    from .node import MeshNode

MAX_ADAPTER_BYTES = 2 << 30


class Verifier:
    def __init__(self, node: MeshNode) -> None:
        self.node = node

    @property
    def ours(self) -> str:
        return self.node.config.base_model_sha256

    def before_download(self, ann: Announcement) -> None:
        if not self.ours or ann.base_model_sha256 != self.ours:
            raise BaseModelMismatchError(
                f"{ann.adapter!r} was trained on base model {ann.base_model_sha256[:12]}; this daemon runs"
                f" {self.ours[:12] or 'an unknown model'}",
            )
        if ann.size > MAX_ADAPTER_BYTES:
            raise UnsafeFormatError(f"{ann.adapter!r} announces {ann.size} bytes; the limit is 2 GiB")

    def check_metadata(self, ann: Announcement, handle: Any) -> None:
        """What the torrent says it holds, before a byte of it is fetched: the adapter's folder with only
        the allowed files, as many bytes as announced (no path, pickle or disk-filling surprise)."""
        from . import transfer

        name = transfer.torrent_name(handle)
        if name != ann.adapter:
            raise UnsafeFormatError(f"the torrent of {ann.adapter!r} is a folder named {name!r}")
        entries = transfer.file_entries(handle)
        check_file_list([n for n, _ in entries], ann.adapter)
        total = sum(size for _, size in entries)
        if total != ann.size:
            raise BadAnnouncementError(
                f"the torrent of {ann.adapter!r} holds {total} bytes, not the announced {ann.size}"
            )

    async def after_download(
        self, ann: Announcement, folder: Path, names: list[str]
    ) -> dict[str, Any] | None:
        """Check the downloaded files; returns the re-measurement (None when no exam applies)."""
        # Hashing and parsing the weights runs in a thread: the event loop keeps serving the bus and the
        # mesh (and the .torrent being written alongside).
        staging = await asyncio.to_thread(self._check_files, ann, folder, names)
        try:
            return await self._remeasure(ann, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_files(self, ann: Announcement, folder: Path, names: list[str]) -> Path:
        """The file list, the weights' sha256, the manifest, the parents, and a registration in a staging
        registry (the weights parse as a PEFT LoRA); returns that registry's root."""
        check_file_list(names, ann.adapter)
        digest = sha256_file(folder / WEIGHTS_FILE)
        if digest != ann.lora_hash:
            raise HashMismatchError(
                f"{ann.adapter!r}'s weights hash to {digest[:16]}, not the announced {ann.lora_hash[:16]}",
            )
        manifest = self.manifest(ann, folder, names)
        registry = self.node.registry
        for parent in ann.parents:
            if not registry.exists(parent):
                raise ParentMissingError(f"{ann.adapter!r} needs its parent {parent!r}, which is not here")
        staging = Path(tempfile.mkdtemp(prefix=".verify.", dir=self.node.dir))
        try:
            staged = AdapterRegistry(staging)
            for member in {m for p in ann.parents for m in registry.chain(p)}:
                shutil.copytree(registry.folder(member), staged.folder(member))
            try:
                self._register(staged, ann, folder, manifest)
            except (
                PersonadError,
                SafetensorError,
                ValueError,
                KeyError,
            ) as exc:  # not a PEFT LoRA we can load
                why = exc.message if isinstance(exc, PersonadError) else str(exc)
                raise UnsafeFormatError(f"{ann.adapter!r} is not a loadable adapter: {why}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def manifest(self, ann: Announcement, folder: Path, names: list[str]) -> AdapterManifest | None:
        if MANIFEST_FILE not in names:
            return None
        try:
            manifest = AdapterManifest.read(folder)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise BadAnnouncementError(f"{ann.adapter!r}'s manifest is not valid") from None
        if manifest.lora_hash != ann.lora_hash:
            raise HashMismatchError(
                f"{ann.adapter!r}'s manifest names another lora_hash than its announcement"
            )
        if manifest.base_model_sha256 != self.ours:
            raise BaseModelMismatchError(f"{ann.adapter!r}'s manifest names another base model")
        if manifest.name != ann.adapter or list(manifest.parents) != list(ann.parents):
            raise BadAnnouncementError(f"{ann.adapter!r}'s manifest names another adapter or parents")
        return manifest

    async def _remeasure(self, ann: Announcement, registry_root: Path) -> dict[str, Any] | None:
        name = ann.metrics.get("exam")
        exam = self.node.exams.get(name) if isinstance(name, str) else None
        if exam is None:
            return None
        result = await exam(ExamRequest(ann.adapter, registry_root, ann.metrics))
        measured = {"exam": name, result.metric: result.value, "announced": ann.metrics.get(result.metric)}
        if not result.within(ann.metrics):
            raise RemeasureFailedError(
                f"{ann.adapter!r} measures {result.metric} {result.value:.6g} on exam {name!r}; it was"
                f" announced as {ann.metrics.get(result.metric)} (interval {ann.metrics.get('ci')}):"
                " quarantined",
            )
        return measured

    def register(
        self, ann: Announcement, folder: Path, names: list[str], measured: dict[str, Any] | None
    ) -> None:
        manifest = self.manifest(ann, folder, names)
        extra = {"mesh": {"node": ann.node, "info_hash": ann.info_hash, "remeasured": measured}}
        self._register(self.node.registry, ann, folder, manifest, extra)

    def _register(
        self,
        registry: AdapterRegistry,
        ann: Announcement,
        folder: Path,
        manifest: AdapterManifest | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        registry.register(
            ann.adapter,
            folder,
            parents=ann.parents,
            infer_parent=False,
            base_model=manifest.base_model if manifest else "",
            base_model_sha256=self.ours,
            created_by=f"mesh:{ann.node[:16]}",
            training=manifest.training if manifest else {},
            metrics={**(manifest.metrics if manifest else {}), **(extra or {})},
        )
