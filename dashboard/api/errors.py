"""The API's errors: JSON ``{"error": ..., "field": ...}`` with a 4xx status, as the ingest
endpoints answer (SPEC 5.2), never a 500 for bad input."""

from __future__ import annotations

from math import ceil


class ApiError(Exception):
    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


def page_of(queryset, page: int, page_size: int) -> tuple[dict, list]:
    """The paging fields of :class:`dashboard.api.schemas.Page` and the items of ``page``.

    Raises :class:`ApiError` for a page beyond the last (there is always a page 1).
    """
    count = queryset.count()
    pages = max(1, ceil(count / page_size))
    if page > pages:
        raise ApiError(f"page {page} is beyond the last page, {pages}", "page")
    items = list(queryset[(page - 1) * page_size : page * page_size])
    return {"count": count, "page": page, "pages": pages, "page_size": page_size}, items
