"""What every request meets before the app, in order: the rate limit, the declared length, the body read
under its limit; as steps the backend performs (shared.steps), each refusal counted in the metrics."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from drum_compat.shared.guards.body import (RequestBody, cut_short, declared_length, declared_too_large, malformed_chunks,
                                           too_large, too_slow)
from drum_compat.shared.guards.rate_limit import Decision, RateLimitPolicy, store_unavailable, too_many_requests
from drum_compat.shared.http import NeutralRequest, NeutralResponse
from drum_compat.shared.metrics import (BODY_TOO_LARGE, CLIENT_LEFT, MALFORMED_BODY, RATE_LIMITED, RATE_STORE_DOWN, SLOW_BODY,
                                        Metrics)
from drum_compat.shared.routes import RouteMatch
from drum_compat.shared.steps import BODY_CUT_SHORT, BODY_MALFORMED, BODY_OVER_LIMIT, BODY_TOO_SLOW, ReadBody, Steps, TakeToken

logger = logging.getLogger("drum_compat")
STORE_WARNING_EVERY = 60.0  # seconds between two "Redis unreachable" warnings of one worker


@dataclass(frozen=True)
class FrontDoorSettings:
    max_upload_size: int = 100 * 1024 * 1024
    rate_limit: RateLimitPolicy | None = None  # None: no rate limit
    redis_url: str | None = field(default=None, repr=False)  # rate limit state store; may hold a password
    spool_dir: str | None = None  # where bodies past 10 MiB go (the instance's directory); None: the system's
    body_timeout: float = 0.0  # seconds from arrival the whole body may take (DRUM_CLIENT_REQUEST_TIMEOUT); 0: no bound


class FrontDoor:
    def __init__(self, settings: FrontDoorSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._store_warned_at: float | None = None

    def before_app(self, request: NeutralRequest, route: RouteMatch | None, body: RequestBody,
                   arrived: float | None = None) -> Steps[NeutralResponse | None]:
        """What a request meets before the app, in order, as steps (TakeToken, ReadBody) the backend performs
        (shared.steps): the rate limit, the declared length, the body read under its limit and by its deadline;
        returns the refusal, or None to go on."""
        client = self.rate_limited_client(request, route)
        if client is not None:
            outcome = yield TakeToken(client)
            refusal = self.store_failed(outcome) if isinstance(outcome, BaseException) else self.rate_verdict(outcome)
            if refusal is not None:
                return refusal
        refusal = self.declared_too_large(request)
        if refusal is not None:
            return refusal
        timeout = self.settings.body_timeout
        read = yield ReadBody(body, max(arrived + timeout - time.monotonic(), 0.0) if timeout and arrived is not None else None)
        if read == BODY_OVER_LIMIT:
            return self.body_too_large()
        if read == BODY_TOO_SLOW:
            return self.body_too_slow(request, body)
        if read == BODY_CUT_SHORT:
            return self.client_left(request, body)
        if read == BODY_MALFORMED:
            return self.malformed_body(request, body)
        refusal = self.body_incomplete(request, body)
        body.complete = refusal is None
        return refusal

    # -- rate limit: model (and proxy) routes only, so probes and scrapes never count against a client ---
    def rate_limited_client(self, request: NeutralRequest, route: RouteMatch | None) -> str | None:
        policy = self.settings.rate_limit
        if policy is None or route is None or not (route.runs_model or route.extension or (route.forwards and policy.forwards)):
            return None
        return policy.client_of(request.remote_addr, request.headers.get("X-Forwarded-For"))

    def rate_verdict(self, decision: Decision) -> NeutralResponse | None:
        if decision.allowed:
            return None
        self.metrics.rejected(RATE_LIMITED)
        return too_many_requests(decision, self.settings.rate_limit)

    def store_failed(self, error: Exception) -> NeutralResponse | None:
        """Redis could not be asked: let the request through (fail-open, warned) or answer 503."""
        now = time.monotonic()
        if self._store_warned_at is None or now - self._store_warned_at >= STORE_WARNING_EVERY:
            self._store_warned_at = now
            action = "letting requests through (DRUM_RATE_LIMIT_FAIL_OPEN)" if self.settings.rate_limit.fail_open else "answering 503"
            logger.warning("Rate limit store unreachable (%s): %s", error, action)
        if self.settings.rate_limit.fail_open:
            return None
        self.metrics.rejected(RATE_STORE_DOWN)
        return store_unavailable()

    # -- body limit ----------------------------------------------------------------------------------------
    def declared_too_large(self, request: NeutralRequest) -> NeutralResponse | None:
        if declared_too_large(request.headers.get("Content-Length"), self.settings.max_upload_size):
            return self.body_too_large()
        return None

    def new_body(self) -> RequestBody:
        return RequestBody(self.settings.max_upload_size, self.settings.spool_dir)

    def body_too_large(self) -> NeutralResponse:
        self.metrics.rejected(BODY_TOO_LARGE)
        return too_large(self.settings.max_upload_size)

    def body_incomplete(self, request: NeutralRequest, body: RequestBody) -> NeutralResponse | None:
        """None when the body is all there; else the client left mid-body, and the request ends here."""
        declared = declared_length(request.headers.get("Content-Length"))
        if declared is None or body.size >= declared:
            return None
        return self.client_left(request, body)

    def body_too_slow(self, request: NeutralRequest, body: RequestBody) -> NeutralResponse:
        self.metrics.rejected(SLOW_BODY)
        logger.warning("Client %s sent %d body bytes in %g s: %s %s not run", request.remote_addr, body.size,
                       self.settings.body_timeout, request.method, request.path)
        return too_slow(self.settings.body_timeout)

    def malformed_body(self, request: NeutralRequest, body: RequestBody) -> NeutralResponse:
        """A chunked body whose framing the server's parser refused: logged and counted, never run."""
        self.metrics.rejected(MALFORMED_BODY)
        logger.warning("Client %s sent a malformed chunked body after %d bytes: %s %s not run", request.remote_addr,
                       body.size, request.method, request.path)
        return malformed_chunks()

    def client_left(self, request: NeutralRequest, body: RequestBody) -> NeutralResponse:
        """A client gone before its body ended: logged and counted, never run; the answer may reach nobody."""
        declared = declared_length(request.headers.get("Content-Length"))
        self.metrics.rejected(CLIENT_LEFT)
        logger.warning("Client %s disconnected after %d of %s body bytes: %s %s not run", request.remote_addr, body.size,
                       declared if declared is not None else "its chunked", request.method, request.path)
        return cut_short(body.size, declared)
