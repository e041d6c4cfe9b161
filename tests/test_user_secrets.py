"""A CustomTask's user secrets (--user-secrets-mount-path, --user-secrets-prefix) against DRUM 1.18.1: the task gets
the same typed secrets (files and prefixed variables, a file winning), their values never reach the output or the log,
and a hook model is left alone."""
from __future__ import annotations

import json
import os
import re

import httpx
import pytest

from drum_compat.shared.model.user_secrets import UnsupportedSecretError, secret_of, sensitive_values
from drum_compat.compat.running import answers
from tests.processes import program, serve
from tests.test_against_drum import DRUM, REFERENCE_MISSING

needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
TASK = '''
import logging
import pandas as pd
from datarobot_drum.custom_task_interfaces import RegressionEstimatorInterface

class CustomTask(RegressionEstimatorInterface):
    @classmethod
    def load(cls, artifact_directory):
        return cls()

    def predict(self, X, **kwargs):
        secrets = self.secrets
        print(f"SEEN {sorted(secrets.items())!r} password={secrets['DB'].password}", flush=True)
        logging.getLogger("task").warning("LOGGED token=%s partial=%s", secrets["API"].api_token,
                                          secrets["S3"].is_partial_secret())
        right = secrets["DB"].password == "hunter2-pass" and secrets["EXTRA"].api_token == "from-the-file"
        return pd.DataFrame({"Predictions": [float(len(secrets)) + right] * len(X)})
'''


def secrets_env(tmp_path) -> dict:
    mount = tmp_path / "secrets"
    mount.mkdir()
    (mount / "DB").write_text(json.dumps({"credential_type": "basic", "username": "scott", "password": "hunter2-pass",
                                          "unknown_field": "dropped"}))
    (mount / "EXTRA").write_text(json.dumps({"credential_type": "api_token", "api_token": "from-the-file"}))
    return {"USER_SECRETS_MOUNT_PATH": str(mount), "USER_SECRETS_PREFIX": "MYSECRET",
            "MYSECRET_API": json.dumps({"credential_type": "API_TOKEN", "api_token": "tok-123456"}),
            "MYSECRET_EXTRA": json.dumps({"credential_type": "api_token", "api_token": "from-the-variable"}),
            "MYSECRET_S3": json.dumps({"credential_type": "s3", "aws_access_key_id": "AKIA-EXAMPLE", "config_id": "c-1"})}


def seen(output: str) -> list[str]:
    """The task's own lines, without the logger's request id."""
    return sorted(re.sub(r" \{'request_id': '[^']*'\}$", "", line[line.index(word):])
                  for line in output.splitlines() for word in ("SEEN", "LOGGED") if word in line)


@needs_drum
@pytest.mark.servers
def test_a_custom_task_gets_drums_secrets_and_never_shows_them(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "custom.py").write_text(TASK)
    env = secrets_env(tmp_path)
    command = [str(DRUM), "server", "--code-dir", str(tmp_path / "task"), "--target-type", "regression", "--address"]
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}
    with program(lambda port: [*command, f"127.0.0.1:{port}"], answers("/"), env={**environ, **env}) as drum:
        expected = httpx.post(f"http://127.0.0.1:{drum.port}/predict/", content=b"x\n1\n",
                              headers={"Content-Type": "text/csv"}).json()
        drums_lines = seen(drum.stop())
    assert expected == {"predictions": [5.0]} and len(drums_lines) == 2
    for stack in ("gunicorn", "fastapi"):
        with serve(tmp_path / "task", stack, "--target-type", "regression", env=env) as server:
            answer = httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"})
            assert answer.json() == expected, stack
            output = server.stop()
        # DRUM scrubs only the loggers there are when the task loads: one made later (here "task") shows the secret
        assert drums_lines[0] == "LOGGED token=tok-123456 partial=True"
        assert seen(output)[1] == drums_lines[1]
        assert seen(output) == [
            "LOGGED token=***** partial=True",
            "SEEN [('API', ApiTokenSecret(api_token='*****')), ('DB', BasicSecret(username='*****', password='*****', "
            "snowflake_account_name=None)), ('EXTRA', ApiTokenSecret(api_token='*****')), ('S3', S3Secret("
            "aws_access_key_id='*****', aws_secret_access_key=None, aws_session_token=None, config_id='*****'))] "
            "password=*****"], stack
        assert not any(value in output for value in ("hunter2-pass", "tok-123456", "AKIA-EXAMPLE", "from-the-file"))


@pytest.mark.servers
def test_a_hook_model_is_left_alone_and_a_bad_secret_stops_a_task(tmp_path):
    from drum_compat.compat.running import run_to_exit
    from tests.models import write_model

    model, _ = write_model(tmp_path, "regression")
    with serve(model, "fastapi", "--target-type", "regression", env={"USER_SECRETS_PREFIX": "X", "X_A": "not json"}) as server:
        assert httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"}).status_code == 200
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "custom.py").write_text(TASK)
    stopped = run_to_exit(tmp_path / "task", "gunicorn", "--target-type", "regression",
                          env={"USER_SECRETS_PREFIX": "X", "X_A": json.dumps({"credential_type": "telepathy"})})
    assert stopped.returncode != 0
    assert "Failed to load custom task class. Exception: UnsupportedSecretError(\"Unsupported secret type: 'telepathy'\")" in (
        stopped.stdout + stopped.stderr)


def test_nested_values_are_hidden_longest_first():
    secret = secret_of({"credential_type": "gcp", "gcp_key": {"type": "service_account", "private_key": "k-1",
                                                               "client_email": "k-1@x"}})
    assert sensitive_values([secret]) == ["service_account", "k-1@x", "k-1"]
    with pytest.raises(UnsupportedSecretError):
        secret_of({"credential_type": "x"})
