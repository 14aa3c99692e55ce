"""Setting declarations: one :func:`setting` per field, from which parsing, validation and
the configuration reference (:mod:`semanticcache._settings_doc`) are derived.

A field of :class:`~semanticcache.CacheSettings` is declared once, with its type
annotation, its default, a *kind* (:mod:`semanticcache._settings_kinds`) that knows how
to parse the variable's text, check a value and describe its accepted range, and a line
of documentation. :func:`check_fields` and :func:`parse_environ` walk
those declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Final

from semanticcache._settings_kinds import Key, Kind, Text, Url, env_name

__all__ = ["Spec", "check_fields", "parse_environ", "setting", "spec"]

_METADATA_KEY: Final = "semanticcache.setting"


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting's declaration beyond its name, type annotation and default."""

    kind: Kind
    doc: str
    fallback: str | None = None
    """A provider's own variable read when the ``SEMANTIC_CACHE_*`` one is unset."""
    default_doc: str | None = None
    """What the default means, where the value alone says too little."""

    @property
    def secret(self) -> bool:
        return isinstance(self.kind, Key) or (isinstance(self.kind, Text) and self.kind.secret)

    @property
    def url(self) -> bool:
        return isinstance(self.kind, Url)

    def masked(self, value: object) -> object:
        """A URL setting's value with its credentials masked."""
        assert isinstance(self.kind, Url)
        return self.kind.masked(value)


def setting[T](
    default: T,
    kind: Kind,
    doc: str,
    *,
    fallback: str | None = None,
    default_doc: str | None = None,
) -> T:
    """Declare a settings field: its default, kind and documentation."""
    declared = Spec(kind, doc, fallback, default_doc)
    return field(default=default, metadata={_METADATA_KEY: declared})


def spec(f: Field[Any]) -> Spec:
    declared = f.metadata[_METADATA_KEY]
    assert isinstance(declared, Spec)
    return declared


def check_fields(owner: Any) -> None:
    """Check every field of the dataclass instance ``owner`` in declaration order and store
    the normalised values (an int threshold becomes a float, so equal settings compare and
    hash equal however they were built). ``None`` is accepted where it is the default."""
    for f in fields(owner):
        value = getattr(owner, f.name)
        if value is None and f.default is None:
            continue
        object.__setattr__(owner, f.name, spec(f).kind.check(env_name(f.name), value, owner))


def parse_environ(cls: type, environ: Mapping[str, str]) -> dict[str, object]:
    """The keyword arguments for ``cls`` that ``environ`` sets: stripped, parsed by kind;
    empty variables count as unset."""
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        declared = spec(f)
        env = env_name(f.name)
        raw = environ.get(env)
        if (raw is None or not raw.strip()) and declared.fallback:
            raw = environ.get(declared.fallback)
        if raw is None or not raw.strip():
            continue
        kwargs[f.name] = declared.kind.parse(env, raw.strip())
    return kwargs
