"""Settings of `redtrans serve`: one pydantic-settings model, every field documented.

Read from, lowest priority first: the field defaults, a YAML file (`--config`), environment variables
``REDTRANS_SERVE_<FIELD>`` (e.g. ``REDTRANS_SERVE_PORT=9000``; mappings and lists as JSON:
``REDTRANS_SERVE_API_KEYS='{"app": "<digest>"}'``), then command-line options. API keys may also come from
``$REDTRANS_API_KEYS`` (comma-separated ``name:digest`` or bare digests), added to `api_keys`.

```yaml
# serve.yaml
port: 8080
model: qwen2.5-coder-1.5b
api_keys: {mobile-app: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}
rate_limit_rps: 20
```
Unknown fields, wrong types and out-of-range values are a `ConfigError` naming where the value came from
(the file, the environment variable or the option) and the field.

The engine is described by the flat keys `engine`, `model`, `served_model`, `parallel` and `engine_options`
(kept from earlier versions); `ServeConfig.engine_spec()` turns them into the one `EngineSpec`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from redtrans.config import read_yaml_mapping
from redtrans.engines.spec import EngineSpec
from redtrans.errors import ConfigError
from redtrans.limits import MAX_SEGMENTS_PER_ITEM, MAX_TEXT_CHARS
from redtrans.paths import redtrans_home
from redtrans.serve.logging import redact
from redtrans.webguard import ClientAddress

API_KEYS_ENV = "REDTRANS_API_KEYS"
ENV_PREFIX = "REDTRANS_SERVE_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

ServeConfigError = ConfigError  # the name serve used before the error tree


def hash_key(key: str) -> str:
    """The sha256 hex digest under which an API key is stored (`printf %s KEY | sha256sum`)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def default_cache_url() -> str:
    return f"sqlite:///{redtrans_home() / 'serve-cache.sqlite'}"


# Values of the YAML file being loaded: a settings source below the environment (see `load_config`).
_FILE_VALUES: ContextVar[tuple[str, dict[str, Any]] | None] = ContextVar("redtrans_serve_file", default=None)


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        current = _FILE_VALUES.get()
        return dict(current[1]) if current else {}


class ServeConfig(BaseSettings):
    """How the translation service listens, which engine it drives, and how it protects itself."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        validate_default=True,
        case_sensitive=False,
    )

    # -- listening ------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the service beyond this machine (put TLS in front of it)."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port."""
    graceful_shutdown_s: float = Field(default=60.0, gt=0)
    """On SIGTERM/SIGINT: stop accepting, then wait up to this long for requests in flight to finish. Requests
    still waiting then get 503 `shutting_down` (JSON); the process exits within this bound plus a few seconds."""
    keep_alive_s: float = Field(default=75.0, gt=0)
    """Idle keep-alive connections are closed after this long. Keep it above the idle timeout of the proxy or
    client pool in front (nginx: 60 s), or they may send on a connection the server is closing."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A request's line and headers must arrive within this long of the connection opening (or of the first
    byte of a request on a kept-alive connection); else the connection gets 408 and is closed (slow loris)."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """A request body must arrive within this long of the headers (408 `body_timeout` otherwise)."""
    max_connections: int = Field(default=1000, ge=1)
    """Open HTTP connections at most; beyond it a new connection gets 503 `too_many_connections` and is closed."""
    max_connections_per_client: int = Field(default=100, ge=1)
    """Open HTTP connections of one client address at most (trusted proxies are not capped); beyond it that
    client's new connection gets 503 `too_many_client_connections`, so one client's idle connections cannot
    take the whole of `max_connections` from the others."""
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1", "[::1]"])
    """`Host:` header values served when no API keys are configured (a guard against DNS rebinding of an open
    service on loopback); others get 421 `host_not_allowed`. `*` allows any. Ignored when keys are on."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses (or CIDR networks) of proxies whose `X-Forwarded-For` names the client (for rate limits and
    logs); from anyone else the header is ignored. Empty = never trusted."""
    open_ops: bool = False
    """With API keys on, let `/metrics`, `/docs` and `/openapi.json` answer without a key (probes `/healthz`
    and `/readyz` are always open)."""

    # -- engine ---------------------------------------------------------------------------------------
    engine: str | None = None
    """llamacpp | openai | hf | standin; None = inferred from `model` (http(s)://…/v1 URLs select openai, a
    directory hf, else llamacpp)."""
    model: str | None = None
    """Registry name (default qwen2.5-coder-1.5b), a .gguf path, a model or adapter directory (as
    `redtrans sft` writes it), or comma-separated OpenAI-compatible endpoints (`http://a:8000/v1,http://b:8000/v1`):
    then the service is a gateway."""
    served_model: str | None = None
    """Model name sent to OpenAI-compatible endpoints (what `vllm serve` calls it); openai only."""
    parallel: int | None = Field(default=4, ge=1)
    """Requests the engine generates together: llama.cpp parallel slots, concurrent upstream requests (openai),
    batch size (hf). None = the engine's default."""
    engine_options: dict[str, Any] = Field(default_factory=dict)
    """Further fields of the engine's own config (LlamaCppConfig, OpenAIConfig, HFConfig), e.g. timeout_s."""
    profile: str = "rednote"
    """Platform markup profile of the translator: rednote, generic, or a YAML path."""
    mode: Literal["sns", "plain"] = "sns"
    """Translator mode: sns (the full pipeline) or plain (one plain prompt per post; a baseline)."""

    # -- load behaviour -------------------------------------------------------------------------------
    max_concurrency: int = Field(default=2, ge=1)
    """Engine batches in flight at once (worker tasks). Each batch fills the engine's parallel slots."""
    max_batch_items: int = Field(default=16, ge=1)
    """Most texts one batch sends to the translator; concurrent requests' texts are grouped into it."""
    batch_wait_ms: float = Field(default=0.0, ge=0)
    """How long a worker waits for more requests to fill an under-full batch (0 = take what is queued)."""
    max_queue: int = Field(default=64, ge=1)
    """Requests waiting for a worker. When full, new requests get 429 with Retry-After: memory stays
    bounded by max_queue + max_concurrency requests of at most max_body_bytes each."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a request (queueing + translation); past it the answer is 504. A request may ask
    for a shorter one with `deadline_ms`."""
    retry_after_s: int = Field(default=0, ge=0)
    """Retry-After sent with 429 for overload; 0 = estimated from the queue and recent batch times."""
    max_segments_per_item: int = Field(default=MAX_SEGMENTS_PER_ITEM, ge=1)
    """Most segments (lines with text to translate, as the translator splits a post) in one item; more gives
    413 `too_many_segments`. Each segment is at least one model call."""
    max_model_calls: int = Field(default=1000, ge=1)
    """Most model calls one request may cause (segments + markup terms of the texts not in the cache; a retry
    can add one per segment); more gives 413 `too_many_model_calls`."""

    # -- cache ----------------------------------------------------------------------------------------
    cache: str = Field(default_factory=default_cache_url)
    """Translation cache: sqlite:///path.sqlite (default under $REDTRANS_HOME), redis://host:6379/0
    (needs the `redis` package), or "none". Keyed by (normalised text, src, tgt, model, prompt version)."""
    cache_memory_items: int = Field(default=50_000, ge=0)
    """Entries held in the in-process LRU in front of the cache store (hits never touch disk or network)."""
    cache_max_entries: int = Field(default=1_000_000, ge=1)
    """SQLite: oldest entries beyond this are pruned. Redis: ignored (set a maxmemory policy instead)."""
    cache_ttl_s: float = Field(default=0.0, ge=0)
    """Entries older than this are not served (and expire in Redis); 0 = keep forever."""
    cache_timeout_s: float = Field(default=0.25, gt=0)
    """Longest wait for the cache store on a lookup (never past the request's deadline either); past it the
    lookup counts as a miss and the texts are translated."""

    # -- security -------------------------------------------------------------------------------------
    api_keys: dict[str, str] = Field(default_factory=dict)
    """name → sha256 hex digest of an API key. Clients send `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    Keys from $REDTRANS_API_KEYS (comma-separated `name:digest` or bare digests) are added. When no keys
    are configured at all, the service is open (fine on loopback; set keys before exposing it)."""
    rate_limit_rps: float = Field(default=0.0, ge=0)
    """Per-key rate limit: requests per second sustained (per client address when open); 0 = no limit."""
    rate_limit_burst: int = Field(default=0, ge=0)
    """Requests allowed at once after idling; 0 = max(1, 2 × rate_limit_rps). With the rate, a moving window
    (the `limits` library) of `rate_limit_burst` requests per ceil(burst / rps) seconds per caller."""
    rate_limit_storage: str = "memory"
    """Where the rate-limit windows live: `memory` (this process) or a Redis URL (`redis://host:6379/0`, needs
    the `redis` package) shared by every replica. When Redis does not answer within `rate_limit_timeout_s`,
    this process's own window decides (and `redtrans_rate_limit_fallbacks_total` counts it)."""
    rate_limit_timeout_s: float = Field(default=0.25, gt=0)
    """Longest wait for the shared rate-limit store on a request; past it the local window decides."""
    max_key_failures: int = Field(default=10, ge=1)
    """Wrong API keys one client address may send a minute; past it every request from that address gets 429
    `too_many_key_failures` (with Retry-After) until the oldest failure is a minute old."""
    max_body_bytes: int = Field(default=262_144, ge=1)
    """Largest request body; larger ones get 413 before they are read into memory."""
    max_items: int = Field(default=64, ge=1)
    """Most items in one request (422 above)."""
    max_text_chars: int = Field(default=MAX_TEXT_CHARS, ge=1)
    """Longest text of one item, in characters (422 above)."""

    # -- logging --------------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """debug | info | warning | error."""
    log_text: bool = False
    """Include the posts' text in request logs. Off by default: user content stays out of logs."""
    access_log: bool = True
    """Log one structured JSON line per request (method, path, status, latency, item counts, key name)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Options (init) over the environment over the YAML file over defaults.
        return init_settings, env_settings, _FileSource(settings_cls)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe_error(exc, values)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_keys")
    @classmethod
    def _digests_only(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if not _HEX64.match(digest.lower()):
                raise ValueError(
                    f"api_keys[{name!r}] must be the sha256 hex digest of the key (64 hex characters), "
                    "never the key itself: printf %s KEY | sha256sum"
                )
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _limit_storage(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "redis+unix://")):
            raise ValueError("must be `memory` or a Redis URL (redis://host:6379/0)")
        return value

    @field_validator("cache")
    @classmethod
    def _cache_url(cls, value: str) -> str:
        plain = value.strip().lower()
        if plain in {"", "none", "off", "false"} or plain.startswith(("sqlite:", "redis://", "rediss://", "unix://")):
            return value
        if "://" in plain:
            raise ValueError("unsupported cache URL: use sqlite:///path.sqlite, redis://host:6379/0 or none")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        ClientAddress(value)  # the parsing requests use: a ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _engine_fits(self) -> ServeConfig:
        try:
            self.engine_spec().resolved()
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return self

    def engine_spec(self) -> EngineSpec:
        """The one place the flat engine keys become an `EngineSpec`."""
        return EngineSpec(
            kind=self.engine,
            model=self.model,
            parallel=self.parallel,
            served_model=self.served_model,
            options=dict(self.engine_options),
        )

    def key_digests(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """digest → key name, from the config and $REDTRANS_API_KEYS."""
        keys = {digest.lower(): name for name, digest in self.api_keys.items()}
        raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
        for n, entry in enumerate(e.strip() for e in raw.split(",")):
            if not entry:
                continue
            name, _, digest = entry.rpartition(":")
            digest = digest.lower()
            if not _HEX64.match(digest):
                raise ConfigError(
                    f"${API_KEYS_ENV} entry {n + 1} is not `name:sha256-hex-digest` or a bare digest "
                    "(store keys hashed: printf %s KEY | sha256sum)"
                )
            keys[digest] = name or f"env-{n + 1}"
        return keys

    def replace(self, **overrides: Any) -> ServeConfig:
        """A copy with the given fields changed (None values are ignored: unset CLI options)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(f"unknown serve settings: {', '.join(unknown)}")
        return type(self)(**{**self.model_dump(), **changes})


def _describe_error(exc: ValidationError, init_values: Mapping[str, Any]) -> str:
    """One readable line per problem, each naming where the value came from."""
    current = _FILE_VALUES.get()
    path, file_values = current if current else (None, {})
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        name = loc[0] if loc else ""
        field = ".".join(loc) or "(top level)"
        if name in init_values:
            where = "option" if path is not None else "setting"
        elif f"{ENV_PREFIX}{name}".upper() in {k.upper() for k in os.environ}:
            where = f"${ENV_PREFIX}{name.upper()}"
        elif name in file_values:
            where = str(path)
        else:
            where = str(path) if path is not None else "setting"
        msg = "unknown field (see docs/serve.md)" if err["type"] == "extra_forbidden" else err["msg"]
        got = err.get("input")
        shown = "" if err["type"] in {"missing", "extra_forbidden"} or isinstance(got, Mapping) else f" (got {got!r})"
        parts.append(f"{where}: {field}: {msg}{shown}")
    return redact("; ".join(parts))  # a URL's password or a key in a value is never echoed


@contextmanager
def _file_values(path: str | Path | None) -> Iterator[None]:
    values = read_yaml_mapping(path) if path is not None else {}
    token = _FILE_VALUES.set((str(path), values) if path is not None else None)
    try:
        yield
    finally:
        _FILE_VALUES.reset(token)


def load_config(path: str | Path | None = None, **overrides: Any) -> ServeConfig:
    """A ServeConfig from the YAML file (optional), $REDTRANS_SERVE_* and `overrides` (None = not given)."""
    options = {k: v for k, v in overrides.items() if v is not None}
    with _file_values(path):
        return ServeConfig(**options)
