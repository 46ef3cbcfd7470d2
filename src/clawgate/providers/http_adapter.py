"""What the OpenAI and Anthropic adapters share: a profile, a lazily built SDK client, the key
check, closing, and the last steps of turning a failure into a ``ProviderError``."""

from __future__ import annotations

from typing import Any

from clawgate.errors import NotConfigured, ProviderError, ProviderUnavailable
from clawgate.providers.http_errors import from_transport
from clawgate.providers.settings import HttpProviderSettings, Profile
from clawgate.redaction import redact


class HttpAdapter:
    def __init__(self, settings: HttpProviderSettings, profile: Profile) -> None:
        self.settings = settings
        self.profile = profile
        self._client: Any = None

    @property
    def name(self) -> str:
        return self.settings.name

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _require_key(self) -> None:
        if self.settings.needs_key and not self.profile.api_key:
            raise NotConfigured(f"no API key for profile {self.profile.name!r} "
                             f"({self.profile.source} is not set)", provider=self.name)

    def _redacted(self, text: str) -> str:
        return redact(text, self.settings.secrets())

    def _other_failure(self, exc: Exception, message: str) -> ProviderError:
        """A failure that is not an HTTP answer: a broken transport or a garbled stream."""
        transport = from_transport(self.name, exc, self.settings.timeout_seconds)
        if transport is not None:
            return transport
        if isinstance(exc, ValueError):
            return ProviderUnavailable(f"malformed response: {message}", provider=self.name)
        return ProviderUnavailable(f"the stream broke: {type(exc).__name__}: {message}",
                                   provider=self.name)


def body_message(exc: Exception, nested: str = "error") -> str:
    """The provider's own message from an error body ({"error": {"message": ...}})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get(nested, body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(exc) or type(exc).__name__
