"""The server settings table: every parameter declared once with type, default, range, the stacks
it applies to, the gunicorn/uvicorn setting it feeds, deprecated names and help. Validation,
`drum-compat config`, the docs table and both server configurations are derived from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from drum_compat.runtime.options import parse_bool
from drum_compat.shared.runtime_parameters import PREFIX, RuntimeParameterException, RuntimeParameters
from drum_compat.shared.guards.supervision import MIB
from drum_compat.shared.server_types import SERVER_TYPES, Stack



@dataclass(frozen=True)
class Setting:
    key: str
    kind: type  # int, str or bool
    default: Any  # None: the server's own default
    help: str
    names: Mapping[str, str]  # stack -> the parameter name read there
    deprecated: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # stack -> old names still read, with a warning
    gunicorn: str | None = None
    uvicorn: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    env_fallback: str | None = None  # a plain env var read last (DRUM: MAX_WORKERS)
    zero_is_off: bool = False  # 0 means "feature off": left out of the server's configuration
    invalid_stops_startup: bool = False  # an unaccepted value is an error, not a warning and the default
    secret: bool = False  # never shown, logged or handed on: each server process reads it itself (runtime.tls)
    accepts: str | None = None  # what a free-form string must be, for help and messages
    core: bool = False  # applied by drum-compat itself in each worker (ServerOptions.core_settings)
    uvicorn_has_none: bool = False  # uvicorn has no such setting: drum-compat applies `uvicorn` itself, by that name

    def accepted(self) -> str:
        if self.accepts:
            return self.accepts
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.minimum is not None:
            return f"{self.minimum}..{self.maximum}"
        return "any string"


def _both(name: str) -> dict[str, str]:
    return {Stack.FLASK: name, Stack.FASTAPI: name}


def _renamed(gunicorn_name: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """DRUM_GUNICORN_X keeps working under fastapi as a deprecated name of DRUM_UVICORN_X."""
    uvicorn_name = gunicorn_name.replace("DRUM_GUNICORN_", "DRUM_UVICORN_")
    return {Stack.FLASK: gunicorn_name, Stack.FASTAPI: uvicorn_name}, {Stack.FASTAPI: (gunicorn_name,)}


def _fastapi_alias(name: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """One name on both stacks; the DRUM_FASTAPI_ spelling of DRUM's FastAPI plans still read there."""
    return _both(name), {Stack.FASTAPI: (name.replace("DRUM_", "DRUM_FASTAPI_", 1),)}


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PEM_FILE = "path to a readable PEM file"

SERVER_TYPE = Setting("server_type", str, "gunicorn", "Which stack serves the model (README: Server types).",
                      _both("DRUM_SERVER_TYPE"), choices=tuple(SERVER_TYPES), invalid_stops_startup=True)

SETTINGS: tuple[Setting, ...] = (
    SERVER_TYPE,
    Setting("workers", int, 1, "Worker processes; each loads its own copy of the model.",
            _both("CUSTOM_MODEL_WORKERS"), gunicorn="workers", uvicorn="workers", minimum=1, maximum=199, env_fallback="MAX_WORKERS"),
    Setting("backlog", int, 2048, "Connections the listening socket queues.",
            _both("DRUM_WEBSERVER_BACKLOG"), gunicorn="backlog", uvicorn="backlog", minimum=1, maximum=10000),
    Setting("request_timeout", int, 120, "Seconds from a request's arrival (queueing included) to its 504 answer; gunicorn "
            "also replaces a worker whose heartbeat stops 30 s longer than that (0: neither).",
            _both("DRUM_CLIENT_REQUEST_TIMEOUT"), gunicorn="timeout", minimum=0, maximum=3600, core=True),
    Setting("stuck_call_grace", int, 30, "Seconds past the request timeout after which a model call counts as stuck even "
            "with model threads free (with every thread busy, the timeout alone): the worker is then replaced "
            "(README: Supervision).", _both("DRUM_STUCK_CALL_GRACE"), minimum=0, maximum=3600, core=True),
    Setting("max_worker_rss_mb", int, 0, "Memory guard: a worker whose resident memory passes this many MiB finishes "
            "what it runs and is replaced (0: off).", _both("DRUM_MAX_WORKER_RSS_MB"), minimum=0, maximum=1 << 20, core=True),
    Setting("worker_healthcheck_timeout", int, 120, "uvicorn: seconds a worker process may leave the supervisor's ping "
            "unanswered (a frozen process) before it is killed; a hook holding the GIL or a slow start stays below it.",
            {Stack.FASTAPI: "DRUM_UVICORN_WORKER_HEALTHCHECK_TIMEOUT"}, uvicorn="timeout_worker_healthcheck",
            minimum=1, maximum=3600),
    Setting("executor_workers", int, 1, "Model threads per worker: model hooks run there, never on the event loop or gevent hub.",
            *_fastapi_alias("DRUM_EXECUTOR_WORKERS"), minimum=1, maximum=64, core=True),
    Setting("executor_queue_depth", int, 100, "Model requests that may wait for a model thread (per worker); beyond that: 503.",
            *_fastapi_alias("DRUM_EXECUTOR_QUEUE_DEPTH"), minimum=0, maximum=10000, core=True),
    Setting("executor_queue_timeout", int, 30, "Seconds a model request waits for a thread before its 503.",
            *_fastapi_alias("DRUM_EXECUTOR_QUEUE_TIMEOUT"), minimum=1, maximum=3600, core=True),
    Setting("queue_in_backlog", bool, False, "As DRUM's sync workers: a worker holds no more connections than model "
            "threads and closes each after its answer, so requests wait for a thread in the kernel's listen backlog, "
            "shared by the workers: a worker's death then loses only the calls it runs, but probes wait behind the "
            "model and the queue's depth and timeout no longer apply (README: Supervision).",
            _both("DRUM_QUEUE_IN_BACKLOG"), core=True),
    Setting("max_upload_size", int, 100 * MIB, "Largest request body in bytes; a larger one gets 413 (even chunked or mislabelled).",
            *_fastapi_alias("DRUM_MAX_UPLOAD_SIZE"), minimum=1, maximum=1 << 40, core=True),
    Setting("rate_limit_enabled", bool, False, "Rate limit model requests per client address (429 beyond it); probes and scrapes never count.",
            _both("DRUM_RATE_LIMIT_ENABLED"), core=True),
    Setting("rate_limit_rpm", int, 600, "Rate limit: requests per minute per client (token bucket refill).",
            _both("DRUM_RATE_LIMIT_RPM"), minimum=1, maximum=1_000_000, core=True),
    Setting("rate_limit_burst", int, 20, "Rate limit: requests a client may send at once (bucket size).",
            _both("DRUM_RATE_LIMIT_BURST"), minimum=1, maximum=100_000, core=True),
    Setting("rate_limit_proxy", bool, True, "Rate limit: /directAccess/ and /nim/ (forwarded upstream) count as model requests.",
            _both("DRUM_RATE_LIMIT_PROXY"), core=True),
    Setting("trusted_proxies", str, "", "Proxies (CIDR list) whose X-Forwarded-For names the client; empty: the peer is the client.",
            _both("DRUM_TRUSTED_PROXIES"), core=True, accepts="addresses or CIDR blocks separated by commas"),
    Setting("rate_limit_redis_url", str, None, "Rate limit state in this Redis, shared by every worker and replica; "
            "unset: per worker. Read by each worker itself (it may hold a password).",
            _both("DRUM_RATE_LIMIT_REDIS_URL"), secret=True, accepts="redis://[:password@]host:port/db"),
    Setting("rate_limit_fail_open", bool, True, "Redis unreachable: true lets requests through (with a WARNING), false answers 503.",
            _both("DRUM_RATE_LIMIT_FAIL_OPEN"), core=True),
    Setting("keep_alive", int, None, "Seconds an idle keep-alive connection stays open (gunicorn 2, uvicorn 5 by default).",
            *_renamed("DRUM_GUNICORN_KEEP_ALIVE"), gunicorn="keepalive", uvicorn="timeout_keep_alive", minimum=1, maximum=3600),
    Setting("max_requests", int, 0, "Recycle a worker after this many requests (0: never).",
            *_renamed("DRUM_GUNICORN_MAX_REQUESTS"), gunicorn="max_requests", uvicorn="limit_max_requests", minimum=0, maximum=10000,
            zero_is_off=True, uvicorn_has_none=True),
    Setting("max_requests_jitter", int, 0, "Add 0..N to max_requests per worker so workers do not recycle together.",
            *_renamed("DRUM_GUNICORN_MAX_REQUESTS_JITTER"), gunicorn="max_requests_jitter", uvicorn="limit_max_requests_jitter",
            minimum=0, maximum=10000, uvicorn_has_none=True),
    Setting("graceful_timeout", int, 299, "Seconds in-flight requests get to finish after SIGTERM.",
            *_renamed("DRUM_GUNICORN_GRACEFUL_TIMEOUT"), gunicorn="graceful_timeout", uvicorn="timeout_graceful_shutdown", minimum=1, maximum=3600),
    Setting("log_level", str, "info", "Server log level.",
            *_renamed("DRUM_GUNICORN_LOG_LEVEL"), gunicorn="loglevel", uvicorn="log_level", choices=LOG_LEVELS),
    Setting("worker_class", str, "gevent", "gunicorn worker class.",
            {Stack.FLASK: "DRUM_GUNICORN_WORKER_CLASS"}, gunicorn="worker_class", choices=("gevent", "sync")),
    Setting("worker_connections", int, 10000, "gunicorn: open connections per worker, idle keep-alive ones included "
            "(gevent greenlets; gthread threads for busy ones); beyond it new connections wait.",
            {Stack.FLASK: "DRUM_WORKER_CONNECTIONS"}, gunicorn="worker_connections", minimum=1, maximum=10000),
    Setting("loop", str, "uvloop", "uvicorn event loop (uvloop avoids asyncio's 40 ms multi-worker stall).",
            {Stack.FASTAPI: "DRUM_UVICORN_LOOP"}, uvicorn="loop", choices=("uvloop", "asyncio", "auto")),
    Setting("limit_concurrency", int, None, "uvicorn: connections beyond this get 503 at once.",
            {Stack.FASTAPI: "DRUM_UVICORN_LIMIT_CONCURRENCY"}, uvicorn="limit_concurrency", minimum=1, maximum=100000),
    Setting("limit_request_line", int, 4094, "Longest request line in bytes (method, target, version); longer: 414 "
            "(0: no limit).", _both("DRUM_LIMIT_REQUEST_LINE"), gunicorn="limit_request_line", uvicorn="limit_request_line",
            minimum=0, maximum=8190, uvicorn_has_none=True),
    Setting("limit_request_fields", int, 100, "Most request headers; more: 431 (0: no limit).",
            _both("DRUM_LIMIT_REQUEST_FIELDS"), gunicorn="limit_request_fields", uvicorn="limit_request_fields",
            minimum=0, maximum=32768, uvicorn_has_none=True),
    Setting("limit_request_field_size", int, 8190, "Longest request header line in bytes; longer: 431 (0: no limit).",
            _both("DRUM_LIMIT_REQUEST_FIELD_SIZE"), gunicorn="limit_request_field_size", uvicorn="limit_request_field_size",
            minimum=0, maximum=1 << 20, uvicorn_has_none=True),
    Setting("url_prefix", str, "", "Serve every route under this prefix.", _both("URL_PREFIX"), core=True),
    Setting("stream_batch_rows", int, 10_000, "Rows of a /predictionsStream/ CSV scored (and answered) at a time.",
            _both("DRUM_STREAM_BATCH_ROWS"), minimum=1, maximum=10_000_000, core=True),
    Setting("direct_access_url", str, "", "The OpenAI-compatible server (NIM, vLLM) that /directAccess/<path> and "
            "/nim/<path> forward to, e.g. http://127.0.0.1:8000; empty: they answer 400, as DRUM does for a Python model.",
            _both("DRUM_DIRECT_ACCESS_URL"), core=True, accepts="an http:// or https:// URL, or empty"),
    Setting("record_requests", str, "", "Record sampled requests to this JSONL file (rotated) for `drum-compat replay`; empty: off.",
            _both("DRUM_RECORD_REQUESTS"), core=True, accepts="a file path, or empty"),
    Setting("record_sample_percent", int, 100, "Percent of the answered requests that are recorded.",
            _both("DRUM_RECORD_SAMPLE_PERCENT"), minimum=1, maximum=100, core=True),
    Setting("record_redact_headers", str, "X-DataRobot-Api-Token,X-Api-Key", "Headers recorded as <redacted>, besides "
            "Authorization, Proxy-Authorization and Cookie (always).", _both("DRUM_RECORD_REDACT_HEADERS"), core=True, accepts="header names separated by commas"),
    Setting("record_redact_query", str, "token,key,secret,password,sig", "Query parameters recorded as <redacted>: those "
            "whose name contains one of these words (any case).", _both("DRUM_RECORD_REDACT_QUERY"), core=True,
            accepts="words separated by commas"),
    Setting("record_max_body", int, MIB, "Bytes of body recorded per request; a larger body is recorded without its bytes.",
            _both("DRUM_RECORD_MAX_BODY"), minimum=0, maximum=1 << 30, core=True),
    Setting("record_max_bytes", int, 100 * MIB, "Size of the recording file at which it is rotated.",
            _both("DRUM_RECORD_MAX_BYTES"), minimum=MIB, maximum=1 << 40, core=True),
    Setting("record_backups", int, 5, "Rotated recording files kept (FILE.1 ... FILE.N); older ones are removed.",
            _both("DRUM_RECORD_BACKUPS"), minimum=1, maximum=1000, core=True),
    Setting("cors_origins", str, "", "CORS: origins allowed to call the API from a browser, separated by commas "
            "(`*` for any; credentials are never allowed); empty: no CORS headers.", _both("DRUM_CORS_ORIGINS"),
            accepts="origins like https://app.example.com, or *", core=True),
    Setting("tls_certfile", str, None, "TLS: the server certificate (PEM, chain included); turns HTTPS on.",
            _both("DRUM_SSL_CERTFILE"), gunicorn="certfile", uvicorn="ssl_certfile", accepts=PEM_FILE),
    Setting("tls_keyfile", str, None, "TLS: the private key (PEM), if not in the certificate file.",
            _both("DRUM_SSL_KEYFILE"), gunicorn="keyfile", uvicorn="ssl_keyfile", accepts=PEM_FILE),
    Setting("tls_keyfile_password", str, None, "TLS: the password of an encrypted private key; each server process reads it "
            "itself, so it is never shown, logged or put on a command line.",
            _both("DRUM_SSL_KEYFILE_PASSWORD"), secret=True, accepts="any string"),
    Setting("tls_ca_certs", str, None, "TLS: CA certificates (PEM) that client certificates are checked against.",
            _both("DRUM_SSL_CA_CERTS"), gunicorn="ca_certs", uvicorn="ssl_ca_certs", accepts=PEM_FILE),
    Setting("tls_cert_reqs", int, 0, "TLS: client certificates: 0 not asked, 1 checked if sent, 2 required.",
            _both("DRUM_SSL_CERT_REQS"), gunicorn="cert_reqs", uvicorn="ssl_cert_reqs", minimum=0, maximum=2),
    Setting("tls_ciphers", str, None, "TLS: OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's).",
            _both("DRUM_SSL_CIPHERS"), gunicorn="ciphers", uvicorn="ssl_ciphers", accepts="an OpenSSL cipher string"),
)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}
SECRET_SHOWN_AS = "(set, not shown)"


class SettingError(ValueError):
    """A value that cannot be parsed: startup stops with this message."""


@dataclass
class Resolved:
    value: Any
    source: str  # "default", "env NAME", "runtime parameter NAME", "... (deprecated, use NAME)"


@dataclass
class Resolution:
    stack: Stack
    values: dict[str, Resolved]
    warnings: list[str]

    def value(self, key: str) -> Any:
        return self.values[key].value


def _raw(name: str, environ: Mapping[str, str]) -> tuple[Any, str] | None:
    """(raw value, where it came from): the runtime parameter wins over the plain env var."""
    if RuntimeParameters.has(name, environ):
        try:
            return RuntimeParameters.get(name, environ), f"runtime parameter {PREFIX}{name}"
        except RuntimeParameterException as exc:
            raise SettingError(f"{PREFIX}{name}: {exc}") from None
    if environ.get(name, "") != "":
        return environ[name], f"env {name}"
    return None


def _parse(setting: Setting, name: str, raw: Any) -> Any:
    if setting.kind is bool:
        if isinstance(raw, bool):
            return raw
        try:
            return parse_bool(name, str(raw))
        except ValueError as exc:
            raise SettingError(str(exc)) from None
    if setting.kind is int:
        try:
            # DRUM converts with int(): a float payload truncates, a non-integer string is an error
            return int(raw) if not isinstance(raw, str) else int(raw.strip())
        except (TypeError, ValueError):
            raise SettingError(f"{name}={raw!r} is not an integer; accepted: {setting.accepted()}") from None
    value = str(raw).strip()
    return value.lower() if setting.choices else value


def _in_range(setting: Setting, value: Any) -> bool:
    if setting.choices:
        return value in setting.choices
    if setting.minimum is not None:
        return setting.minimum <= value <= setting.maximum
    return True


@dataclass(frozen=True)
class Found:
    """Where a setting's value comes from: the name that was read, its raw value and source, and the
    other readable names that were set too (and lose)."""

    name: str
    raw: Any
    source: str
    losers: tuple[str, ...] = ()


def _find(setting: Setting, stack: Stack, environ: Mapping[str, str]) -> Found | None:
    """The first readable name that is set: the stack's own, then its deprecated names, then the env fallback."""
    name = setting.names.get(stack)
    if name is None:
        return None
    present = [(candidate, found) for candidate in (name, *setting.deprecated.get(stack, ()))
               if (found := _raw(candidate, environ)) is not None]
    if present:
        (winner, (raw, source)), losers = present[0], tuple(candidate for candidate, _ in present[1:])
        return Found(winner, raw, source, losers)
    if setting.env_fallback and environ.get(setting.env_fallback, "") != "":
        return Found(setting.env_fallback, environ[setting.env_fallback], f"env {setting.env_fallback}")
    return None


def _checked(setting: Setting, stack: Stack, found: Found) -> tuple[Resolved, list[str]]:
    """The parsed value if it is accepted, else the default; with what the operator must be told."""
    name = setting.names[stack]
    messages = [f"{loser} is deprecated and was ignored: {name} is set and wins." for loser in found.losers]
    is_old = found.name in setting.deprecated.get(stack, ())
    if is_old:
        messages.append(f"{found.name} is deprecated with the {stack} stack; use {name} instead (applied this time).")
    value = _parse(setting, found.name, found.raw)
    if _in_range(setting, value):
        return Resolved(value, found.source + (f" (deprecated, use {name})" if is_old else "")), messages
    if setting.invalid_stops_startup:
        raise SettingError(f"{found.name}={found.raw!r} is not accepted; valid values: {', '.join(setting.choices)}")
    messages.append(f"{found.name}={found.raw!r} is outside the accepted range ({setting.accepted()}); "
                    f"keeping the default {setting.default!r}.")
    return Resolved(setting.default, "default"), messages


def _resolve(setting: Setting, stack: Stack, environ: Mapping[str, str]) -> tuple[Resolved, list[str]]:
    """One setting's effective value for one stack, and what the operator should be warned about."""
    found = _find(setting, stack, environ)
    resolved, messages = _checked(setting, stack, found) if found else (Resolved(setting.default, "default"), [])
    readable = {setting.names.get(stack), *setting.deprecated.get(stack, ())}
    for other_name in sorted(set(setting.names.values()) - readable):
        if _raw(other_name, environ) is not None:
            messages.append(f"{other_name} has no effect with the {stack} stack.")
    return resolved, messages


def resolve_settings(stack: Stack, environ: Mapping[str, str]) -> Resolution:
    """Effective values for one stack, with every warning the operator should read; the caller reports them,
    once (the server's startup log, or `drum-compat config`'s listing)."""
    found_warnings: list[str] = []
    values: dict[str, Resolved] = {}
    for setting in SETTINGS:
        values[setting.key], messages = _resolve(setting, stack, environ)
        found_warnings.extend(messages)
    return Resolution(stack, values, list(dict.fromkeys(found_warnings)))


def resolve_server_type(environ: Mapping[str, str]) -> str:
    """DRUM_SERVER_TYPE, read before the stack is known (its name is the same on both)."""
    return _resolve(SERVER_TYPE, SERVER_TYPES[SERVER_TYPE.default].stack, environ)[0].value


def read_secret(key: str, stack: Stack, environ: Mapping[str, str]) -> str | None:
    """A secret setting, read inside the process that uses it from the operator's own variable, so
    it never travels on a command line or in the options the launcher hands on."""
    return _resolve(SETTINGS_BY_KEY[key], stack, environ)[0].value


def server_kwargs(resolution: Resolution, server: str) -> dict[str, Any]:
    """{gunicorn or uvicorn setting name: value} for every setting that feeds that server."""
    kwargs = {}
    for setting in SETTINGS:
        target = getattr(setting, server, None)
        value = resolution.values[setting.key].value
        if setting.zero_is_off and value == 0:
            continue
        if target is not None and not setting.secret and setting.names.get(resolution.stack) is not None and value is not None:
            kwargs[target] = value
    return kwargs


def uvicorn_settings_applied_by_us() -> frozenset[str]:
    """The names in uvicorn's server settings that are not uvicorn's: drum-compat applies them on that stack."""
    return frozenset(setting.uvicorn for setting in SETTINGS if setting.uvicorn_has_none)


def core_settings(resolution: Resolution) -> dict[str, Any]:
    """{key: value} of the settings drum-compat applies itself in each worker (secrets excluded)."""
    return {setting.key: resolution.value(setting.key) for setting in SETTINGS if setting.core}


def settings_markdown() -> str:
    """The settings table of migration_guide.md (a test keeps the guide equal to this)."""
    lines = [
        "| Setting | With gunicorn / flask | With fastapi / uvicorn | Default | Accepted | Feeds |",
        "|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        fastapi = setting.names.get(Stack.FASTAPI, "no effect")
        old = setting.deprecated.get(Stack.FASTAPI, ())
        if old:
            fastapi += f" (deprecated: {', '.join(old)})"
        if setting.env_fallback:
            fastapi += f", env {setting.env_fallback}"
        feeds = ", ".join([*(["drum-compat"] if setting.core else []),
                           *(f"{server} `{getattr(setting, server)}`" for server in ("gunicorn", "uvicorn")
                             if getattr(setting, server) and not (server == "uvicorn" and setting.uvicorn_has_none)),
                           *(["drum-compat on uvicorn"] if setting.uvicorn_has_none else [])])
        unset = "not set" if setting.kind is str else "server default"
        default = unset if setting.default is None else f"`{setting.default!r}`"
        lines.append(
            f"| {setting.help} | {setting.names.get(Stack.FLASK, 'no effect')}{', env ' + setting.env_fallback if setting.env_fallback else ''} "
            f"| {fastapi} | {default} | {setting.accepted()} | {feeds or 'drum-compat'} |"
        )
    return "\n".join(lines) + "\n"


def setting_value(core: Mapping[str, Any], key: str) -> Any:
    """A resolved core setting; a missing key keeps the table's default."""
    return core.get(key, SETTINGS_BY_KEY[key].default)
