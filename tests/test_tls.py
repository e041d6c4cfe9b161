"""TLS from DRUM_SSL_* on real gunicorn and uvicorn servers with trustme certificates: TLS 1.2 and
1.3 accepted, TLS 1.1 refused, client certificates, the key password kept off every command line,
and startup stopped with a clear message when a file or the password is wrong."""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import httpx
import psutil
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from drum_compat.compat.running import DRUM_COMPAT, run_to_exit
from tests.processes import serve
from drum_compat.runtime.tls import MINIMUM_TLS_VERSION, TlsConfigError, TlsFiles, gunicorn_ssl_context, server_ssl_context
from tests.models import write_model

PASSWORD = "s3cr3t-Pa55"
TLS_STACKS = ["gunicorn", "fastapi"]


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def write_server_pki(directory, password: str, ca: trustme.CA | None = None) -> tuple[trustme.CA, Path, Path]:
    """A CA, and a certificate chain for 127.0.0.1 with its key encrypted under `password`."""
    ca = ca or trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password.encode())
    ))
    return ca, cert_path, key_path


@pytest.fixture
def pki(ca, tmp_path):
    _, cert, key = write_server_pki(tmp_path, PASSWORD, ca)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return {"cert": cert, "key": key, "ca": tmp_path / "ca.pem"}


def tls_env(pki, **extra) -> dict:
    return {
        "DRUM_SSL_CERTFILE": str(pki["cert"]),
        "DRUM_SSL_KEYFILE": str(pki["key"]),
        "MLOPS_RUNTIME_PARAM_DRUM_SSL_KEYFILE_PASSWORD": json.dumps({"type": "string", "payload": PASSWORD}),
        **extra,
    }


def client_context(ca, version: ssl.TLSVersion | None = None, client_cert=None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: that is the point
            context.minimum_version = context.maximum_version = version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer the old protocol
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The protocol version agreed, after one real request on the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = tls.recv(4096)
            if not answer:  # TLS 1.3: a rejected client certificate ends the connection after the handshake
                raise ConnectionAbortedError("closed without an answer")
            assert answer.startswith(b"HTTP/1.1 200"), answer
            return tls.version()


def test_this_machine_can_speak_tls_1_1_so_the_refusal_below_means_something(ca, pki):
    """A context without our minimum accepts the TLS 1.1 client used below."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.load_cert_chain(pki["cert"], pki["key"], password=PASSWORD)
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = client_context(ca, ssl.TLSVersion.TLSv1_1)
        with socket.create_connection(listener.getsockname()) as raw:
            accepted, _ = listener.accept()
            result = {}
            thread = threading.Thread(target=lambda: result.update(version=server.wrap_socket(accepted, server_side=True).version()))
            thread.start()
            with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.1"
            thread.join(10)
    assert result["version"] == "TLSv1.1"


def test_our_context_sets_the_minimum_explicitly(pki):
    context = server_ssl_context(TlsFiles(str(pki["cert"]), str(pki["key"])), PASSWORD)
    assert context.minimum_version == MINIMUM_TLS_VERSION == ssl.TLSVersion.TLSv1_2


def test_a_worker_builds_its_context_and_reads_the_password_once(pki, monkeypatch):
    # gunicorn's gthread worker asks its ssl_context hook on every connection
    conf = SimpleNamespace(certfile=str(pki["cert"]), keyfile=str(pki["key"]), ca_certs=None, cert_reqs=ssl.CERT_NONE, ciphers=None)
    for name, value in tls_env(pki).items():
        monkeypatch.setenv(name, value)
    first = gunicorn_ssl_context(conf)
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_DRUM_SSL_KEYFILE_PASSWORD", json.dumps({"type": "string", "payload": "wrong"}))
    assert gunicorn_ssl_context(conf) is first  # a wrong password now would fail, were it read again
    with pytest.raises(TlsConfigError):
        server_ssl_context(TlsFiles(str(pki["cert"]), str(pki["key"])), "wrong")


@pytest.mark.servers
@pytest.mark.parametrize("server_type", TLS_STACKS)
def test_tls_versions_and_the_password_stays_off_command_lines(ca, pki, tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "regression")
    # SECLEVEL=0 lets OpenSSL itself accept TLS 1.1: only the context's minimum version refuses it
    env = tls_env(pki, DRUM_SSL_CIPHERS="DEFAULT:@SECLEVEL=0", CUSTOM_MODEL_WORKERS="2")
    with serve(code_dir, server_type, "--target-type", "regression", env=env, tls=client_context(ca)) as server:
        assert handshake(server.port, client_context(ca, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
        assert handshake(server.port, client_context(ca, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            handshake(server.port, client_context(ca, ssl.TLSVersion.TLSv1_1))
        answer = httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"},
                            verify=client_context(ca))
        assert answer.json() == {"predictions": [2.0]}
        master = psutil.Process(server.process.pid)
        processes = [master, *master.children(recursive=True)]
        assert len(processes) >= 3  # the master and two workers
        for process in processes:
            assert PASSWORD not in " ".join(process.cmdline())
            handed_on = process.environ().get("DRUM_COMPAT_SERVER_OPTIONS", "")
            assert handed_on and PASSWORD not in handed_on


@pytest.mark.servers
@pytest.mark.parametrize("server_type", TLS_STACKS)
def test_client_certificates_required(ca, pki, tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "regression")
    env = tls_env(pki, DRUM_SSL_CA_CERTS=str(pki["ca"]), DRUM_SSL_CERT_REQS="2")
    client_cert = ca.issue_cert("client@example.com")
    with serve(code_dir, server_type, "--target-type", "regression", env=env,
                       tls=client_context(ca, client_cert=client_cert)) as server:
        assert handshake(server.port, client_context(ca, client_cert=client_cert)).startswith("TLSv1.")
        stranger = trustme.CA().issue_cert("mallory@example.com")
        for context in (client_context(ca), client_context(ca, client_cert=stranger)):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                handshake(server.port, context)


@pytest.mark.servers
@pytest.mark.parametrize("server_type", TLS_STACKS)
@pytest.mark.parametrize("change,message", [
    ({"DRUM_SSL_CERTFILE": "/nonexistent/server.pem"}, "DRUM_SSL_CERTFILE='/nonexistent/server.pem' does not exist."),
    ({"MLOPS_RUNTIME_PARAM_DRUM_SSL_KEYFILE_PASSWORD": json.dumps({"type": "string", "payload": "wrong"})},
     "an encrypted key needs DRUM_SSL_KEYFILE_PASSWORD"),
    ({"DRUM_SSL_CERT_REQS": "2"}, "DRUM_SSL_CERT_REQS=2 asks for client certificates but DRUM_SSL_CA_CERTS is not set."),
    ({"DRUM_SSL_CIPHERS": "NO-SUCH-CIPHER"}, "DRUM_SSL_CIPHERS='NO-SUCH-CIPHER' selects no cipher OpenSSL knows."),
])
def test_bad_tls_settings_stop_startup(pki, tmp_path, server_type, change, message):
    code_dir, _ = write_model(tmp_path, "regression")
    result = run_to_exit(code_dir, server_type, "--target-type", "regression", env=tls_env(pki, **change))
    assert result.returncode == 2
    assert message in result.stderr
    assert "wrong" not in result.stderr and PASSWORD not in result.stderr


def test_keyfile_without_certfile_and_tls_on_the_debugging_server_are_refused(pki, tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    env = tls_env(pki)
    del env["DRUM_SSL_CERTFILE"]
    result = run_to_exit(code_dir, "gunicorn", "--target-type", "regression", env=env)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, "drum-compat: error: DRUM_SSL_KEYFILE is set but DRUM_SSL_CERTFILE is not: set both to serve HTTPS.")
    result = run_to_exit(code_dir, "flask", "--target-type", "regression", env=tls_env(pki))
    assert result.returncode == 2 and "serves plain HTTP only; use gunicorn or fastapi for TLS." in result.stderr


def test_config_never_shows_the_password(pki):
    result = subprocess.run([DRUM_COMPAT, "config", "--server-type", "fastapi", "--json"], env=tls_env(pki),
                            capture_output=True, text=True, check=True)
    rows = {row["setting"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["DRUM_SSL_KEYFILE_PASSWORD"] == {
        "setting": "DRUM_SSL_KEYFILE_PASSWORD", "value": "(set, not shown)",
        "source": "runtime parameter MLOPS_RUNTIME_PARAM_DRUM_SSL_KEYFILE_PASSWORD"}
    assert rows["DRUM_SSL_CERTFILE"]["value"] == str(pki["cert"])
    assert PASSWORD not in result.stdout + result.stderr


def test_context_errors_name_the_setting(pki, tmp_path):
    unreadable = tmp_path / "ca-dir"
    unreadable.mkdir()
    with pytest.raises(TlsConfigError, match="DRUM_SSL_CA_CERTS=.* is not a readable file"):
        server_ssl_context(TlsFiles(str(pki["cert"]), str(pki["key"]), ca_certs=str(unreadable)), PASSWORD)
    with pytest.raises(TlsConfigError, match="an encrypted key needs DRUM_SSL_KEYFILE_PASSWORD"):
        server_ssl_context(TlsFiles(str(pki["cert"]), str(pki["key"])), None)
