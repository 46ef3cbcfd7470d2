"""How the gateway listens, and who may talk to it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class Auth(StrEnum):
    TOKEN = "token"  # every API and WebSocket call carries the gateway token
    NONE = "none"  # no token: allowed only on a loopback address


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 18789
    auth: Auth = Auth.TOKEN
    max_frame_bytes: int = 1_048_576  # larger WebSocket frames get an error, not a hang-up
    max_body_bytes: int = 1_048_576  # the same for HTTP request bodies

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
