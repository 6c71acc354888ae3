"""Errors the gateway answers itself, as ``application/problem+json`` (RFC 9457).

Stages raise :class:`Problem`; the edge handler renders it. A problem never reaches a
backend and never carries a traceback: ``detail`` is written for the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web

__all__ = ["Problem", "problem_body", "problem_response", "PROBLEM_CONTENT_TYPE"]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_CLOSE_AFTER = frozenset({408, 413})


def problem_body(status: int, detail: str, *, title: str | None = None) -> bytes:
    """The RFC 9457 document, for answers written without an aiohttp response too."""
    document = {
        "type": f"https://httpstatuses.io/{status}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return json.dumps(document).encode()


def problem_response(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, title: str | None = None
) -> web.Response:
    response = web.Response(
        status=status,
        body=problem_body(status, detail, title=title),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
    # No version banner (aiohttp would announce "Python/3.x aiohttp/3.x").
    response.headers["Server"] = "gateway"
    return response


class Problem(Exception):
    """Raised by any stage to answer the client with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
        close: bool = False,
    ) -> None:
        """``close``: end the connection after answering (the request's framing cannot
        be trusted, so nothing after it on the connection can be either)."""
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.title = title
        self.close = close

    @property
    def closes(self) -> bool:
        """The connection ends after this answer: the client may still be sending a
        body we will not read, or its framing cannot be trusted."""
        return self.close or self.status in _CLOSE_AFTER

    def response(self) -> web.Response:
        response = problem_response(self.status, self.detail, headers=self.headers, title=self.title)
        if self.close or self.status in _CLOSE_AFTER:
            # The client may still be sending a body we will not read: end the connection
            # rather than parse the rest of it as a next request.
            response.force_close()
        return response
