"""Kill -9 a daemon mid-download; restart it; the acquisition resumes from libtorrent's resume data and
completes with the same hash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import libtorrent as lt
import pytest

from personad.client import DaemonClient
from personad.lora.registry import AdapterRegistry
from tests.conftest import start_daemon
from tests.lora.helpers import random_peft_adapter, tiny_model

from .helpers import TINY_BASE

pytestmark = pytest.mark.slow

LIMIT = 1_000_000  # bytes/s: a 6 MB adapter takes about six seconds


def serve(home: Path) -> subprocess.Popen[bytes]:
    (home / "daemon.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "PERSONAD_DEFAULT_PERSONA": "",
        "PERSONAD_MESH_BASE_MODEL_SHA256": TINY_BASE,
        "PERSONAD_MESH_DOWNLOAD_LIMIT": str(LIMIT),
        "PERSONAD_MESH_POLL_S": "0.2",
    }
    command = [sys.executable, "-m", "personad.cli", "serve", "--home", str(home), "--port", "0", "--mesh"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the daemon exited"
        assert time.monotonic() < deadline, "the daemon did not start"
        if (home / "daemon.json").exists():
            url = json.loads((home / "daemon.json").read_text())["url"]
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
        time.sleep(0.1)


def test_a_killed_download_resumes_with_the_same_hash(tmp_path: Path) -> None:
    seeder = start_daemon(tmp_path / "a", mesh=True, mesh_base_model_sha256=TINY_BASE, mesh_poll_s=0.2)
    home = tmp_path / "c"
    proc = serve(home)
    try:
        model = tiny_model(hidden=256)
        folder = random_peft_adapter(
            model,
            tmp_path / "src",
            seed=3,
            rank=256,
            targets=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj"),
        )
        registry = AdapterRegistry.for_home(seeder.home)
        manifest = registry.register("legal", folder, base_model="tiny", base_model_sha256=TINY_BASE)
        assert manifest.size_bytes > 5_000_000, manifest.size_bytes
        with seeder.http() as http:
            code = http.post("/api/commands/mesh_invite", json={}).json()["result"]["code"]
            assert http.post("/api/commands/mesh_broadcast", json={"adapter": "legal"}).json()["ok"]
        with DaemonClient.from_home(home) as client:
            client.execute("mesh_join", {"code": code})
            deadline = time.monotonic() + 20
            while not client.execute("mesh_skills")["skills"]:
                assert time.monotonic() < deadline, "the announcement did not arrive"
                time.sleep(0.1)
            job = client.execute("mesh_acquire", {"skill": "legal"})["job"]
            deadline = time.monotonic() + 30
            while True:
                status = client.execute("job_status", {"job_id": job["job_id"]})["job"]
                fraction = status["progress"].get("fraction") or 0.0
                if fraction >= 0.4:
                    break
                assert status["state"] in ("queued", "running"), status
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
        time.sleep(1.0)  # resume data is saved every half second
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        store = home / "mesh" / "store"
        resume = list(store.glob("*.resume"))
        assert resume, "no resume data was saved"
        saved = lt.read_resume_data(resume[0].read_bytes())
        saved_bytes = sum(1 for have in saved.have_pieces if have) * saved.ti.piece_length()
        assert saved_bytes >= 0.25 * manifest.size_bytes
        assert "legal" in json.loads((home / "mesh" / "pending.json").read_text())
        assert not AdapterRegistry.for_home(home).exists("legal")

        proc = serve(home)  # resumes the pending acquisition by itself, as a job
        with DaemonClient.from_home(home) as client:
            deadline = time.monotonic() + 60
            while True:
                jobs = [j for j in client.execute("job_list")["jobs"] if j["command"] == "mesh_acquire"]
                finished = [j for j in jobs if j["state"] == "succeeded"]
                if finished:
                    break
                assert not [j for j in jobs if j["state"] == "failed"], jobs
                assert time.monotonic() < deadline, [
                    client.execute("job_status", {"job_id": j["job_id"]})["job"] for j in jobs
                ]
                time.sleep(0.2)
            result = client.execute("job_status", {"job_id": finished[0]["job_id"]})["job"]["result"]
        transfer = result["transfers"][0]
        assert transfer["resumed_bytes"] == saved_bytes, transfer
        assert transfer["downloaded_bytes"] <= transfer["bytes"] - saved_bytes + 64 * 1024, transfer
        acquired = AdapterRegistry.for_home(home).manifest("legal")
        assert acquired.lora_hash == manifest.lora_hash
        assert AdapterRegistry.for_home(home).load("legal")  # the weights hash as registered
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        seeder.stop()
