"""A DVC remote on a real S3-compatible server (moto's standalone server, started here on
loopback with IAM authentication on): push from one clone with the run-cache, pull into a fresh
clone whose `dvc repro` runs nothing and then re-runs only what a params change touches; a
refused credential, an unreachable endpoint and a missing bucket are one line each
(`sentiment-pipeline check-remote`, what `make push` and `make pull` run first)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .pipeline_repo import Repo

pytestmark = pytest.mark.e2e

BUCKET = "team-dvc"
MOTO_SERVER = shutil.which("moto_server", path=str(Path(sys.executable).parent))


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3-compatible server in its own process. Authentication starts after the first
    three requests, which create an IAM user with an S3 policy and its access key; the bucket is
    then created with that key, as a team would."""
    import boto3

    assert MOTO_SERVER, "moto_server comes with the dev dependencies (moto[server] in uv.lock)"
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out,
                                  env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        anonymous = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                         aws_secret_access_key="setup")
        iam = boto3.client("iam", **anonymous)
        iam.create_user(UserName="ci")
        iam.put_user_policy(UserName="ci", PolicyName="dvc", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        s3.create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=10)


def _clean_env(repo: Repo) -> None:
    """No AWS credentials from the machine running the tests: only what the clone configures."""
    for name in [n for n in repo.env if n.startswith("AWS_")]:
        del repo.env[name]
    empty = repo.root.parent / f".{repo.root.name}-aws"
    empty.write_text("")
    repo.env["AWS_SHARED_CREDENTIALS_FILE"] = repo.env["AWS_CONFIG_FILE"] = str(empty)


def _set_credentials(repo: Repo, server: S3Server, access_key_id: str | None = None) -> None:
    """Credentials the way docs/sharing.md says: `dvc remote modify --local` (.dvc/config.local,
    git-ignored by DVC), never the committed .dvc/config."""
    repo.dvc("remote", "modify", "--local", "storage", "access_key_id", access_key_id or server.access_key_id)
    repo.dvc("remote", "modify", "--local", "storage", "secret_access_key", server.secret_access_key)


def _check_remote(repo: Repo) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "check-remote"], cwd=repo.root,
                          env=repo.env, capture_output=True, text=True, timeout=120)


def _ran(output: str) -> set[str]:
    """The stages `dvc repro` ran (not skipped, not restored from the run-cache)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def team(served_project, s3_server, tmp_path_factory) -> tuple[Repo, Repo]:
    """Alice's clone, which ran the pipeline, committed dvc.lock and pushed with the run-cache;
    Bob's fresh clone of her repo."""
    root = tmp_path_factory.mktemp("team")
    alice = Repo(root / "alice")
    shutil.copytree(served_project, alice.root, symlinks=True)
    _clean_env(alice)
    alice.dvc("remote", "add", "-d", "storage", f"s3://{BUCKET}/cache")
    alice.dvc("remote", "modify", "storage", "endpointurl", s3_server.endpoint)
    _set_credentials(alice, s3_server)
    alice.git("add", "-A")
    alice.git("commit", "-qm", "pipeline run and the team's remote")
    assert "secret_access_key" not in alice.git("show", "HEAD:.dvc/config")
    alice.dvc("push", "--run-cache")

    bob = Repo(root / "bob")
    subprocess.run(["git", "clone", "-q", str(alice.root), str(bob.root)], check=True, env=alice.env)
    _clean_env(bob)
    return alice, bob


def test_a_fresh_clone_pulls_and_reruns_nothing_then_reruns_only_what_a_change_touches(team, s3_server):
    _, bob = team
    _set_credentials(bob, s3_server)
    assert "credentials accepted" in _check_remote(bob).stdout
    bob.dvc("pull", "--run-cache")
    assert (bob.root / "models/final").exists()
    output = bob.dvc("repro")
    assert _ran(output) == set(), output  # outputs and lock agree: nothing runs
    assert "Data and pipelines are up to date" in bob.dvc("status")

    # a params change: only the stages it touches run, the data stages come from the pull
    params = bob.params()
    params["train"]["families"]["logreg"]["C"] = [4.0]
    bob.write_params(params)
    ran = _ran(bob.dvc("repro"))
    assert any(stage.startswith("train") for stage in ran), ran
    assert not ran & {"download", "preprocess", "featurize", "baselines"}, ran


def test_a_refused_credential_an_unreachable_endpoint_and_a_missing_bucket_are_one_line(team, s3_server):
    _, bob = team
    _set_credentials(bob, s3_server, access_key_id="AKIAWRONGWRONGWRONG0")
    refused = _check_remote(bob)
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: remote 'storage' (s3://{BUCKET}/cache at {s3_server.endpoint}): "
                           "the credentials were refused") and "dvc remote modify --local storage" in line
    assert s3_server.secret_access_key not in line

    _set_credentials(bob, s3_server)
    bob.dvc("remote", "modify", "--local", "storage", "endpointurl", f"http://127.0.0.1:{_free_port()}")
    unreachable = _check_remote(bob)
    [line] = unreachable.stderr.strip().splitlines()
    assert unreachable.returncode == 1 and "cannot connect" in line and "is the endpoint right" in line

    bob.dvc("remote", "modify", "--local", "--unset", "storage", "endpointurl")
    bob.dvc("remote", "add", "--local", "-f", "elsewhere", "s3://no-such-bucket/cache")
    bob.dvc("remote", "modify", "--local", "elsewhere", "endpointurl", s3_server.endpoint)
    bob.dvc("remote", "modify", "--local", "elsewhere", "access_key_id", s3_server.access_key_id)
    bob.dvc("remote", "modify", "--local", "elsewhere", "secret_access_key", s3_server.secret_access_key)
    missing = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "check-remote", "--remote", "elsewhere"],
                             cwd=bob.root, env=bob.env, capture_output=True, text=True, timeout=120)
    [line] = missing.stderr.strip().splitlines()
    assert missing.returncode == 1 and "the bucket 'no-such-bucket' does not exist" in line
    assert "credentials accepted" in _check_remote(bob).stdout  # the default remote again fine


def test_check_remote_without_any_remote_says_how_to_add_one(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    result = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "check-remote"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: no DVC remote is configured: add one with "
                                     "`dvc remote add -d storage s3://<bucket>/<path>` (docs/sharing.md)")
