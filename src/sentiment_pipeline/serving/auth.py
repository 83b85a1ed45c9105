"""Access control: API keys with scopes, checked per request, and a token bucket per key.

**Keys.** ``sp_<id>_<secret>``: a 12-hex-digit id (readable in logs, the ``key_id`` of every
prediction and feedback row the key writes) and 256 random bits (``secrets.token_urlsafe(32)``).
``sentiment-pipeline keys create`` shows a key once; the key store (``serve.keys_file``, JSON,
written atomically with mode 0600) keeps only its SHA-256, its name, scopes and times.

**Scopes.** ``predict`` (``POST /v1/predict``), ``feedback`` (``POST /v1/feedback``: labels that
``export-feedback`` turns into training data), ``admin`` (``/dashboard``, ``/metrics``). They are
independent: an admin key (e.g. Prometheus') cannot predict or write labels unless it also has
those scopes. ``GET /v1/model`` takes any valid key; ``/healthz`` and ``/readyz`` none.

**Per request** the key is looked up by its id in a dict and its SHA-256 compared with
``hmac.compare_digest``: about 4 us (12 us with FastAPI resolving the security dependencies),
whatever the number of keys. A fast hash is right here because the secret has 256 random bits:
nobody can search that space, so a slow password hash
(bcrypt, scrypt, argon2: built to make guessing *low-entropy passwords* expensive) would only
add milliseconds to every request and cap the service's throughput, without making a stored
digest any harder to reverse.

**Changes without a restart.** Each worker keeps the store in memory and looks at the file
(``os.stat``: inode, size, modification time) at most once every ``RELOAD_SECONDS``; when it
changed, it is read again. A revoked key is refused by every worker within a second of
``keys revoke`` (plus however long the platform takes to update a mounted Secret).

**When there is no key.** With ``serve.auth: keys`` and no active key in the store a worker on a
loopback host serves openly (``serve`` says so in a warning); the first key created switches it
to requiring keys, for good (revoking every key afterwards does not open it again). On any other
host ``serve`` refuses to start (``check_auth``) and a worker refuses every request.
``serve.auth: none`` never asks for a key.

**Rate limits.** A token bucket per key and per worker (``serve.rate_limit_per_second``,
``serve.rate_limit_burst``, or the key's own values from ``keys create``): past it, 429 with
``Retry-After``. With N workers a key gets up to N times the rate (each worker counts alone).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.serving.schemas import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

Scope = Literal["predict", "feedback", "admin"]
SCOPES: tuple[str, ...] = ("predict", "feedback", "admin")
KEY_PREFIX = "sp_"
ID_HEX_DIGITS = 12  # 48 random bits: ids never collide in practice (and create checks)
SECRET_BYTES = 32   # 256 random bits
RELOAD_SECONDS = 1.0  # how often a worker looks at the key store file for changes
# The dashboard's login cookie: ``__Host-``: only ever set with Secure, for the whole site, by
# this host (no Domain); HttpOnly (no script reads it), SameSite=Strict (no other site's page
# makes the browser send it), 8 hours.
DASHBOARD_COOKIE = "__Host-sentiment-key"
DASHBOARD_COOKIE_SECONDS = 8 * 3600

_ID_PATTERN = rf"^[0-9a-f]{{{ID_HEX_DIGITS}}}$"


# ------------------------------------------------------------------ the key store (a JSON file)
class KeyRecord(BaseModel):
    """One key as the store keeps it: never the secret, only its SHA-256."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: tuple[Scope, ...]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    created_at: datetime
    revoked_at: datetime | None = None
    # this key's own limits; null: serve.rate_limit_per_second / serve.rate_limit_burst
    rate_limit_per_second: Annotated[float, Field(gt=0)] | None = None
    rate_limit_burst: Annotated[int, Field(ge=1)] | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class _StoreFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    keys: list[KeyRecord] = Field(default_factory=list)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(id, key) of a fresh key: ``sp_<12 hex digits>_<43 URL-safe characters>``."""
    key_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_id_of(key: str) -> str | None:
    """The id part of a key as a client sends it (None when it is not shaped like one)."""
    if len(key) > 15 and key.startswith(KEY_PREFIX) and key[15] == "_":
        return key[3:15]
    return None


def read_store(path: Path) -> list[KeyRecord]:
    """The keys in ``path``; none when the file does not exist. A file that is not a key store
    is a ``ConfigError`` naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: the API key store cannot be read: {exc.strerror or exc}") from None
    try:
        return _StoreFile.model_validate_json(raw).keys
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(p) for p in item["loc"])
        raise ConfigError(f"{path}: not an API key store ({where or 'file'}: {item['msg']})") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (``keys create`` run twice at once must not lose a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_store(path: Path, keys: list[KeyRecord]) -> None:
    """Replace ``path`` atomically (readers see the old file or the new one, never half of one);
    a new file is 0600, an existing one keeps its mode (e.g. group-readable for a container)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    text = _StoreFile(keys=keys).model_dump_json(indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def create_key(path: Path, name: str, scopes: Iterable[str], rate_limit_per_second: float | None = None,
               rate_limit_burst: int | None = None) -> tuple[KeyRecord, str]:
    """Add a key to the store at ``path`` (created if absent); returns its record and the key,
    which is stored nowhere."""
    wanted = tuple(dict.fromkeys(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(wanted) or 'none'}")
    with _locked(path):
        keys = read_store(path)
        taken = {k.id for k in keys}
        key_id, key = new_key()
        while key_id in taken:  # pragma: no cover - 1 in 2**48 per existing key
            key_id, key = new_key()
        record = KeyRecord(id=key_id, name=name, scopes=wanted, sha256=key_digest(key),
                           created_at=datetime.now(UTC), rate_limit_per_second=rate_limit_per_second,
                           rate_limit_burst=rate_limit_burst)
        _write_store(path, [*keys, record])
    return record, key


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    """Mark a key revoked (it stays listed: the log's rows still name it)."""
    with _locked(path):
        keys = read_store(path)
        found = [k for k in keys if k.id == key_id]
        if not found:
            raise ConfigError(f"{path}: no key with id {key_id!r} (see `sentiment-pipeline keys list`)")
        if not found[0].active:
            return found[0]
        revoked = found[0].model_copy(update={"revoked_at": datetime.now(UTC)})
        _write_store(path, [revoked if k.id == key_id else k for k in keys])
    return revoked


def keys_file(settings: ServeConfig, root: Path) -> Path:
    """``serve.keys_file``, a relative path taken from the project root."""
    path = Path(settings.keys_file)
    return path if path.is_absolute() else root / path


def key_ids_with_scopes(path: Path, scopes: Iterable[str]) -> list[str]:
    """The ids of the keys (revoked or not) that hold any of ``scopes``."""
    wanted = set(scopes)
    return [k.id for k in read_store(path) if wanted & set(k.scopes)]


# ------------------------------------------------------------------ per worker: cached store, buckets
@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the key's id (None when access control is off) and its scopes."""

    key_id: str | None
    scopes: frozenset[str]


OPEN = Principal(None, frozenset(SCOPES))


@dataclass(frozen=True, slots=True)
class _Key:
    """A key as the hot path uses it: the digest as bytes, the principal built once."""

    digest: bytes
    active: bool
    principal: Principal
    rate: float | None
    burst: int


class KeyCache:
    """The key store of one worker, in memory, read again when its file changes."""

    def __init__(self, path: Path, default_rate: float | None, default_burst: int) -> None:
        self.path = path
        self.default_rate, self.default_burst = default_rate, default_burst
        self.keys: dict[str, _Key] = {}
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.refresh(force=True)

    @property
    def has_active(self) -> bool:
        return any(k.active for k in self.keys.values())

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def refresh(self, force: bool = False) -> None:
        """Read the file again if it changed since the last look (at most every RELOAD_SECONDS)."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + RELOAD_SECONDS
        signature = self._stat()
        if signature == self._signature and not force:
            return
        try:
            records = read_store(self.path)
        except ConfigError as exc:
            if force:
                raise
            log.error("%s; still using the keys read before", exc)  # keys create writes atomically: rare
            self._signature = signature
            return
        if signature is None and self._signature is not None:
            log.warning("%s: the API key store is gone; every key is refused", self.path)
        self.keys = {r.id: _Key(bytes.fromhex(r.sha256), r.active, Principal(r.id, frozenset(r.scopes)),
                                r.rate_limit_per_second or self.default_rate, r.rate_limit_burst or self.default_burst)
                     for r in records}
        self._signature = signature
        if not force:
            log.info("%s: API keys read again (%d active)", self.path, sum(k.active for k in self.keys.values()))

    def lookup(self, key: str) -> _Key | None:
        """The record of ``key`` if it is one of the store's (revoked or not), else None."""
        key_id = key_id_of(key)
        found = self.keys.get(key_id) if key_id is not None else None
        if found is None or not hmac.compare_digest(hashlib.sha256(key.encode()).digest(), found.digest):
            return None
        return found


class TokenBuckets:
    """A token bucket per key: ``rate`` tokens a second up to ``burst``; a request takes one.

    Hand-written (a dozen lines) rather than a library: ``limits`` (and slowapi, built on it) has
    fixed- and sliding-window strategies but no token bucket; ``pyrate-limiter`` keeps a log of
    request times per key (sliding window) and took 13 us a call here; ``token-bucket``'s
    ``consume`` answers only yes or no, not how long until the next token (Retry-After), and
    locks. This one is a dict lookup and some arithmetic on the event loop's thread (no lock
    needed), one entry per key of the store (bounded)."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}  # key id -> [tokens, monotonic time of that count]

    def take(self, key_id: str, rate: float, burst: int, now: float | None = None) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = [float(burst), now]
        tokens = min(float(burst), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate


class AccessDenied(Exception):
    """401, 403 or 429, answered as the API's ``ErrorResponse``."""

    def __init__(self, status: int, error: str, field: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.message, self.headers = status, error, field, message, headers

    def response(self) -> JSONResponse:
        body = ErrorResponse(error=self.error, details=[ErrorDetail(field=self.field, message=self.message)])
        return JSONResponse(status_code=self.status, content=body.model_dump(), headers=self.headers)


_CHALLENGE = 'Bearer realm="sentiment-pipeline"'


def _missing() -> AccessDenied:
    return AccessDenied(401, "missing API key", "authorization",
                        "send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                        {"WWW-Authenticate": _CHALLENGE})


def _invalid(revoked: bool) -> AccessDenied:
    return AccessDenied(401, "revoked API key" if revoked else "invalid API key", "authorization",
                        "this key was revoked" if revoked else "not a key of this service",
                        {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'})


def is_loopback(host: str) -> bool:
    """Only this machine can connect to ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname or a wildcard: assume other machines reach it


@dataclass
class AccessControl:
    """What one worker checks per request (``app.state.access``)."""

    mode: Literal["keys", "none"]
    keys: KeyCache | None
    # keys mode with no active key at start, on a loopback host: open until a key appears
    open_until_a_key: bool = False
    buckets: TokenBuckets = field(default_factory=TokenBuckets)

    @classmethod
    def from_settings(cls, settings: ServeConfig, root: Path) -> AccessControl:
        if settings.auth == "none":
            return cls("none", None)
        cache = KeyCache(keys_file(settings, root), settings.rate_limit_per_second, settings.rate_limit_burst)
        return cls("keys", cache, open_until_a_key=not cache.has_active and is_loopback(settings.host))

    @property
    def enforcing(self) -> bool:
        return self.mode == "keys" and not self.open_until_a_key

    def check(self, key: str | None, scopes: list[str]) -> Principal:
        """The principal of ``key`` if it may use ``scopes``; else raises ``AccessDenied``."""
        if self.keys is None:
            return OPEN
        self.keys.refresh()
        if self.open_until_a_key:
            if not self.keys.has_active:
                return OPEN
            self.open_until_a_key = False
            log.warning("%s now holds an API key: every request needs one from now on", self.keys.path)
        if not key:
            raise _missing()
        found = self.keys.lookup(key)
        if found is None or not found.active:
            raise _invalid(revoked=found is not None)
        principal = found.principal
        for scope in scopes:
            if scope not in principal.scopes:
                raise AccessDenied(403, "insufficient scope", "scope",
                                   f"key {principal.key_id} lacks the '{scope}' scope",
                                   {"WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'})
        if found.rate is not None:
            wait = self.buckets.take(principal.key_id or "", found.rate, found.burst)
            if wait:
                raise AccessDenied(429, "rate limit exceeded", "authorization",
                                   f"key {principal.key_id}: {found.rate:g} requests/s, bursts of {found.burst}",
                                   {"Retry-After": str(max(1, math.ceil(wait)))})
        return principal


# ------------------------------------------------------------------ FastAPI: schemes and dependencies
BEARER = HTTPBearer(auto_error=False, bearerFormat="sp_<id>_<secret>",
                    description="An API key from `sentiment-pipeline keys create`: `Authorization: Bearer <key>`.")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="The same API key in an `X-API-Key` header.")
KEY_COOKIE = APIKeyCookie(name=DASHBOARD_COOKIE, auto_error=False,
                          description="Set by the dashboard's login form (`POST /dashboard/login`).")


async def presented_key(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
                        api_key: Annotated[str | None, Depends(API_KEY_HEADER)]) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` first, else ``X-API-Key``."""
    return bearer.credentials if bearer is not None else api_key


async def presented_key_or_cookie(key: Annotated[str | None, Depends(presented_key)],
                                  cookie: Annotated[str | None, Depends(KEY_COOKIE)]) -> str | None:
    """As ``presented_key``, or the dashboard's login cookie (the page's own requests)."""
    return key if key is not None else cookie


# The two below take the schemes themselves rather than ``presented_key``: FastAPI resolves
# each dependency of a request for ~15 µs of Python, whatever it does (py-spy under wrk load:
# dependency solving was 12% of the event loop's time with a chain of six).
async def authenticate(request: Request, security_scopes: SecurityScopes,
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
                       api_key: Annotated[str | None, Depends(API_KEY_HEADER)]) -> Principal:
    """``Security(authenticate, scopes=[...])``: the principal of a key holding the scopes
    (``Authorization: Bearer`` first, else ``X-API-Key``)."""
    key = bearer.credentials if bearer is not None else api_key
    return request.app.state.access.check(key, security_scopes.scopes)


async def authenticate_browser(request: Request, security_scopes: SecurityScopes,
                               bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
                               api_key: Annotated[str | None, Depends(API_KEY_HEADER)],
                               cookie: Annotated[str | None, Depends(KEY_COOKIE)]) -> Principal:
    """``authenticate``, also taking the dashboard's login cookie (the page's own requests)."""
    key = bearer.credentials if bearer is not None else api_key if api_key is not None else cookie
    return request.app.state.access.check(key, security_scopes.scopes)


_AUTH_ERROR = {"model": ErrorResponse}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_AUTH_ERROR, "description": "No API key, or one that is unknown or revoked (`WWW-Authenticate: Bearer`)"},
    403: {**_AUTH_ERROR, "description": "The key lacks the scope this operation needs"},
    429: {**_AUTH_ERROR, "description": "The key's rate limit is exhausted; retry after `Retry-After` seconds",
          "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}},
}


async def _access_denied(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AccessDenied)
    return exc.response()


def install(app: FastAPI, settings: ServeConfig, root: Path) -> None:
    """Access control for ``app``: ``app.state.access`` and the handler of its 401/403/429. With
    ``serve.auth: none`` the OpenAPI schema declares no security (none is asked for)."""
    app.state.access = AccessControl.from_settings(settings, root)
    app.add_exception_handler(AccessDenied, _access_denied)
    access = app.state.access
    log.info("access control: %s", "none (serve.auth: none)" if access.keys is None else
             f"API keys from {access.keys.path}" + (" (none yet: open on loopback until one is created)"
                                                    if access.open_until_a_key else ""))
    if settings.auth == "none":
        generate = app.openapi

        def openapi_without_security() -> dict[str, Any]:
            schema = generate()
            schema.get("components", {}).pop("securitySchemes", None)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict):
                        operation.pop("security", None)
                        for status in ("401", "403", "429"):
                            operation.get("responses", {}).pop(status, None)
            return schema

        app.openapi = openapi_without_security  # type: ignore[method-assign]


# ------------------------------------------------------------------ serve: before uvicorn starts
def check_auth(settings: ServeConfig, project: Path) -> None:
    """Refuse to serve beyond loopback without keys (``ConfigError``: one line), or warn."""
    where = f"serve.host={settings.host}"
    if settings.auth == "none":
        if not is_loopback(settings.host):
            log.warning("%s with serve.auth: none: anyone who can reach port %d can predict, write feedback "
                        "labels and read the dashboard and /metrics", where, settings.port)
        return
    path = keys_file(settings, project)
    if any(k.active for k in read_store(path)):
        return
    create = "sentiment-pipeline keys create --name NAME --scope predict"
    if is_loopback(settings.host):
        log.warning("no active API key in %s: serving without authentication on loopback (%s); "
                    "`%s` to require keys", path, settings.host, create)
        return
    raise ConfigError(f"{where} is reachable from other machines and {path} holds no active API key: "
                      f"create one (`{create}`) or set serve.auth: none (SENTIMENT_SERVE_AUTH=none) "
                      "to serve without authentication")
