"""TLS for both servers from the DRUM_SSL_* settings: one SSLContext recipe (TLS 1.2 at least, set
explicitly) that gunicorn's `ssl_context` hook and uvicorn's `ssl_context_factory` both call."""
from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from typing import Any, Mapping

from drum_compat.runtime.settings import SETTINGS_BY_KEY, Resolution, read_secret
from drum_compat.shared.server_types import Stack

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2
PASSWORD_KEY = "tls_keyfile_password"
# the DRUM_SSL_* names, as the settings table declares them (the same on both stacks)
CERTFILE, KEYFILE, PASSWORD, CA_CERTS, CERT_REQS, CIPHERS = (
    SETTINGS_BY_KEY[key].names[Stack.FLASK]
    for key in ("tls_certfile", "tls_keyfile", PASSWORD_KEY, "tls_ca_certs", "tls_cert_reqs", "tls_ciphers")
)


class TlsConfigError(ValueError):
    """The DRUM_SSL_* settings cannot make a working TLS context: startup stops with this message."""


@dataclass(frozen=True)
class TlsFiles:
    certfile: str
    keyfile: str | None = None
    ca_certs: str | None = None
    cert_reqs: int = ssl.CERT_NONE
    ciphers: str | None = None

    @classmethod
    def from_resolution(cls, resolution: Resolution) -> "TlsFiles | None":
        """None when TLS is off (no certificate file)."""
        if resolution.value("tls_certfile") is None:
            if resolution.value("tls_keyfile") is not None:
                raise TlsConfigError(f"{KEYFILE} is set but {CERTFILE} is not: set both to serve HTTPS.")
            return None
        return cls(
            certfile=resolution.value("tls_certfile"),
            keyfile=resolution.value("tls_keyfile"),
            ca_certs=resolution.value("tls_ca_certs"),
            cert_reqs=resolution.value("tls_cert_reqs"),
            ciphers=resolution.value("tls_ciphers"),
        )


def _check_readable(name: str, path: str | None) -> None:
    if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        reason = "is not a readable file" if os.path.exists(path) else "does not exist"
        raise TlsConfigError(f"{name}={path!r} {reason}.")


def server_ssl_context(files: TlsFiles, password: str | None) -> ssl.SSLContext:
    """The server context; every failure is a TlsConfigError naming the setting at fault."""
    _check_readable(CERTFILE, files.certfile)
    _check_readable(KEYFILE, files.keyfile)
    _check_readable(CA_CERTS, files.ca_certs)
    if files.cert_reqs != ssl.CERT_NONE and files.ca_certs is None:
        raise TlsConfigError(f"{CERT_REQS}={files.cert_reqs} asks for client certificates but {CA_CERTS} is not set.")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS_VERSION  # explicit: never left to the OpenSSL build's policy
    try:
        context.load_cert_chain(files.certfile, files.keyfile, password=password or "")
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"{CERTFILE}/{KEYFILE} could not be loaded ({exc.reason or exc}): the key must match the "
            f"certificate, and an encrypted key needs {PASSWORD}."
        ) from None
    if files.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=files.ca_certs)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"{CA_CERTS}={files.ca_certs!r} holds no usable certificate ({exc.reason or exc}).") from None
    context.verify_mode = ssl.VerifyMode(files.cert_reqs)
    if files.ciphers:
        try:
            context.set_ciphers(files.ciphers)
        except ssl.SSLError:
            raise TlsConfigError(f"{CIPHERS}={files.ciphers!r} selects no cipher OpenSSL knows.") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


@functools.cache
def process_ssl_context(files: TlsFiles, stack: Stack) -> ssl.SSLContext:
    """One context per process, its password resolved once: gunicorn's sync (gthread) worker asks for it on
    every connection."""
    return server_ssl_context(files, read_secret(PASSWORD_KEY, stack, os.environ))


def gunicorn_ssl_context(conf: Any, default_ssl_context_factory: Any = None) -> ssl.SSLContext:
    """gunicorn's `ssl_context` hook."""
    return process_ssl_context(TlsFiles(conf.certfile, conf.keyfile, conf.ca_certs, conf.cert_reqs, conf.ciphers), Stack.FLASK)


def uvicorn_ssl_context(config: Any, default_ssl_context_factory: Any = None) -> ssl.SSLContext:
    """uvicorn's `ssl_context_factory` (module level, so it pickles into spawned workers)."""
    files = TlsFiles(config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs, config.ssl_cert_reqs, config.ssl_ciphers)
    return process_ssl_context(files, Stack.FASTAPI)


def check_tls(resolution: Resolution, environ: Mapping[str, str]) -> bool:
    """Whether TLS is on. The context is built once before the server starts, so a bad file or
    password stops startup with a clear message instead of failing every worker."""
    files = TlsFiles.from_resolution(resolution)
    if files is not None:
        server_ssl_context(files, read_secret(PASSWORD_KEY, resolution.stack, environ))
    return files is not None
