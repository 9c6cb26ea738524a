"""The adapter registry: ``<home>/adapters/<name>/`` holds stock PEFT files plus ``personad-adapter.json``.

Writes go to a temporary folder inside the registry and are renamed into place, so a reader sees a whole
adapter or none. Every load re-hashes the weights against the manifest (see :mod:`.weights`).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personad.errors import ConflictError, NotFoundError

from .manifest import (
    CONFIG_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    AdapterManifest,
    implied_parents,
    validate_name,
)
from .weights import LoraWeights, sha256_file


class AdapterNotFoundError(NotFoundError):
    code = "adapter_not_found"


class AdapterParentMissingError(NotFoundError):
    code = "adapter_parent_missing"


@dataclass(frozen=True)
class StackEntry:
    """One adapter of a resolved stack, in application order."""

    name: str
    scale: float
    manifest: AdapterManifest


class AdapterRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Parsed manifests keyed by file identity: resolving a stack on every request must not re-read and
        # re-parse JSON (measured: 0.21 of a 0.22 ms stack switch). A rewrite changes mtime/size/inode.
        self._manifests: dict[Path, tuple[tuple[int, int, int], AdapterManifest]] = {}

    @classmethod
    def for_home(cls, home: Path) -> AdapterRegistry:
        return cls(Path(home) / "adapters")

    # -- reading ---------------------------------------------------------------------------------------

    def folder(self, name: str) -> Path:
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return (self.folder(name) / MANIFEST_FILE).is_file()

    def manifest(self, name: str) -> AdapterManifest:
        folder = self.folder(name)
        path = folder / MANIFEST_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise AdapterNotFoundError(
                f"adapter {name!r} is not in the registry ({self.root}); see `personad lora list`,"
                " or train it with `personad lora train`",
            ) from None
        identity = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._manifests.get(path)
        if cached is not None and cached[0] == identity:
            return copy.deepcopy(cached[1])
        manifest = AdapterManifest.read(folder)
        self._manifests[path] = (identity, manifest)
        return copy.deepcopy(manifest)

    def list_adapters(self) -> list[AdapterManifest]:
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not (folder / MANIFEST_FILE).is_file():
                continue
            found.append(AdapterManifest.read(folder))
        return found

    def chain(self, name: str) -> list[str]:
        """``name``'s ancestors, outermost first, then ``name``: the order its stack is applied in."""
        order: list[str] = []
        self._visit(name, order, trail=())
        return order

    def _visit(self, name: str, order: list[str], trail: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in trail:
            raise ConflictError(
                f"adapter parents form a cycle: {' → '.join((*trail, name))}", code="adapter_cycle"
            )
        if not self.exists(name):
            if trail:
                raise AdapterParentMissingError(
                    f"adapter {trail[-1]!r} needs its parent {name!r}, which is not in the registry"
                    f" ({self.root}); train or import {name!r} first",
                )
            self.manifest(name)  # raises AdapterNotFoundError
        # The parents recorded at registration, never re-derived from the name: an adapter registered later
        # under a prefix must not change the stack an existing adapter was trained on.
        for parent in self.manifest(name).parents:
            self._visit(parent, order, (*trail, name))
        order.append(name)

    def implied_parent(self, name: str) -> str | None:
        """The nearest dotted prefix of ``name`` that is a registered adapter, or None.

        A prefix that is not an adapter is a namespace: ``continuum.legal``'s parent is ``continuum`` only if
        an adapter ``continuum`` exists; otherwise it has none (or ``continuum.legal.patent`` skips to
        ``continuum`` when only that exists).
        """
        for prefix in reversed(implied_parents(validate_name(name))):
            if self.exists(prefix):
                return prefix
        return None

    def direct_parents(self, name: str, explicit: Sequence[str] = ()) -> list[str]:
        """``name``'s direct parents: its implied parent (if any), then the explicit ones, each once."""
        implied = self.implied_parent(name)
        named = [validate_name(p) for p in explicit]
        return list(dict.fromkeys(([implied] if implied else []) + named))

    def resolve(self, refs: Iterable[Any]) -> list[StackEntry]:
        """Expand a stack (names, or objects with ``name`` and ``scale``) into its parent chains.

        Ancestors come before their children and appear once; an ancestor not named in the stack runs at
        scale 1.0, a named adapter at its own scale.
        """
        scales: dict[str, float] = {}
        wanted: list[str] = []
        for ref in refs:
            name = ref if isinstance(ref, str) else ref.name
            scale = 1.0 if isinstance(ref, str) else float(ref.scale)
            validate_name(name)
            scales[name] = scale
            wanted.append(name)
        order: list[str] = []
        for name in wanted:
            for member in self.chain(name):
                if member not in order:
                    order.append(member)
        return [StackEntry(n, scales.get(n, 1.0), self.manifest(n)) for n in order]

    def load(self, name: str) -> LoraWeights:
        """The adapter's factors, after checking its weights against the manifest's sha256."""
        manifest = self.manifest(name)
        return LoraWeights.load(name, self.folder(name), manifest.lora_hash)

    def children(self, name: str) -> list[str]:
        """Adapters that name ``name`` as a direct parent (recorded at their registration)."""
        return [m.name for m in self.list_adapters() if m.name != name and name in m.parents]

    # -- writing ---------------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        peft_folder: Path,
        *,
        parents: Sequence[str] = (),
        base_model: str,
        base_model_sha256: str,
        created_by: str = "personad",
        training: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        replace: bool = False,
        infer_parent: bool = True,
    ) -> AdapterManifest:
        """Copy a PEFT adapter folder into the registry under ``name`` and write its manifest.

        The manifest records the direct parents: ``parents``, after the nearest registered dotted prefix
        unless ``infer_parent`` is false (training passes the exact list it trained over).
        """
        import json

        validate_name(name)
        if infer_parent:
            all_parents = self.direct_parents(name, parents)
        else:
            all_parents = list(dict.fromkeys(validate_name(p) for p in parents))
        for parent in all_parents:
            if not self.exists(parent):
                raise AdapterParentMissingError(
                    f"adapter {name!r} needs its parent {parent!r}, which is not in the registry"
                    f" ({self.root}); train or import {parent!r} first",
                )
        target = self.folder(name)
        if target.exists() and not replace:
            raise ConflictError(
                f"adapter {name!r} already exists; delete it first or pass replace", code="adapter_exists"
            )
        source = Path(peft_folder)
        config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
        # Parse before accepting: a folder we could not apply later is refused now.
        weights = LoraWeights.load(name, source, None)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            shutil.copyfile(source / CONFIG_FILE, tmp / CONFIG_FILE)
            shutil.copyfile(source / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
            targets = config.get("target_modules") or []
            manifest = AdapterManifest(
                name=name,
                parents=all_parents,
                base_model=base_model,
                base_model_sha256=base_model_sha256,
                rank=int(config.get("r", 0)),
                alpha=float(config.get("lora_alpha", 0)),
                target_modules=sorted(targets) if isinstance(targets, list) else [str(targets)],
                lora_hash=sha256_file(tmp / WEIGHTS_FILE),
                size_bytes=(tmp / WEIGHTS_FILE).stat().st_size,
                created_by=created_by,
                training=training or {},
                metrics={**(metrics or {}), "modules": len(weights.modules)},
            )
            manifest.write(tmp)
            if target.exists():
                old = target.with_name(f".{name}.old")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest

    def update_metrics(self, name: str, metrics: dict[str, Any]) -> AdapterManifest:
        manifest = self.manifest(name)
        manifest.metrics.update(metrics)
        manifest.write(self.folder(name))
        return manifest

    def delete(self, name: str) -> None:
        """Remove an adapter; refused while other adapters build on it."""
        self.manifest(name)
        dependants = self.children(name)
        if dependants:
            raise ConflictError(
                f"adapter {name!r} is a parent of {', '.join(dependants)}; delete those first",
                code="adapter_in_use",
            )
        folder = self.folder(name)
        trash = folder.with_name(f".{name}.deleted")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
