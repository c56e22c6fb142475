"""The bearer token the SDK sends on every request (``Client(..., token=...)``).

It travels as ``authorization: Bearer <token>`` metadata, on Watch streams too. Over a
network, use it with client TLS (``tls=``): a token in the clear can be replayed.
"""

from __future__ import annotations

from typing import Any

import grpc.aio


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._header)
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)
