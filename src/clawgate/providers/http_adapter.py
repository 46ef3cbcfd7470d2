"""What the OpenAI and Anthropic adapters share: a profile, a lazily built SDK client, the key
check, closing, and the last steps of turning a failure into a ``ProviderError``.

The SDK client is built off the event loop: importing ``openai`` takes about 0.5 s of CPU,
``anthropic`` about 1.4 s, and building a client another 0.1-0.2 s (its TLS context), time
in which every other session, health check and stop would wait. ``prepare`` does it (the
runtime calls it in the background when it starts); a call that comes first does it too,
and a call that comes meanwhile waits for the same build.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Generic, Protocol, TypeVar

from clawgate.clock import Clock, SystemClock
from clawgate.errors import NotConfigured, ProviderError, ProviderUnavailable
from clawgate.providers.http_errors import error_object, from_transport
from clawgate.providers.settings import HttpProviderSettings, Profile, public_url
from clawgate.redaction import redact


class SdkClient(Protocol):
    """The part of an SDK's client used here (``openai.AsyncOpenAI`` and
    ``anthropic.AsyncAnthropic`` both fit)."""

    @property
    def base_url(self) -> object: ...

    async def close(self) -> None: ...


#: The SDK client an adapter builds (lazily and in a worker thread: the SDKs are imported
#: only when needed, never on the event loop). An adapter names it:
#: ``HttpAdapter["AsyncOpenAI"]``.
ClientT = TypeVar("ClientT", bound=SdkClient)


class HttpAdapter(Generic[ClientT]):
    def __init__(
        self, settings: HttpProviderSettings, profile: Profile, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.profile = profile
        self._clock = clock or SystemClock()  # "now" for a retry-after given as a date
        self._client: ClientT | None = None
        self._building = asyncio.Lock()  # one build, however many calls wait for it

    @property
    def name(self) -> str:
        return self.settings.name

    async def prepare(self) -> None:
        await self._connect()

    async def _connect(self) -> ClientT:
        """The SDK client, built on first use in a worker thread (see the module's note)."""
        self._require_key()
        async with self._building:
            if self._client is None:
                self._client = await asyncio.to_thread(self._build)
        return self._client

    @abstractmethod
    def _build(self) -> ClientT:
        """Import the SDK and build its client. Runs in a worker thread, never on the loop."""

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _require_key(self) -> None:
        if self.profile.unusable:
            raise NotConfigured(f"unusable API key for profile {self.profile.name!r}: "
                                f"{self.profile.unusable}", provider=self.name)
        if self.settings.needs_key and not self.profile.api_key:
            raise NotConfigured(f"no API key for profile {self.profile.name!r} "
                                f"({self.profile.why_no_key})", provider=self.name)

    def _redacted(self, text: str) -> str:
        return redact(text, self.settings.secrets())

    def _unreachable(self, message: str) -> ProviderError:
        """The provider could not be reached: say where we tried (Ollama not running, ...)."""
        return ProviderUnavailable(f"connection to {self._endpoint()} failed: {message}",
                                   provider=self.name)

    def _endpoint(self) -> str:
        """The base URL requests go to, without credentials or a query (either may hold a
        secret)."""
        configured = self.settings.base_url or (
            str(self._client.base_url) if self._client is not None else "")
        return self._redacted(public_url(configured)) or "the provider's default endpoint"

    def _other_failure(self, exc: Exception, message: str) -> ProviderError:
        """A failure that is not an HTTP answer: a broken transport or a garbled stream."""
        transport = from_transport(self.name, exc, self.settings.timeout_seconds)
        if transport is not None:
            return transport
        if isinstance(exc, ValueError):
            return ProviderUnavailable(f"malformed response: {message}", provider=self.name)
        return ProviderUnavailable(f"the stream broke: {type(exc).__name__}: {message}",
                                   provider=self.name)


def body_message(exc: Exception) -> str:
    """The provider's own message from an error body ({"error": {"message": ...}})."""
    error = error_object(getattr(exc, "body", None))
    if error is not None and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc) or type(exc).__name__
