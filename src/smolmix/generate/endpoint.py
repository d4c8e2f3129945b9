"""An OpenAI-compatible endpoint (vLLM, SGLang, TGI, llama.cpp's server, ``transformers serve``,
hosted APIs) as a teacher: async HTTP (httpx), one request per sample, retried on transient
errors.

- Transient: a timeout, a refused or dropped connection, HTTP 408, 425, 429, 500, 502, 503,
  504. The request is sent again after an exponential backoff with jitter (half the delay
  fixed, half random) capped at :attr:`RetryPolicy.cap_s`, or after the server's
  ``Retry-After`` when that is longer. A request that has kept failing for
  :attr:`RetryPolicy.budget_s` seconds stops the run with one line naming the endpoint.
- Fatal at once: HTTP 401/403 (the key is wrong or missing: the message names the variable the
  key came from, never the key) and 404 (an unknown model or a wrong base URL).
- Any other refusal (400, 413, 422: a prompt too long for the model, say) is that sample's
  result, recorded as rejected with the server's reason; the run goes on.

A reasoning model's separate ``reasoning_content`` (vLLM's and SGLang's reasoning parsers) is
put back in front of the answer as ``<think>...</think>``, so a long-CoT trace is kept whole.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from smolmix.core.errors import SmolmixError

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
APIS = ("chat", "completion")
MESSAGE_LIMIT = 200  # characters of a server's error message quoted in ours


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a failing request is sent again."""

    budget_s: float = 120.0  # a request failing for longer than this stops the run
    base_s: float = 0.5      # the first backoff
    cap_s: float = 15.0      # the longest backoff

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (0-based): exponential, half jittered."""
        full = min(self.cap_s, self.base_s * 2 ** attempt)
        return full / 2 + rng.uniform(0, full / 2)


@dataclass(frozen=True)
class Completion:
    """One sample: the text (or the server's refusal), why it ended, tokens, attempts."""

    text: str
    finish_reason: str | None
    completion_tokens: int | None
    prompt_tokens: int | None
    attempts: int = 1
    refused: str | None = None  # the server's reason when it refused this request


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), else None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The error message a server sent, on one line and short."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message", body)))
        body = err.get("message", err) if isinstance(err, dict) else err
    text = " ".join(str(body).split())
    return text[:MESSAGE_LIMIT] or response.reason_phrase


class Endpoint:
    """Requests to one model at one OpenAI-compatible base URL; use as ``async with``."""

    def __init__(self, base_url: str, model: str | None, api: str = "chat",
                 key: str | None = None, key_source: str = "OPENAI_API_KEY",
                 timeout_s: float = 600.0, retry: RetryPolicy = RetryPolicy(),
                 concurrency: int = 8, seed: int = 0) -> None:
        if api not in APIS:
            raise SmolmixError(f"must be one of {', '.join(APIS)}, got {api!r}", "--api")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.key_source = key_source
        self.retry = retry
        self._rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    async def served_models(self) -> list[str] | None:
        """The ids ``GET /models`` lists (None when the server has no such route); checks the
        endpoint is reachable and the key accepted, retrying like any request."""
        response = await self._send("GET", "/models")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise SmolmixError(f"GET {self.base_url}/models answered HTTP "
                               f"{response.status_code}: {_server_message(response)}",
                               "--teacher")
        try:
            data = response.json().get("data") or []
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, AttributeError, TypeError):
            return None

    async def complete(self, prompt: str, max_tokens: int, temperature: float,
                       top_p: float, seed: int | None) -> Completion:
        """One sample for ``prompt`` (a user message for ``chat``, raw text for
        ``completion``)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                                "temperature": temperature, "top_p": top_p, "stream": False}
        if seed is not None:
            body["seed"] = seed
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            path = "/chat/completions"
        else:
            body["prompt"] = prompt
            path = "/completions"
        attempts = [0]
        response = await self._send("POST", path, json=body, attempts=attempts)
        if response.status_code == 404:
            raise SmolmixError(f"HTTP 404 from {self.base_url}{path}: "
                               f"{_server_message(response)} (is the model {self.model!r} "
                               "served there, and does the base URL end in /v1?)", "--model")
        if response.status_code >= 400:
            return Completion("", None, None, None, attempts[0],
                              refused=f"HTTP {response.status_code}: {_server_message(response)}")
        return self._parse(response, attempts[0])

    def _parse(self, response: httpx.Response, attempts: int) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            return Completion("", None, None, None, attempts,
                              refused=f"unreadable answer: {response.text[:MESSAGE_LIMIT]!r}")
        if self.api == "chat":
            message = choice.get("message") or {}
            text = message.get("content") or ""
            thought = message.get("reasoning_content") or message.get("reasoning")
            if thought:
                text = f"<think>\n{thought}\n</think>\n\n{text}"
        else:
            text = choice.get("text") or ""
        usage = data.get("usage") or {}
        return Completion(text, choice.get("finish_reason"), usage.get("completion_tokens"),
                          usage.get("prompt_tokens"), attempts)

    async def _send(self, method: str, path: str, json: dict | None = None,
                    attempts: list[int] | None = None) -> httpx.Response:
        """The response to a request, sent again on transient failures within the budget;
        authentication failures raise at once."""
        attempts = attempts if attempts is not None else [0]
        first_failure: float | None = None
        failures = 0
        while True:
            attempts[0] += 1
            wait: float | None = None
            try:
                response = await self._client.request(method, path, json=json)
            except httpx.TransportError as exc:  # timeouts, refused/dropped connections
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code in AUTH_STATUS:
                    raise SmolmixError(
                        f"authentication failed at {self.base_url} (HTTP "
                        f"{response.status_code}: {_server_message(response)}); check the key "
                        f"in {self.key_source}", "--teacher")
                if response.status_code not in TRANSIENT_STATUS:
                    return response
                problem = f"HTTP {response.status_code}"
                wait = retry_after(response.headers)
            now = time.monotonic()
            first_failure = first_failure if first_failure is not None else now
            delay = max(self.retry.delay(failures, self._rng), wait or 0.0)
            if now + delay - first_failure > self.retry.budget_s:
                raise SmolmixError(f"{self.base_url} kept failing ({problem}) for "
                                   f"{now - first_failure:.0f} s; the next try would pass the "
                                   f"retry budget of {self.retry.budget_s:g} s",
                                   "--retry-budget")
            failures += 1
            await asyncio.sleep(delay)
