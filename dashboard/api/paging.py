"""Pages of a list, newest first: ``page`` and ``page_size`` bounded by the schemas, a page
beyond the last refused with 400."""

from __future__ import annotations

from math import ceil

from dashboard.api.errors import ApiError


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
