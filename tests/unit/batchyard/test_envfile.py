"""The env file exports exactly the four variables a user needs, quoted for sh."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from batchyard import envfile
from batchyard.credentials import Credentials

CREDENTIALS = Credentials(account_name="batchyard", account_key="a2V5/+==", node_secret="s3cret")


def test_values_are_exactly_the_four_names() -> None:
    # When the values are built / Then they are exactly the four documented names
    values = envfile.env_values("http://127.0.0.1:8080", CREDENTIALS, 10000)
    assert list(values) == ["BATCH_ACCOUNT_URL", "BATCH_ACCOUNT_NAME", "BATCH_ACCOUNT_KEY",
                            "AZURE_STORAGE_CONNECTION_STRING"]  # fmt: skip


def test_node_secret_is_not_exported() -> None:
    # When the env file is rendered / Then the agents' secret is not in it
    assert "s3cret" not in envfile.render(envfile.env_values("http://127.0.0.1:8080", CREDENTIALS, 10000))


def test_connection_string_points_at_azurite_on_the_blob_port() -> None:
    # When the connection string is built for port 10123
    text = envfile.connection_string(10123)
    # Then it names the dev account, its key and a path-style endpoint on that port
    assert text == (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + envfile.DEV_ACCOUNT_KEY + ";"
        "BlobEndpoint=http://127.0.0.1:10123/devstoreaccount1;"
    )


def test_shell_reads_back_the_same_values(tmp_path: Path) -> None:
    # Given an env file written for a stack
    values = envfile.env_values("http://127.0.0.1:8080", CREDENTIALS, 10000)
    path = envfile.write(tmp_path, values)
    # When sh sources it and prints the variables
    script = f'. "{path}"; for n in {" ".join(values)}; do eval "printf \'%s\\n\' \\"\\$$n\\""; done'
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    # Then the shell sees exactly the values written
    assert output.splitlines() == list(values.values())


def test_parse_reads_back_render() -> None:
    # Given rendered values / Then parsing gives them back
    values = envfile.env_values("http://127.0.0.1:8080", CREDENTIALS, 10000)
    assert envfile.parse(envfile.render(values)) == values


def test_env_file_is_owner_only(tmp_path: Path) -> None:
    # Given an env file (it holds the account key) / Then only its owner can read it
    path = envfile.write(tmp_path, envfile.env_values("http://127.0.0.1:8080", CREDENTIALS, 10000))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
