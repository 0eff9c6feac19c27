"""Platform profiles: a platform's markup conventions as data (``text/profiles/*.yaml``), not code.

A rule names a regex with a ``text`` group (what gets translated) and the template that rebuilds the span
in the target language, e.g. RedNote's ``#哈尔滨[话题]#`` → ``#Harbin[Topic]#`` and ``[庆祝R]`` →
``[Celebrate R]``. Users add a platform by dropping a YAML file next to these or passing its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import regex
import yaml

from redtrans.errors import ProfileError

DEFAULT_PROFILE = "rednote"


@dataclass(frozen=True)
class MarkupRule:
    name: str
    kind: str  # what the inner text is, in words, for the term prompt ("hashtag", "sticker name")
    pattern: regex.Pattern[str]
    output: str
    output_by_lang: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    default_label: str = ""

    def render(self, text: str, tgt: str) -> str:
        template = self.output_by_lang.get(tgt, self.output)
        return template.format(text=text, label=self.labels.get(tgt, self.default_label))


@dataclass(frozen=True)
class PlatformProfile:
    name: str
    description: str
    markup: tuple[MarkupRule, ...]
    aliases: tuple[str, ...] = ()
    protect: tuple[regex.Pattern[str], ...] = ()
    """Further patterns whose matches are copied byte for byte, ahead of every other span (markup tags of an
    HTML/XML text: `spans.with_tags`)."""


def _parse(data: dict, origin: str) -> PlatformProfile:
    try:
        rules = tuple(
            MarkupRule(
                name=r["name"],
                kind=r.get("kind", r["name"]),
                pattern=regex.compile(r["pattern"]),
                output=r["output"],
                output_by_lang=dict(r.get("output_by_lang") or {}),
                labels=dict(r.get("labels") or {}),
                default_label=r.get("default_label", ""),
            )
            for r in data.get("markup") or []
        )
        for rule in rules:
            if "text" not in rule.pattern.groupindex:
                raise ProfileError(f"{origin}: rule {rule.name!r} has no (?P<text>…) group")
        return PlatformProfile(
            name=data["name"],
            description=data.get("description", ""),
            markup=rules,
            aliases=tuple(data.get("aliases") or ()),
        )
    except (KeyError, TypeError, regex.error) as exc:
        raise ProfileError(f"{origin}: invalid platform profile ({exc})") from exc


@cache
def builtin_profiles() -> dict[str, PlatformProfile]:
    profiles: dict[str, PlatformProfile] = {}
    for entry in resources.files("redtrans.text").joinpath("profiles").iterdir():
        if entry.name.endswith(".yaml"):
            profile = _parse(yaml.safe_load(entry.read_text(encoding="utf-8")), entry.name)
            for key in (profile.name, *profile.aliases):
                profiles[key] = profile
    return profiles


def load_profile(name_or_path: str | None = None) -> PlatformProfile:
    """A built-in profile by name (``rednote``, ``generic``) or a YAML file by path."""
    key = name_or_path or DEFAULT_PROFILE
    builtin = builtin_profiles()
    if key in builtin:
        return builtin[key]
    path = Path(key)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise ProfileError(f"platform profile file not found: {path}")
        return _parse(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    names = sorted({p.name for p in builtin.values()})
    raise ProfileError(f"unknown platform profile {key!r}: use one of {', '.join(names)} or a .yaml path")
