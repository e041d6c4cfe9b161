"""The settings table: DRUM's parse and range rules, deprecated names per stack, `drum-compat config`,
and the guide's table kept equal to the declarations."""
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from drum_compat.runtime.settings import SETTINGS, SettingError, resolve_settings, server_kwargs, settings_markdown

ROOT = Path(__file__).resolve().parent.parent
DRUM_COMPAT = str(Path(sys.executable).with_name("drum-compat"))


def rp(payload, kind="numeric"):
    return json.dumps({"type": kind, "payload": payload})


def test_defaults_feed_each_server():
    gunicorn = server_kwargs(resolve_settings("flask", {}), "gunicorn")
    limits = {"limit_request_line": 4094, "limit_request_fields": 100, "limit_request_field_size": 8190}  # gunicorn's own
    assert gunicorn == {"workers": 1, "backlog": 2048, "timeout": 120, "max_requests_jitter": 0, "graceful_timeout": 299,
                        "loglevel": "info", "worker_class": "gevent", "worker_connections": 10000, "cert_reqs": 0, **limits}
    uvicorn = server_kwargs(resolve_settings("fastapi", {}), "uvicorn")
    assert uvicorn == {"workers": 1, "backlog": 2048, "limit_max_requests_jitter": 0, "timeout_graceful_shutdown": 299,
                       "log_level": "info", "loop": "uvloop", "ssl_cert_reqs": 0, "timeout_worker_healthcheck": 120, **limits}


def test_runtime_parameter_wins_over_env_and_int_truncates():
    resolution = resolve_settings("flask", {"MLOPS_RUNTIME_PARAM_DRUM_WEBSERVER_BACKLOG": rp(64.9), "DRUM_WEBSERVER_BACKLOG": "10"})
    assert (resolution.value("backlog"), resolution.values["backlog"].source) == (64, "runtime parameter MLOPS_RUNTIME_PARAM_DRUM_WEBSERVER_BACKLOG")


@pytest.mark.parametrize("environ,message", [
    ({"DRUM_WEBSERVER_BACKLOG": "lots"}, "DRUM_WEBSERVER_BACKLOG='lots' is not an integer; accepted: 1..10000"),
    ({"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": rp("2.5")}, "CUSTOM_MODEL_WORKERS='2.5' is not an integer; accepted: 1..199"),
    ({"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "{oops"}, "Invalid runtime parameter json payload"),
])
def test_unparsable_values_stop_startup(environ, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_settings("flask", environ)


def test_out_of_range_keeps_default_and_does_not_fall_back():
    resolution = resolve_settings("flask", {"CUSTOM_MODEL_WORKERS": "500", "MAX_WORKERS": "3", "DRUM_GUNICORN_WORKER_CLASS": "eventlet"})
    assert resolution.value("workers") == 1 and resolution.value("worker_class") == "gevent"
    assert "CUSTOM_MODEL_WORKERS='500' is outside the accepted range (1..199); keeping the default 1." in resolution.warnings
    assert any(message.startswith("DRUM_GUNICORN_WORKER_CLASS='eventlet' is outside the accepted range (one of gevent, sync)")
               for message in resolution.warnings)
    assert resolve_settings("flask", {"MAX_WORKERS": "3"}).value("workers") == 3


def test_gunicorn_names_are_deprecated_under_fastapi():
    environ = {"DRUM_GUNICORN_MAX_REQUESTS": "50", "DRUM_GUNICORN_KEEP_ALIVE": "10", "DRUM_UVICORN_KEEP_ALIVE": "7"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one channel: the log (and the Resolution), never a Python warning too
        resolution = resolve_settings("fastapi", environ)
    messages = sorted(resolution.warnings)
    assert messages == [
        "DRUM_GUNICORN_KEEP_ALIVE is deprecated and was ignored: DRUM_UVICORN_KEEP_ALIVE is set and wins.",
        "DRUM_GUNICORN_MAX_REQUESTS is deprecated with the fastapi stack; use DRUM_UVICORN_MAX_REQUESTS instead (applied this time).",
    ]
    assert resolution.value("max_requests") == 50 and resolution.value("keep_alive") == 7
    assert server_kwargs(resolution, "uvicorn")["limit_max_requests"] == 50


def test_names_of_the_other_stack_have_no_effect():
    fastapi = resolve_settings("fastapi", {"DRUM_WORKER_CONNECTIONS": "5", "DRUM_GUNICORN_WORKER_CLASS": "sync"})
    flask = resolve_settings("flask", {"DRUM_UVICORN_LOOP": "asyncio"})
    assert fastapi.warnings == ["DRUM_GUNICORN_WORKER_CLASS has no effect with the fastapi stack.",
                                "DRUM_WORKER_CONNECTIONS has no effect with the fastapi stack."]
    assert flask.warnings == ["DRUM_UVICORN_LOOP has no effect with the flask stack."]


def test_config_shows_each_warning_once():
    """One channel: `config` lists the warnings and logs none of them."""
    result = subprocess.run([DRUM_COMPAT, "config", "--server-type", "fastapi"], capture_output=True, text=True,
                            env={"DRUM_GUNICORN_MAX_REQUESTS": "5", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    output = result.stdout + result.stderr
    assert output.count("DRUM_GUNICORN_MAX_REQUESTS is deprecated with the fastapi stack") == 1


def test_zero_max_requests_is_off_for_uvicorn():
    assert "limit_max_requests" not in server_kwargs(resolve_settings("fastapi", {"DRUM_UVICORN_MAX_REQUESTS": "0"}), "uvicorn")


# the runtime parameters of a gunicorn-tuned deployment
GUNICORN_TUNED = {
    **{f"MLOPS_RUNTIME_PARAM_{name}": rp(value) for name, value in {
        "DRUM_GUNICORN_MAX_REQUESTS": 1000, "DRUM_GUNICORN_MAX_REQUESTS_JITTER": 50, "DRUM_GUNICORN_GRACEFUL_TIMEOUT": 30,
        "DRUM_GUNICORN_KEEP_ALIVE": 15, "CUSTOM_MODEL_WORKERS": 2}.items()},
    "MLOPS_RUNTIME_PARAM_DRUM_GUNICORN_LOG_LEVEL": rp("WARNING", "string"),
    "MLOPS_RUNTIME_PARAM_DRUM_GUNICORN_WORKER_CLASS": rp("gevent", "string"),
}


def test_operator_story_one_warning_per_old_name():
    """The gunicorn-tuned parameters of a deployment bring up an equivalent uvicorn one."""
    result = subprocess.run([DRUM_COMPAT, "config", "--server-type", "fastapi", "--json"], env=GUNICORN_TUNED,
                            capture_output=True, text=True, check=True)
    shown = json.loads(result.stdout)
    values = {row["setting"]: row["value"] for row in shown["settings"]}
    assert (values["DRUM_UVICORN_MAX_REQUESTS"], values["DRUM_UVICORN_MAX_REQUESTS_JITTER"], values["DRUM_UVICORN_GRACEFUL_TIMEOUT"],
            values["DRUM_UVICORN_KEEP_ALIVE"], values["DRUM_UVICORN_LOG_LEVEL"], values["CUSTOM_MODEL_WORKERS"]) == (1000, 50, 30, 15, "warning", 2)
    deprecated = [warning for warning in shown["warnings"] if "deprecated" in warning]
    assert len(deprecated) == 5 and len({warning.split()[0] for warning in deprecated}) == 5
    assert "DRUM_GUNICORN_WORKER_CLASS has no effect with the fastapi stack." in shown["warnings"]
    assert len(shown["warnings"]) == 6 and result.stderr.count("WARNING") == 0  # listed, not logged as well


def test_guide_table_is_generated_from_the_declarations():
    guide = (ROOT / "migration_guide.md").read_text()
    assert settings_markdown() in guide
    assert len(settings_markdown().splitlines()) == len(SETTINGS) + 2


def test_guide_config_example_runs():
    from tests.test_docs import GUIDE, blocks_after

    command = blocks_after(GUIDE, "guide-example: config")[0].strip().replace("drum-compat", DRUM_COMPAT)
    output = subprocess.run(command, shell=True, capture_output=True, text=True, check=True, env={})
    assert re.search(r"DRUM_UVICORN_KEEP_ALIVE +10 +env DRUM_GUNICORN_KEEP_ALIVE \(deprecated", output.stdout)


@pytest.mark.parametrize("argv,environ,server_type,expected", [
    ([], {}, "gunicorn", 1),
    (["--max-workers", "3"], {}, "flask", 3),
    (["--max-workers", "3"], {"CUSTOM_MODEL_WORKERS": "2"}, "flask", 2),
    ([], {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": rp(4)}, "fastapi", 4),
    ([], {"MAX_WORKERS": "5"}, "gunicorn", 5),
])
def test_worker_count_is_decided_once(tmp_path, argv, environ, server_type, expected):
    """CUSTOM_MODEL_WORKERS beats --max-workers beats MAX_WORKERS, for every server type."""
    from drum_compat.compat.checks import server_options
    from drum_compat.compat.cli import build_parser

    environ = {**environ, "DRUM_SERVER_TYPE": server_type}
    args = build_parser(environ).parse_args(["server", "--code-dir", str(tmp_path), "--address", "127.0.0.1:1", *argv])
    options = server_options(args, environ)
    assert options.workers == expected
    assert (options.server_settings or {}).get("workers", expected) == expected


def test_server_type_is_a_setting_whose_bad_value_stops_startup():
    from drum_compat.runtime.settings import resolve_server_type

    environ = {"DRUM_SERVER_TYPE": "gunicorn", "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": rp("FastAPI", "string")}
    assert resolve_server_type(environ) == "fastapi" and resolve_server_type({}) == "gunicorn"
    assert resolve_settings("fastapi", environ).values["server_type"].source == "runtime parameter MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"
    with pytest.raises(SettingError, match="DRUM_SERVER_TYPE='tornado' is not accepted; valid values: gunicorn, flask, werkzeug"):
        resolve_server_type({"DRUM_SERVER_TYPE": "tornado"})


def test_server_help_lists_every_setting_from_the_table():
    result = subprocess.run([DRUM_COMPAT, "server", "--help"], capture_output=True, text=True, check=True, env={"COLUMNS": "400"})
    for setting in SETTINGS:
        for name in setting.names.values():
            assert f"{name}" in result.stdout, name
        assert setting.help in result.stdout


@pytest.mark.parametrize("worker_class, threads", [("gevent", None), ("sync", 2)])
def test_the_queue_in_the_backlog_holds_one_gunicorn_connection_per_model_thread(worker_class, threads, caplog):
    from drum_compat.runtime.options import ServerOptions
    from drum_compat.servers.gunicorn_master import gunicorn_settings

    def settings(**server) -> dict:
        options = ServerOptions(code_dir=".", address="127.0.0.1:8080", server_settings={"worker_class": worker_class, **server},
                                core_settings={"executor_workers": 2, "queue_in_backlog": True}, listen_fd=3)
        return gunicorn_settings(options)

    assert settings()["worker_connections"] == 2
    assert settings().get("threads") == threads  # gthread: a thread per connection is all it needs
    assert not caplog.records
    assert settings(worker_connections=50)["worker_connections"] == 2
    assert "DRUM_WORKER_CONNECTIONS=50 is replaced by 2" in caplog.text  # set by the deployment: never ignored silently
