"""Settings of `redtrans serve`: one dataclass, loaded from YAML, every field documented.

```yaml
# serve.yaml
port: 8080
model: qwen2.5-coder-1.5b
api_keys: {mobile-app: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}
rate_limit_rps: 20
```
Fields not in the file keep their defaults; unknown fields are an error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.config import ConfigError, read_yaml_mapping
from redtrans.paths import redtrans_home

API_KEYS_ENV = "REDTRANS_API_KEYS"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


ServeConfigError = ConfigError  # the name serve used before the error tree


def hash_key(key: str) -> str:
    """The sha256 hex digest under which an API key is stored (`printf %s KEY | sha256sum`)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def default_cache_url() -> str:
    return f"sqlite:///{redtrans_home() / 'serve-cache.sqlite'}"


@dataclass
class ServeConfig:
    """How the translation service listens, which engine it drives, and how it protects itself."""

    # -- listening ------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the service beyond this machine (put TLS in front of it)."""
    port: int = 8080
    """TCP port."""
    graceful_shutdown_s: float = 60.0
    """On SIGTERM/SIGINT: stop accepting, then wait up to this long for requests in flight to finish."""
    keep_alive_s: float = 75.0
    """Idle keep-alive connections are closed after this long. Keep it above the idle timeout of the proxy or
    client pool in front (nginx: 60 s), or they may send on a connection the server is closing."""

    # -- engine ---------------------------------------------------------------------------------------
    engine: str | None = None
    """llamacpp | openai | hf; None = inferred from `model` (http(s)://…/v1 URLs select openai)."""
    model: str | None = None
    """Registry name (default qwen2.5-coder-1.5b), a .gguf path, a model directory, or comma-separated
    OpenAI-compatible endpoints (`http://a:8000/v1,http://b:8000/v1`): then the service is a gateway."""
    served_model: str | None = None
    """Model name sent to OpenAI-compatible endpoints (what `vllm serve` calls it)."""
    parallel: int = 4
    """llama.cpp parallel slots, or concurrent upstream requests for the openai engine."""
    engine_options: dict[str, Any] = field(default_factory=dict)
    """Further fields of the engine's own config (LlamaCppConfig, OpenAIConfig, HFConfig), e.g. timeout_s."""
    profile: str = "rednote"
    """Platform markup profile of the translator: rednote, generic, or a YAML path."""
    mode: str = "sns"
    """Translator mode: sns (the full pipeline) or plain (one plain prompt per post; a baseline)."""

    # -- load behaviour -------------------------------------------------------------------------------
    max_concurrency: int = 2
    """Engine batches in flight at once (worker tasks). Each batch fills the engine's parallel slots."""
    max_batch_items: int = 16
    """Most texts one batch sends to the translator; concurrent requests' texts are grouped into it."""
    batch_wait_ms: float = 0.0
    """How long a worker waits for more requests to fill an under-full batch (0 = take what is queued)."""
    max_queue: int = 64
    """Requests waiting for a worker. When full, new requests get 429 with Retry-After: memory stays
    bounded by max_queue + max_concurrency requests of at most max_body_bytes each."""
    request_timeout_s: float = 30.0
    """Deadline of a request (queueing + translation); past it the answer is 504. A request may ask
    for a shorter one with `deadline_ms`."""
    retry_after_s: int = 0
    """Retry-After sent with 429 for overload; 0 = estimated from the queue and recent batch times."""

    # -- cache ----------------------------------------------------------------------------------------
    cache: str = field(default_factory=default_cache_url)
    """Translation cache: sqlite:///path.sqlite (default under $REDTRANS_HOME), redis://host:6379/0
    (needs the `redis` package), or "none". Keyed by (normalised text, src, tgt, model, prompt version)."""
    cache_memory_items: int = 50_000
    """Entries held in the in-process LRU in front of the cache store (hits never touch disk or network)."""
    cache_max_entries: int = 1_000_000
    """SQLite: oldest entries beyond this are pruned. Redis: ignored (set a maxmemory policy instead)."""
    cache_ttl_s: float = 0.0
    """Entries older than this are not served (and expire in Redis); 0 = keep forever."""

    # -- security -------------------------------------------------------------------------------------
    api_keys: dict[str, str] = field(default_factory=dict)
    """name → sha256 hex digest of an API key. Clients send `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    Keys from $REDTRANS_API_KEYS (comma-separated `name:digest` or bare digests) are added. When no keys
    are configured at all, the service is open (fine on loopback; set keys before exposing it)."""
    rate_limit_rps: float = 0.0
    """Per-key token bucket: requests per second sustained (per client address when open); 0 = no limit."""
    rate_limit_burst: int = 0
    """Bucket size: requests allowed at once after idling; 0 = max(1, 2 × rate_limit_rps)."""
    max_body_bytes: int = 262_144
    """Largest request body; larger ones get 413 before they are read into memory."""
    max_items: int = 64
    """Most items in one request (422 above)."""
    max_text_chars: int = 5_000
    """Longest text of one item, in characters (422 above)."""

    # -- logging --------------------------------------------------------------------------------------
    log_level: str = "info"
    """debug | info | warning | error."""
    log_text: bool = False
    """Include the posts' text in request logs. Off by default: user content stays out of logs."""
    access_log: bool = True
    """Log one structured JSON line per request (method, path, status, latency, item counts, key name)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        positive = (
            "max_concurrency",
            "max_batch_items",
            "max_queue",
            "max_body_bytes",
            "max_items",
            "max_text_chars",
            "parallel",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ServeConfigError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("cache_memory_items", "rate_limit_burst", "retry_after_s"):
            if int(getattr(self, name)) < 0:
                raise ServeConfigError(f"{name} must not be negative, not {getattr(self, name)!r}")
        for name in ("request_timeout_s", "graceful_shutdown_s", "keep_alive_s"):
            if float(getattr(self, name)) <= 0:
                raise ServeConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("rate_limit_rps", "cache_ttl_s", "batch_wait_ms"):
            if float(getattr(self, name)) < 0:
                raise ServeConfigError(f"{name} must not be negative, not {getattr(self, name)!r}")
        if self.mode not in {"sns", "plain"}:
            raise ServeConfigError(f"mode must be sns or plain, not {self.mode!r}")
        if not (0 <= int(self.port) <= 65535):
            raise ServeConfigError(f"port must be 0..65535, not {self.port!r}")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ServeConfigError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        if not isinstance(self.api_keys, dict):
            raise ServeConfigError("api_keys must be a mapping of name: sha256 hex digest")
        for name, digest in self.api_keys.items():
            if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
                raise ServeConfigError(
                    f"api_keys[{name!r}] must be the sha256 hex digest of the key (64 hex characters), "
                    "never the key itself: printf %s KEY | sha256sum"
                )

    def key_digests(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """digest → key name, from the config and $REDTRANS_API_KEYS."""
        keys = {digest.lower(): name for name, digest in self.api_keys.items()}
        raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
        for n, entry in enumerate(e.strip() for e in raw.split(",")):
            if not entry:
                continue
            name, _, digest = entry.rpartition(":")
            digest = digest.lower()
            if not _HEX64.match(digest):
                raise ServeConfigError(
                    f"${API_KEYS_ENV} entry {n + 1} is not `name:sha256-hex-digest` or a bare digest "
                    "(store keys hashed: printf %s KEY | sha256sum)"
                )
            keys[digest] = name or f"env-{n + 1}"
        return keys

    def replace(self, **overrides: Any) -> ServeConfig:
        """A copy with the given fields changed (None values are ignored: unset CLI options)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ServeConfigError(f"unknown serve settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path | None = None, **overrides: Any) -> ServeConfig:
    """A ServeConfig from a YAML file (or the defaults), with overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = read_yaml_mapping(path)
        except ConfigError as exc:
            raise ServeConfigError(str(exc)) from None
        names = {f.name for f in dataclasses.fields(ServeConfig)}
        unknown = sorted(set(loaded) - names)
        if unknown:
            raise ServeConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; see docs/serve.md")
        data = loaded
    try:
        config = ServeConfig(**data)
    except (TypeError, ValueError) as exc:
        where = f"{path}: " if path is not None else ""
        raise ServeConfigError(f"{where}{exc}") from exc
    return config.replace(**overrides)
