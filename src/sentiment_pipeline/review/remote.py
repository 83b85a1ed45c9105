"""A DVC remote checked before ``dvc push`` / ``dvc pull`` (``make push``, ``make pull``, CI).

DVC itself reports a refused credential as ``ERROR: unexpected error - Forbidden: An error
occurred (403) when calling the HeadObject operation`` followed by a support banner, and an
unreachable endpoint once per file it tried. :func:`check_remote` asks the remote one question
through DVC's own filesystem for it (so the same config, ``.dvc/config`` plus
``.dvc/config.local``, and the same plugin) and turns the answer into one line naming the
remote, its URL and endpoint, and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sentiment_pipeline.core.errors import PipelineError

OBJECT_STORES = {"s3", "gs", "gcs", "azure", "az", "oss"}  # URLs of the form <scheme>://<bucket>/<path>


class RemoteError(PipelineError):
    """The remote cannot be used as configured; the message is the one line to show."""


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    url: str
    endpoint: str | None

    def where(self) -> str:
        return f"remote '{self.name}' ({self.url}" + (f" at {self.endpoint}" if self.endpoint else "") + ")"


def _chain(exc: BaseException) -> str:
    """The innermost message of an exception chain: the client library's (botocore's "An error
    occurred (403) when calling the HeadObject operation: Forbidden"), not a wrapper's."""
    message = type(exc).__name__
    seen: BaseException | None = exc
    while seen is not None:
        if str(seen).strip():
            message = str(seen).strip().splitlines()[0]
        seen = seen.__cause__ or seen.__context__
    return message


def _names(exc: BaseException) -> set[str]:
    names: set[str] = set()
    seen: BaseException | None = exc
    while seen is not None:
        names |= {cls.__name__ for cls in type(seen).__mro__}
        seen = seen.__cause__ or seen.__context__
    return names


def check_remote(root: Path = Path("."), name: str | None = None) -> RemoteInfo:
    """Whether the DVC remote ``name`` (default: the project's default remote) answers with the
    configured credentials; raises :class:`RemoteError` with one line otherwise."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise RemoteError(f"{root}: not a DVC project ({exc})") from None
    with repo:
        remotes = repo.config.get("remote", {})
        chosen = name or repo.config.get("core", {}).get("remote")
        if not chosen:
            raise RemoteError("no DVC remote is configured: add one with `dvc remote add -d storage s3://<bucket>/<path>` "
                              "(docs/sharing.md)")
        if chosen not in remotes:
            raise RemoteError(f"no DVC remote named '{chosen}' (configured: {', '.join(sorted(remotes)) or 'none'})")
        settings = remotes[chosen]
        info = RemoteInfo(chosen, settings.get("url", "?"), settings.get("endpointurl"))
        try:
            odb = repo.cloud.get_remote_odb(chosen)
        except DvcException as exc:  # e.g. the plugin for the scheme is not installed
            raise RemoteError(f"{info.where()}: {exc}") from None
        fs, path = odb.fs, odb.path
        try:
            fs.exists(path)
            scheme = urlsplit(info.url).scheme
            if scheme in OBJECT_STORES:
                bucket = path.split("/", 1)[0]
                if not fs.exists(bucket):
                    raise RemoteError(f"{info.where()}: the bucket '{bucket}' does not exist; create it first")
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes the one line below
            names = _names(exc)
            detail = _chain(exc)
            connection = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                          "ConnectionRefusedError", "ConnectionError", "ServerTimeoutError"}
            if connection & names:  # first: aiohttp's connection errors are ClientErrors too
                hint = f"cannot connect ({detail}): is the endpoint right and the server up?"
            elif "NoCredentialsError" in names:
                hint = (f"no credentials: set them with `dvc remote modify --local {chosen} access_key_id ...` and "
                        f"`secret_access_key ...` (kept out of git), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            elif "PermissionError" in names or "ClientError" in names:
                hint = (f"the credentials were refused ({detail}): check `dvc remote modify --local {chosen} "
                        f"access_key_id`/`secret_access_key` and the key's access to the bucket")
            else:
                hint = f"{type(exc).__name__}: {detail}"
            raise RemoteError(f"{info.where()}: {hint}") from None
    return info
