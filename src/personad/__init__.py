"""PersonaDaemon: AI personas and humans on one universal command bus."""

__version__ = "0.1.0"

from personad.bus.commands import Command, CommandRegistry
from personad.bus.processor import CommandContext
from personad.config import Settings
from personad.daemon import Daemon
from personad.errors import PersonadError

__all__ = [
    "Command",
    "CommandContext",
    "CommandRegistry",
    "Daemon",
    "PersonadError",
    "Settings",
    "__version__",
]
