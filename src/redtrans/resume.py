"""Resume keys: a row is done only for the exact input and settings it was made from.

Every stage that resumes (translate, sample, prefs generate, bench caches, Ray shards) decides "is this row
already done?" with the one function here, never by id alone. A row's key is its id plus a digest of what its
output depends on: its content (text, source and target language, …) and the run's settings (model file
sha256, `prompt_version`, profile, term-base and example-set hashes, engine options that change output such
as `n_threads`). Output rows carry `key` (and `settings`, the settings digest), so a rerun can tell a row whose
text changed (redo it) from a run whose settings changed for every row (refuse without `--overwrite`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

DIGEST_SIZE = 16  # bytes: 32 hex characters, plenty for collision-free keys over billions of rows


def digest(value: Any) -> str:
    """A stable hex digest of a JSON-serialisable value (keys sorted, no whitespace, UTF-8)."""
    encoded = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(encoded.encode("utf-8"), digest_size=DIGEST_SIZE).hexdigest()


def settings_digest(settings: Mapping[str, Any]) -> str:
    """The digest of a run's settings: everything that changes every row's output."""
    return digest(dict(settings))


def resume_key(row_id: str, content: Mapping[str, Any], settings: str) -> str:
    """The key a row is done for: its id, the digest of its content and the run's `settings_digest`."""
    return digest({"id": row_id, "content": dict(content), "settings": settings})
