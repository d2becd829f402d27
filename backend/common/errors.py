"""The backend's error base: an exception that knows its HTTP status and user-facing detail."""
from __future__ import annotations


class BackendError(Exception):
    """An expected failure, answered as ``{"status": status, "detail": detail}``.

    Subclasses set a default ``status``; ``detail`` says what went wrong and, where possible,
    what to change. It crosses process boundaries (worker → web) through :meth:`to_dict`.
    """

    status: int = 500

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        """``{"status", "detail", "error"}``: the JSON error body (``error`` is the class name)."""
        return {"status": self.status, "detail": self.detail, "error": type(self).__name__}

    @classmethod
    def from_dict(cls, data: dict) -> "BackendError":
        """Rebuild an error sent by :meth:`to_dict` (the class name is kept for logs only)."""
        return cls(str(data.get("detail", "unknown error")), int(data.get("status", 500)))


class BadRequest(BackendError):
    """The request body is malformed or lacks a required field."""

    status = 400
