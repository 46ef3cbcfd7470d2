"""Every error clawgate raises on purpose.

    ClawgateError
    ├── ConfigError                 a config file or value is wrong (names file, line, key)
    ├── InvalidInput                bad input from a user or a channel; nothing was changed
    │   └── UnknownSession          no session has that key
    ├── StoreError                  the store could not do what was asked
    │   ├── StoreClosed             the store was closed (or the process is shutting down)
    │   ├── StoreBusy               another process held the database too long
    │   ├── SchemaTooNew            the database was written by a newer clawgate
    │   ├── SchemaUpgradeBlocked    an older clawgate still uses the database this one would
    │   │                           upgrade
    │   └── StoreCorrupt            the database failed an integrity check
    ├── Disconnected                the other end of a connection went away (the gateway)
    ├── DeliveryFailed              a channel could not take a reply (retried unless permanent)
    └── ProviderError               a model provider failed (never turned into reply text)
        ├── RateLimited             429; ``retry_after`` seconds when the provider says
        ├── AuthFailed              401/403: a wrong or revoked key
        ├── NotConfigured           a profile lacks what it needs (a key unset or unusable):
        │                           skipped, never rested, so fixing it takes effect at once
        ├── BillingFailed           402, quota or credit exhausted
        ├── ProviderTimeout         no answer in time
        ├── ProviderUnavailable     5xx, connection reset, malformed stream: worth a retry
        │   └── Overloaded          the provider says it is overloaded (529, 503)
        ├── ContextOverflow         the conversation is longer than the model's window
        ├── CoolingDown             every candidate is cooling down after failures
        ├── CandidatesFailed        more than one candidate was tried and none answered: each
        │                           one and why (``last``: the final one's error)
        └── ProviderFatal           the request itself is wrong; retrying will not help
"""

from __future__ import annotations


class ClawgateError(Exception):
    """Base of every error clawgate raises on purpose."""


class Disconnected(ClawgateError):
    """The connection this work went through is gone: nothing more can be done on it."""


class ConfigError(ClawgateError):
    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path, self.line, self.key, self.reason = path, line, key, message
        where = [part for part in (
            path and f"in {path}", line and f"line {line}", key and f"key {key}",
        ) if part]
        super().__init__(f"config error {', '.join(where)}: {message}" if where else message)


class InvalidInput(ClawgateError):
    """Bad input; the store and the runtime are unchanged.

    ``field`` names the parameter at fault, where the layer that knows it says so.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownSession(InvalidInput):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no session with key {key!r}")


class StoreError(ClawgateError):
    pass


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("the store is closed")


class StoreBusy(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass


class SchemaUpgradeBlocked(StoreError):
    """The database needs upgrading, but a process of an older clawgate is still using it."""


class StoreCorrupt(StoreError):
    pass


class DeliveryFailed(ClawgateError):
    """A channel could not deliver a reply. Retried later unless ``permanent``."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(message)


class ProviderError(ClawgateError):
    """A provider call failed. ``kind`` is a stable name for metrics and run rows."""

    kind = "provider_error"

    def __init__(self, message: str, *, provider: str = "") -> None:
        self.provider = provider
        self.reason = message  # without the provider's name
        super().__init__(f"{provider}: {message}" if provider else message)


class RateLimited(ProviderError):
    kind = "rate_limited"

    def __init__(
        self, message: str, *, provider: str = "", retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        suffix = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        super().__init__(message + suffix, provider=provider)


class AuthFailed(ProviderError):
    kind = "auth"


class NotConfigured(ProviderError):
    """A configuration problem (a key not set, or holding a character HTTP cannot carry), not
    a failure of the provider."""

    kind = "not_configured"


class BillingFailed(ProviderError):
    kind = "billing"


class ProviderTimeout(ProviderError):
    kind = "timeout"


class ProviderUnavailable(ProviderError):
    kind = "unavailable"


class Overloaded(ProviderUnavailable):
    kind = "overloaded"


class ContextOverflow(ProviderError):
    kind = "context_overflow"


class CoolingDown(ProviderError):
    kind = "cooling_down"


class CandidatesFailed(ProviderError):
    """No candidate answered; ``failures`` says, for each in order, which and why."""

    kind = "candidates_failed"

    def __init__(self, failures: list[str], last: ProviderError) -> None:
        self.failures = tuple(failures)
        self.last = last
        super().__init__(f"all {len(failures)} candidates failed: {'; '.join(failures)}")


class ProviderFatal(ProviderError):
    kind = "fatal"
