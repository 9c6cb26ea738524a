"""The mesh's errors: each rejection has its own code, so a client (and a test) can tell them apart."""

from __future__ import annotations

from personad.errors import (
    BadRequestError,
    CommandFailedError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
)


class MeshDisabledError(UnavailableError):
    code = "mesh_disabled"


class InviteInvalidError(BadRequestError):
    code = "mesh_invite_invalid"


class SkillNotFoundError(NotFoundError):
    code = "mesh_skill_not_found"


class PeerNotFoundError(NotFoundError):
    code = "mesh_peer_not_found"


class TransferFailedError(CommandFailedError):
    code = "mesh_transfer_failed"


class RejectedError(ForbiddenError):
    """An acquired adapter (or its announcement) failed verification; nothing entered the registry."""

    code = "mesh_rejected"


class BadAnnouncementError(RejectedError):
    code = "mesh_bad_announcement"


class BadSignatureError(RejectedError):
    code = "mesh_bad_signature"


class KeyRetiredError(RejectedError):
    code = "mesh_key_retired"


class ReplayError(RejectedError):
    code = "mesh_replay"


class HashMismatchError(RejectedError):
    code = "mesh_hash_mismatch"


class BaseModelMismatchError(RejectedError):
    code = "mesh_base_model_mismatch"


class ParentMissingError(RejectedError):
    code = "mesh_parent_missing"


class UnsafeFormatError(RejectedError):
    code = "mesh_unsafe_format"


class RemeasureFailedError(RejectedError):
    code = "mesh_remeasure_failed"


class PeerDroppedError(RejectedError):
    code = "mesh_peer_dropped"


class AdapterConflictError(ConflictError):
    code = "mesh_adapter_conflict"
