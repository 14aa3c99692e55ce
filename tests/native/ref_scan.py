"""Plain-Python reference for ``scan_request`` and ``canonical_json``.

Slow and obvious on purpose: ``json.loads`` builds the whole tree, then small functions
apply the rules of docs/native.md to it. Property tests hold the native scan to it.

Numbers are kept as their source text (``JsonNumber``) and normalized with Python ints,
not ``Decimal``: ``Decimal`` refuses exponents beyond about 10**18, which JSON allows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import blake3

DEFAULT_MAX_DEPTH = 128
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
LOOKUP_FIELDS = ("query", "prompt", "input", "messages")
TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
MAX_EXPONENT = 1_000_000_000

_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?)([0-9]+))?")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


class RefError(Exception):
    """The reference refuses the body; ``kind`` uses the native codes."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class JsonNumber:
    """A JSON number as written in the source."""

    text: str


@dataclass(frozen=True)
class RefScan:
    """What the reference scan finds (mirrors ``ScanResult``)."""

    query: str | None
    query_field: str | None
    model: str | None
    stream: bool | None
    params_digest: bytes
    context_digest: bytes
    turns: list[tuple[str, str]]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RefError("duplicate_key")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise RefError("invalid_json")


def _nesting(text: str) -> int:
    """Deepest bracket nesting outside strings (json.loads recursion would overflow)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                raise RefError("lone_surrogate")
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())


def load(body: bytes, *, max_depth: int, max_bytes: int) -> Any:
    """Parse ``body`` strictly, in the order the native code checks."""
    if len(body) > max_bytes:
        raise RefError("too_large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefError("invalid_utf8") from None
    if _nesting(text) > max_depth:
        raise RefError("too_deep")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_reject_constant,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
        )
    except RecursionError:
        raise RefError("too_deep") from None
    except ValueError:
        raise RefError("invalid_json") from None
    _check_surrogates(value)
    return value


def canonical_number(text: str) -> str:
    """``0``, or ``[-]<digits>e<exponent>`` with no leading or trailing zero digits."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        raise RefError("invalid_json")
    sign, int_part, frac, exp_sign, exp_digits = m.groups()
    frac = frac or ""
    digits = (int_part + frac).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    exp_digits = (exp_digits or "0").lstrip("0") or "0"
    if len(exp_digits) > 15:  # far out of range; avoids int() on huge digit strings
        raise RefError("invalid_json")
    exponent = int(exp_digits) * (-1 if exp_sign == "-" else 1)
    exponent += len(digits) - len(stripped) - len(frac)
    if abs(exponent) > MAX_EXPONENT:
        raise RefError("invalid_json")
    return f"{sign}{stripped}e{exponent}"


def canonical_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(value: Any) -> str:
    """Canonical JSON text of a parsed value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, JsonNumber):
        return canonical_number(value.text)
    if isinstance(value, str):
        return canonical_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())  # str order is code point order = UTF-8 byte order
        return "{" + ",".join(canonical_string(k) + ":" + canonical(v) for k, v in items) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def canonical_json(
    body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """Reference of ``_native.canonical_json``."""
    return canonical(load(body, max_depth=max_depth, max_bytes=max_bytes)).encode()


def extract_content(value: Any) -> tuple[str | None, Any]:
    """Text parts of a content value, and the value with them taken out."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        parts: list[str] = []
        rest: list[Any] = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
                rest.append(None)
            elif (
                isinstance(item, dict)
                and isinstance(item.get("type"), str)
                and item["type"] in TEXT_TYPES
                and isinstance(item.get("text"), str)
            ):
                parts.append(item["text"])
                rest.append({k: v for k, v in item.items() if k != "text"})
            else:
                rest.append(item)
        return ("\n".join(parts) if parts else None), rest
    return None, value


def is_turn_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and isinstance(value[-1], dict)
        and "role" in value[-1]
    )


def extract_field(value: Any) -> tuple[str | None, Any]:
    """Query text of the lookup value, and the value with it taken out."""
    if is_turn_list(value):
        last = value[-1]
        if last["role"] == "user" and "content" in last:
            query, rest = extract_content(last["content"])
            return query, [*value[:-1], {**last, "content": rest}]
        return None, value
    return extract_content(value)


def _digest(value: Any) -> bytes:
    return bytes(blake3.blake3(canonical(value).encode()).digest())


def scan_request(
    body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES
) -> RefScan:
    """Reference of ``_native.scan_request``."""
    doc = load(body, max_depth=max_depth, max_bytes=max_bytes)
    if not isinstance(doc, dict):
        raise RefError("not_object")
    canonical(doc)  # number range errors anywhere in the body
    model = doc.get("model")
    model = model if isinstance(model, str) else None
    stream = doc.get("stream")
    stream = stream if isinstance(stream, bool) else None
    field = next((f for f in LOOKUP_FIELDS if f in doc), None)
    params = {
        k: v
        for k, v in doc.items()
        if k not in ("system", field)
        and not (k == "model" and model is not None)
        and not (k == "stream" and stream is not None)
    }
    query, rest = extract_field(doc[field]) if field is not None else (None, None)
    turns: list[tuple[str, str]] = []
    if "system" in doc:
        turns.append(("system", extract_content(doc["system"])[0] or ""))
    if field is not None and is_turn_list(doc[field]):
        for item in doc[field]:
            if isinstance(item, dict) and isinstance(item.get("role"), str):
                text = extract_content(item["content"])[0] if "content" in item else None
                turns.append((item["role"], text or ""))
    elif query is not None:
        turns.append(("user", query))
    return RefScan(
        query=query,
        query_field=field,
        model=model,
        stream=stream,
        params_digest=_digest(params),
        context_digest=_digest([field, doc.get("system"), rest]),
        turns=turns,
    )
