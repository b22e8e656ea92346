"""The API's errors: JSON ``{"error": ..., "field": ...}`` with a 4xx status, as the ingest
endpoints answer (SPEC 5.2), never a 500 for bad input."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status
