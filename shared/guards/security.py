"""Response hardening on every response of both stacks: fixed security headers, and CORS only for
the origins the operator listed (never with credentials, so a listed `*` stays harmless)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from werkzeug.datastructures import Headers

from drum_compat.shared.http import set_headers

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
PREFLIGHT_MAX_AGE = "600"


def parse_origins(value: str) -> tuple[str, ...]:
    """DRUM_CORS_ORIGINS: origins separated by commas or spaces; empty means CORS off."""
    return tuple(origin.rstrip("/") for origin in value.replace(",", " ").split())


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...] = ()

    def allowed_origin(self, origin: str | None) -> str | None:
        if not origin or not self.origins:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    def apply(self, headers: Headers, method: str, request_headers: Mapping[str, str]) -> None:
        """Add the CORS answer for this request's Origin; nothing when it is not listed but `Vary: Origin` (a cache
        must not hand a listed origin the answer a refused one got, nor the other way round)."""
        origin = request_headers.get("Origin")
        allowed = self.allowed_origin(origin)
        if allowed != "*" and origin and self.origins:
            headers.add("Vary", "Origin")
        if allowed is None:
            return
        headers.set("Access-Control-Allow-Origin", allowed)
        if method == "OPTIONS" and request_headers.get("Access-Control-Request-Method"):
            headers.set("Access-Control-Allow-Methods", headers.get("Allow", "GET, POST"))
            requested = request_headers.get("Access-Control-Request-Headers")
            if requested:
                headers.set("Access-Control-Allow-Headers", requested)
            headers.set("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)
        else:
            headers.set("Access-Control-Expose-Headers", "X-Request-ID, X_Request_ID, X-Drum-Version")


def harden(headers: Headers, cors: CorsPolicy, method: str, request_headers: Mapping[str, str],
           present: set[str] | None = None) -> None:
    """`present`: the names the response had, if the caller has them (shared.http.set_headers)."""
    set_headers(headers, SECURITY_HEADERS, present)
    cors.apply(headers, method, request_headers)
