"""Downloading one adapter torrent from its seeders (a swarm), resumable across restarts.

libtorrent fetches the metadata from the seeders (``ut_metadata``), then pieces from all of them at once,
checking each against the torrent's SHA-256 merkle tree. Resume data is saved every half second, so a daemon
killed mid-download continues where it stopped; without it, libtorrent re-checks what is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libtorrent as lt

from .engine import TorrentEngine, parse_addr
from .errors import TransferFailedError
from .store import MeshStore

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 60.0
RESUME_EVERY_S = 0.5
RECONNECT_EVERY_S = 2.0
TORRENT_ATTEMPTS = 20
ANSWER_TIMEOUT_S = 10.0  # how long libtorrent may take to answer a resume-data request
POLL_S = 0.005  # the transfer loop's period: a 2 MB adapter takes ~20 ms on loopback
# Added torrents start paused and auto-managed (queued behind others): a mesh transfer starts at once.
_QUEUED = lt.torrent_flags.auto_managed | lt.torrent_flags.paused


@dataclass
class TransferReport:
    info_hash: str
    size: int
    seconds: float
    from_peers: dict[str, int] = field(default_factory=dict)  # addr -> payload bytes received
    resumed_bytes: int = 0  # already on disk when this transfer started (per the resume data)
    downloaded_bytes: int = 0  # payload received in this run
    hash_failures: int = 0


Progress = Callable[[dict[str, Any]], None]
#: Called once with the torrent's handle when its metadata has arrived, before any piece is fetched; raising
#: refuses the torrent (it is removed and the error propagates).
MetadataCheck = Callable[[Any], None]


def seed(engine: TorrentEngine, store: MeshStore, info_hash: str) -> Any:
    """Start seeding a complete torrent from the store (files checked against the torrent first)."""
    existing = engine.find(info_hash)
    if existing is not None:
        return existing
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(store.torrent_path(info_hash).read_bytes())
    params.save_path = str(store.folder(info_hash))
    params.flags = (params.flags | lt.torrent_flags.seed_mode) & ~_QUEUED
    return engine.session.add_torrent(params)


def _params(store: MeshStore, info_hash: str) -> tuple[Any, int]:
    """The torrent's add parameters, from its resume data when a previous run saved some; and how many
    bytes that data says are already on disk."""
    resume = store.resume_path(info_hash)
    if resume.is_file():
        with contextlib.suppress(Exception):  # a torn resume file: start over, libtorrent re-checks the disk
            params = lt.read_resume_data(resume.read_bytes())
            params.save_path = str(store.folder(info_hash))
            params.flags &= ~_QUEUED
            have = sum(1 for piece in params.have_pieces if piece)
            piece_length = params.ti.piece_length() if params.ti is not None else 0
            return params, have * piece_length
    params = lt.add_torrent_params()
    params.info_hashes = lt.info_hash_t(lt.sha256_hash(bytes.fromhex(info_hash)))
    params.save_path = str(store.folder(info_hash))
    params.name = info_hash
    # Upload mode until the metadata is checked: no piece is requested (nothing written) before we know
    # what the torrent holds.
    params.flags = (params.flags & ~_QUEUED) | lt.torrent_flags.upload_mode
    return params, 0


async def download(
    engine: TorrentEngine,
    store: MeshStore,
    info_hash: str,
    seeders: Sequence[str],
    *,
    progress: Progress | None = None,
    check_metadata: MetadataCheck | None = None,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> TransferReport:
    """Fetch ``info_hash`` from ``seeders`` (``host:port``) into the store; returns who sent what."""
    with engine.busy():
        store.folder(info_hash).mkdir(parents=True, exist_ok=True)
        handle = engine.find(info_hash)
        resumed = 0
        if handle is None:
            params, resumed = _params(store, info_hash)
            # Peers known at add time are connected at once (the torrent's connect boost); connect_peer
            # afterwards waits for the session's next one-second tick (measured: 0.1-1.1 s for a 2 MB adapter
            # that then takes 20 ms).
            params.peers = [parse_addr(addr) for addr in seeders]
            handle = engine.session.add_torrent(params)
        else:
            for addr in seeders:
                with contextlib.suppress(Exception):
                    handle.connect_peer(parse_addr(addr))
        report = TransferReport(info_hash, 0, 0.0, resumed_bytes=resumed)
        failures: list[int] = []
        resume_ready: asyncio.Queue[bytes] = asyncio.Queue()
        # Resume data asked for and not answered yet. Each request is answered by exactly one alert; one
        # still in flight when this returns would reach save_torrent's listener as if it answered its
        # flushing request, and the files would be read before libtorrent wrote its last blocks.
        asked = [0]

        def on_alert(alert: Any) -> None:
            if isinstance(alert, lt.hash_failed_alert):
                failures.append(int(alert.piece_index))
            elif isinstance(alert, lt.save_resume_data_alert):
                asked[0] -= 1
                resume_ready.put_nowait(lt.write_resume_data_buf(alert.params))
            elif isinstance(alert, lt.save_resume_data_failed_alert):
                asked[0] -= 1

        unsubscribe = engine.on_torrent(info_hash, on_alert)
        started = time.perf_counter()
        last_change, last_done = time.monotonic(), -1
        last_resume, last_connect = 0.0, time.monotonic()
        checked = False
        try:
            while True:
                status = handle.status()
                now = time.monotonic()
                if status.has_metadata and not checked:
                    if check_metadata is not None:
                        try:
                            check_metadata(handle)
                        except BaseException:
                            engine.session.remove_torrent(handle, lt.session.delete_files)
                            store.resume_path(info_hash).unlink(missing_ok=True)
                            raise
                    handle.unset_flags(lt.torrent_flags.upload_mode)
                    # A seeder only unchokes a peer that turns interested at its next unchoke round (about a
                    # second, measured: ten times the whole transfer of a 2 MB adapter); resuming reconnects
                    # at once (connect boost) and a fresh connection is unchoked at once.
                    handle.pause()
                    handle.resume()
                    last_connect, checked = now, True
                if now - last_connect >= RECONNECT_EVERY_S and status.num_peers < len(seeders):
                    for addr in seeders:
                        with contextlib.suppress(Exception):
                            handle.connect_peer(parse_addr(addr))
                    last_connect = now
                with contextlib.suppress(RuntimeError):
                    for peer in handle.get_peer_info():
                        key = f"{peer.ip[0]}:{peer.ip[1]}"
                        report.from_peers[key] = max(report.from_peers.get(key, 0), int(peer.total_download))
                done = int(status.total_wanted_done)
                if done != last_done:
                    last_done, last_change = done, now
                    if progress is not None and status.has_metadata:
                        progress(
                            {
                                "info_hash": info_hash,
                                "done": done,
                                "total": int(status.total_wanted),
                                "progress": round(float(status.progress), 4),
                                "peers": int(status.num_peers),
                                "rate": int(status.download_payload_rate),
                            }
                        )
                if (
                    status.has_metadata
                    and status.is_finished
                    and status.total_wanted_done == status.total_wanted
                ):
                    report.size = int(status.total_wanted)
                    report.downloaded_bytes = int(status.total_payload_download)
                    break
                if now - last_change > stall_timeout_s:
                    raise TransferFailedError(
                        f"no data for {info_hash[:16]} from {len(seeders)} seeders in"
                        f" {stall_timeout_s:.0f} s; are they still online? (`personad mesh peers`)",
                    )
                if now - last_resume >= RESUME_EVERY_S and status.has_metadata:
                    handle.save_resume_data(lt.torrent_handle.save_info_dict)
                    asked[0] += 1
                    last_resume = now
                while not resume_ready.empty():
                    _write_resume(store, info_hash, resume_ready.get_nowait())
                await asyncio.sleep(POLL_S)
            answered_by = time.monotonic() + ANSWER_TIMEOUT_S
            while asked[0] > 0 and time.monotonic() < answered_by:
                await asyncio.sleep(POLL_S)
            while not resume_ready.empty():
                _write_resume(store, info_hash, resume_ready.get_nowait())
        finally:
            unsubscribe()
        report.seconds = time.perf_counter() - started
        report.hash_failures = len(failures)
        return report


async def save_torrent(engine: TorrentEngine, store: MeshStore, info_hash: str) -> None:
    """Flush the downloaded torrent to disk and write its .torrent, piece layers included, from
    libtorrent's own record: what we seed from after a restart.

    "Finished" means every piece passed its hash, not that it is on disk: libtorrent may still hold blocks
    in its store buffer (measured: a 20 MB adapter hashed wrong when read straight after). Resume data does
    not wait for them (libtorrent posts its alert at once and releases the files later); ``flush_cache``
    does: its alert comes after a fence job that waits for every write queued before it.
    """
    handle = engine.find(info_hash)
    if handle is None:
        raise TransferFailedError(f"{info_hash[:16]} is not in the session any more")
    ready: asyncio.Queue[Any] = asyncio.Queue()

    flushed = asyncio.Event()

    def on_alert(alert: Any) -> None:
        if isinstance(alert, lt.save_resume_data_alert):
            ready.put_nowait(alert.params)
        elif isinstance(alert, lt.save_resume_data_failed_alert):
            ready.put_nowait(None)
        elif isinstance(alert, lt.cache_flushed_alert):
            flushed.set()

    # Right after the last piece libtorrent may not yet have merged every file's hashes into its piece
    # layers ("a piece layer is invalid"): ask again shortly.
    unsubscribe = engine.on_torrent(info_hash, on_alert)
    try:
        with engine.busy():
            handle.flush_cache()
            try:
                await asyncio.wait_for(flushed.wait(), ANSWER_TIMEOUT_S)
            except TimeoutError:
                raise TransferFailedError(f"libtorrent did not write {info_hash[:16]} to disk") from None
            for attempt in range(TORRENT_ATTEMPTS):
                handle.save_resume_data(lt.torrent_handle.save_info_dict | lt.torrent_handle.flush_disk_cache)
                params = await asyncio.wait_for(ready.get(), ANSWER_TIMEOUT_S)
                if params is None:
                    raise TransferFailedError(f"libtorrent could not write {info_hash[:16]} to disk")
                try:
                    torrent = lt.write_torrent_file(params)
                    break
                except RuntimeError:
                    log.debug("piece layers of %s not complete yet (attempt %d)", info_hash[:16], attempt)
                    if attempt == TORRENT_ATTEMPTS - 1:
                        raise TransferFailedError(
                            f"libtorrent holds no complete piece layers for {info_hash[:16]}"
                        ) from None
                    await asyncio.sleep(0.01 * (attempt + 1))
    finally:
        unsubscribe()
    store.torrent_path(info_hash).write_bytes(lt.bencode(torrent))  # type: ignore[arg-type]


def _write_resume(store: MeshStore, info_hash: str, data: bytes) -> None:
    path = store.resume_path(info_hash)
    tmp = path.with_suffix(".resume.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def file_entries(handle: Any) -> list[tuple[str, int]]:
    """The torrent's files as ``(name, size)``, relative to its top folder (``<adapter>/<f>`` → ``<f>``),
    padding left out; a symlink or an executable gets a name that cannot pass the allowed-files check."""
    files = handle.torrent_file().layout()
    entries = []
    for index in range(files.num_files()):
        flags = files.file_flags(index)
        if flags & lt.file_storage.flag_pad_file:
            continue
        path = files.file_path(index)
        name = path.split("/", 1)[1] if "/" in path else path
        if flags & (lt.file_storage.flag_symlink | lt.file_storage.flag_executable):
            name = f"{name} (symlink or executable)"
        entries.append((name, int(files.file_size(index))))
    return entries


def file_names(handle: Any) -> list[str]:
    return [name for name, _ in file_entries(handle)]


def torrent_name(handle: Any) -> str:
    return str(handle.torrent_file().name())


def remove(engine: TorrentEngine, info_hash: str) -> None:
    handle = engine.find(info_hash)
    if handle is not None:
        engine.session.remove_torrent(handle)
