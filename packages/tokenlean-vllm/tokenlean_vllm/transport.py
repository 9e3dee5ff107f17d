"""The lean request path shared by the adapters: a plain (non-streaming) chat request posted with
the OpenAI SDK client's own ``httpx`` client, headers, base URL and timeout, without the SDK's
typed request/response layer (its largest client-side cost on a short request).

Only for requests the SDK adds nothing to: no per-call headers, query or timeout, no structured
output, no streaming, a static API key. Anything else, and any answer that is not a 200 with a
JSON body, goes through the SDK as usual (its retries, its error types).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import openai

__all__ = ["SDK_ONLY_KEYS", "lean_errors", "lean_request", "ok_json"]

#: request parameters only the OpenAI SDK knows what to do with
SDK_ONLY_KEYS = frozenset({"response_format", "extra_headers", "extra_query", "timeout"})


def lean_request(
    root: openai.OpenAI | openai.AsyncOpenAI, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """``httpx`` ``post`` arguments for a chat ``payload``; None when the request needs the SDK.

    ``payload`` is consumed: ``extra_body`` is merged into the top level, as the SDK does.
    """
    if payload.get("stream") or not SDK_ONLY_KEYS.isdisjoint(payload):
        return None
    # a key provider or provider runtime rewrites each request: leave those to the SDK
    if getattr(root, "_api_key_provider", None) is not None:
        return None
    if getattr(root, "_provider_runtime", None) is not None:
        return None
    payload.pop("stream", None)
    extra = payload.pop("extra_body", None)
    if isinstance(extra, Mapping):
        payload.update(extra)
    headers = {k: v for k, v in root.default_headers.items() if isinstance(v, str)}
    headers.update(root.auth_headers)
    return {
        "url": f"{root.base_url}chat/completions",
        "json": payload,
        "headers": headers,
        "timeout": root.timeout,
    }


def ok_json(response: httpx.Response) -> dict[str, Any] | None:
    """The body of a 200 answer with choices; None for anything else (the caller then makes the
    request again through the SDK, which raises or retries as it always does)."""
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("choices"):
        return None
    return data


@contextlib.contextmanager
def lean_errors() -> Iterator[None]:
    """A timeout raises as the SDK would (no second wait); other transport errors are swallowed,
    so the caller falls back to the SDK path, which retries and raises its own errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise openai.APITimeoutError(request=exc.request) from exc
    except httpx.TransportError:
        pass
