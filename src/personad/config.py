"""Configuration in one place: environment variables prefixed ``PERSONAD_`` and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class Settings(BaseSettings):
    """Daemon settings. Every field can be set as ``PERSONAD_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PERSONAD_", extra="ignore")

    home: Path = Field(default=Path(".continuum"), description="state directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port")
    token: str | None = Field(default=None, description="overrides the token kept in home")
    max_message_bytes: int = Field(default=1 << 20, ge=1024, description="largest WS message / HTTP body")
    browser_executable: str = "/usr/bin/chromium"
    browser_headless: bool = True
    browser_extra_args: list[str] = Field(
        default_factory=list,
        description="extra Chromium flags after the defaults (JSON list in the environment), e.g. a proxy",
    )
    session_idle_seconds: float = Field(
        default=900.0, description="idle detached sessions have their browser contexts closed after this"
    )
    max_jobs: int = Field(
        default=1, ge=1, le=64, description="long jobs (training, Academy) running at once; the rest queue"
    )
    preload_embedder: bool = Field(
        default=True, description="load the brain's embedding model at start (when any persona exists)"
    )
    mesh: bool = Field(default=False, description="join the mesh: share and acquire adapters with peers")
    mesh_listen: str = Field(
        default="127.0.0.1:0",
        description="host:port of the mesh's libtorrent session (DHT on UDP, BitTorrent on TCP); port 0"
        " reuses the last port this home had, else picks one; loopback unless you bind elsewhere",
    )
    mesh_advertise: str = Field(
        default="",
        description="host[:port] peers should reach this node at (when listening on 0.0.0.0 or behind NAT)",
    )
    mesh_name: str = Field(default="", max_length=64, description="how this node is shown to peers")
    mesh_base_model_sha256: str | None = Field(
        default=None, description="the base model adapters must match (default: the local model's GGUF)"
    )
    mesh_mdns: bool = Field(default=False, description="find peers on the local network by mDNS (zeroconf)")
    mesh_replicate: bool = Field(default=True, description="fetch and seed skills in demand on the mesh")
    mesh_download_limit: int = Field(default=0, ge=0, description="bytes/s for mesh downloads; 0 = none")
    mesh_upload_limit: int = Field(default=0, ge=0, description="bytes/s for mesh uploads; 0 = none")
    mesh_poll_s: float = Field(default=1.0, gt=0, le=60, description="seconds between directory reads")
    default_room: str = "general"
    default_persona: str | None = Field(
        default="assistant", description="created on first start (local model, autostart); empty to skip"
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()
