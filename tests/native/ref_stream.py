"""Plain-Python references for the streaming side of ``semanticcache._native``.

Slow and obvious on purpose: each function follows docs/streaming.md (and the WHATWG
event-stream rules) line by line, so that property tests can hold the Rust code to it.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from semanticcache.errors import StreamFormatError

# --- HMAC --------------------------------------------------------------------------------


def hmac_sha256(key: bytes, data: bytes | str) -> bytes:
    """HMAC-SHA256 with the standard library."""
    if isinstance(data, str):
        data = data.encode()
    return hmac.new(key, data, hashlib.sha256).digest()


def hmac_sha256_hex(key: bytes, data: bytes | str, length: int = 64) -> str:
    """Hex HMAC-SHA256 cut to ``length`` digits."""
    if not 1 <= length <= 64:
        raise ValueError(f"length must be between 1 and 64 hex digits, got {length}")
    return hmac_sha256(key, data).hex()[:length]


# --- SSE ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One dispatched event, as the native ``SseEvent`` exposes it."""

    event: str
    data: str
    id: str | None
    retry: int | None


_LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    """Incremental parser: UTF-8-sig decoder (strips one BOM, replaces invalid bytes),
    then lines, then the field rules."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._line = ""
        self._after_cr = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.events: list[Event] = []

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if not text:
            return
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        pieces = _LINE_END.split(text)
        for piece in pieces[:-1]:
            self._process(self._line + piece)
            self._line = ""
        self._line += pieces[-1]

    def pending(self) -> bool:
        """Bytes after the last line end, or data lines not dispatched yet."""
        undecoded = self._decoder.getstate()[0]
        return bool(self._line or undecoded or self._data)

    def _process(self, line: str) -> None:
        if line == "":
            if self._data:
                self.events.append(
                    Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
                )
            self._data, self._event, self._id, self._retry = [], "", None, None
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and _is_retry(value):
            self._retry = int(value)


def _is_retry(value: str) -> bool:
    # ASCII digits only (str.isdigit would also take other scripts' digits); values past
    # u64 are ignored like the native parser does.
    return bool(value) and all("0" <= c <= "9" for c in value) and int(value) < 2**64


def parse_sse(body: bytes) -> list[Event]:
    """Events of a whole body; an unterminated last event is dropped."""
    parser = SseParser()
    parser.feed(body)
    return parser.events


# --- tee ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def loads_strict(data: str) -> Any:
    """``json.loads`` without NaN / Infinity (as strict JSON parsers)."""
    return json.loads(data, parse_constant=_reject_constant)


def _probe(data: str) -> tuple[bool, list[tuple[int, bool]]] | None:
    try:
        obj = loads_strict(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    choices: list[tuple[int, bool]] = []
    raw = obj.get("choices")
    if isinstance(raw, list):
        for c in raw:
            if not isinstance(c, dict):
                continue
            index = c.get("index")
            if type(index) is int and 0 <= index < 2**64:
                choices.append((index, c.get("finish_reason") is not None))
    return obj.get("error") is not None, choices


class Tee:
    """bytearray + the reference parser, with the end-state rules."""

    def __init__(self, max_bytes: int, *, sse: bool = False) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.nbytes = 0
        self.overflowed = False
        self.closed = False
        self.parser = SseParser() if sse else None
        self._terminal: str | None = None
        self._seen = 0
        self._choices: dict[int, bool] = {}

    def push(self, chunk: bytes) -> bool:
        if self.closed:
            raise ValueError("push on a closed StreamTee")
        self.nbytes += len(chunk)
        if self.overflowed:
            return False
        if len(self.buf) + len(chunk) > self.max_bytes:
            self.overflowed = True
            self.buf = bytearray()
            return False
        self.buf += chunk
        if self.parser is not None:
            self.parser.feed(chunk)
            for ev in self.parser.events[self._seen :]:
                self._track(ev)
            self._seen = len(self.parser.events)
        return True

    def _track(self, ev: Event) -> None:
        if self._terminal is not None:
            return
        if ev.event == "error":
            self._terminal = "error"
        elif ev.data == "[DONE]":
            self._terminal = "done"
        elif (probe := _probe(ev.data)) is not None:
            error, choices = probe
            if error:
                self._terminal = "error"
                return
            for index, finished in choices:
                self._choices[index] = self._choices.get(index, False) or finished

    def close(self) -> None:
        self.closed = True

    @property
    def end_state(self) -> str:
        if self.parser is None:
            return "not_sse"
        if not self.closed:
            return "open"
        if self._terminal == "error":
            return "error"
        if self.overflowed:
            return "truncated"
        if self._terminal == "done":
            return "done"
        if self.parser.pending():
            return "truncated"
        if self._choices and all(self._choices.values()):
            return "finished"
        return "truncated"

    @property
    def complete(self) -> bool:
        return self.end_state in ("done", "finished")

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def events(self) -> list[Event]:
        return list(self.parser.events) if self.parser is not None else []


# --- chat completions --------------------------------------------------------------------


def _bad(message: str, kind: str = "bad_chunk") -> StreamFormatError:
    return StreamFormatError(message, kind)


def _opt(obj: dict[str, Any], key: str, kind: type, what: str, err: str) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise _bad(f"{key} is not {what}", err)
    return value


def _is_int(v: object) -> TypeGuard[int]:
    return type(v) is int


def assemble_events(events: list[Event]) -> dict[str, Any]:
    """The chat.completion dict for the events of a complete stream."""
    head: dict[str, Any] | None = None
    fingerprint = tier = usage = None
    choices: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.event != "message":
            continue
        if ev.data == "[DONE]":
            break
        try:
            chunk = loads_strict(ev.data)
        except (ValueError, RecursionError):
            raise _bad("event data is not JSON", "not_json") from None
        if not isinstance(chunk, dict):
            raise _bad("event data is not a JSON object")
        if chunk.get("object") != "chat.completion.chunk":
            raise _bad("chunk object is not chat.completion.chunk")
        if not isinstance(chunk.get("id"), str):
            raise _bad("chunk id")
        if head is None:
            if not _is_int(chunk.get("created")) or not isinstance(chunk.get("model"), str):
                raise _bad("chunk created / model")
            head = {"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]}
        elif chunk["id"] != head["id"]:
            raise _bad("mixed ids", "mixed_ids")
        fp = _opt(chunk, "system_fingerprint", str, "a string", "bad_chunk")
        fingerprint = fingerprint if fingerprint is not None else fp
        st = _opt(chunk, "service_tier", str, "a string", "bad_chunk")
        tier = tier if tier is not None else st
        u = _opt(chunk, "usage", dict, "an object", "bad_chunk")
        usage = u if u is not None else usage
        raw = chunk.get("choices")
        if not isinstance(raw, list):
            raise _bad("chunk choices")
        for c in raw:
            if not isinstance(c, dict):
                raise _bad("choice is not an object")
            index = c.get("index")
            if not _is_int(index) or index < 0:
                raise _bad("choice index")
            acc = choices.setdefault(
                index,
                {
                    "role": None,
                    "content": None,
                    "refusal": None,
                    "tools": {},
                    "fc": None,
                    "lp": None,
                    "finish": None,
                },
            )
            _add_choice(acc, c)
    if head is None:
        raise _bad("no chunks", "no_chunks")
    out: dict[str, Any] = {
        "id": head["id"],
        "object": "chat.completion",
        "created": head["created"],
        "model": head["model"],
    }
    if fingerprint is not None:
        out["system_fingerprint"] = fingerprint
    if tier is not None:
        out["service_tier"] = tier
    out["choices"] = [_choice_out(i, choices[i]) for i in sorted(choices)]
    if usage is not None:
        out["usage"] = usage
    return out


def _cat(a: str | None, b: str | None) -> str | None:
    if b is None:
        return a
    return (a or "") + b


def _add_choice(acc: dict[str, Any], c: dict[str, Any]) -> None:
    finish = _opt(c, "finish_reason", str, "a string", "bad_chunk")
    if finish is not None:
        acc["finish"] = finish
    lp = _opt(c, "logprobs", dict, "an object", "bad_chunk")
    if lp is not None:
        content, refusal = acc["lp"] or (None, None)
        more = _opt(lp, "content", list, "an array", "bad_chunk")
        if more is not None:
            content = (content or []) + more
        more = _opt(lp, "refusal", list, "an array", "bad_chunk")
        if more is not None:
            refusal = (refusal or []) + more
        acc["lp"] = (content, refusal)
    delta = _opt(c, "delta", dict, "an object", "bad_chunk")
    if delta is None:
        return
    role = _opt(delta, "role", str, "a string", "bad_chunk")
    if acc["role"] is None:
        acc["role"] = role
    acc["content"] = _cat(acc["content"], _opt(delta, "content", str, "a string", "bad_chunk"))
    acc["refusal"] = _cat(acc["refusal"], _opt(delta, "refusal", str, "a string", "bad_chunk"))
    fc = _opt(delta, "function_call", dict, "an object", "bad_chunk")
    if fc is not None:
        name, args = acc["fc"] or ("", "")
        name += _opt(fc, "name", str, "a string", "bad_chunk") or ""
        args += _opt(fc, "arguments", str, "a string", "bad_chunk") or ""
        acc["fc"] = (name, args)
    for call in _opt(delta, "tool_calls", list, "an array", "bad_chunk") or []:
        if not isinstance(call, dict):
            raise _bad("tool call is not an object")
        ti = call.get("index")
        if not _is_int(ti) or ti < 0:
            raise _bad("tool call index")
        tool = acc["tools"].setdefault(ti, {"id": None, "type": None, "name": "", "args": ""})
        cid = _opt(call, "id", str, "a string", "bad_chunk")
        if tool["id"] is None:
            tool["id"] = cid
        ctype = _opt(call, "type", str, "a string", "bad_chunk")
        if tool["type"] is None:
            tool["type"] = ctype
        f = _opt(call, "function", dict, "an object", "bad_chunk")
        if f is not None:
            tool["name"] += _opt(f, "name", str, "a string", "bad_chunk") or ""
            tool["args"] += _opt(f, "arguments", str, "a string", "bad_chunk") or ""


def _choice_out(index: int, acc: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": acc["role"] or "assistant", "content": acc["content"]}
    if acc["refusal"] is not None:
        message["refusal"] = acc["refusal"]
    if acc["tools"]:
        calls = []
        for ti in sorted(acc["tools"]):
            t = acc["tools"][ti]
            call: dict[str, Any] = {}
            if t["id"] is not None:
                call["id"] = t["id"]
            if t["type"] is not None:
                call["type"] = t["type"]
            call["function"] = {"name": t["name"], "arguments": t["args"]}
            calls.append(call)
        message["tool_calls"] = calls
    if acc["fc"] is not None:
        message["function_call"] = {"name": acc["fc"][0], "arguments": acc["fc"][1]}
    lp = None
    if acc["lp"] is not None:
        lp = {"content": acc["lp"][0], "refusal": acc["lp"][1]}
    return {"index": index, "message": message, "logprobs": lp, "finish_reason": acc["finish"]}


def assemble_chat_completion(body: bytes) -> dict[str, Any]:
    """Assemble a whole SSE body that must end cleanly."""
    tee = Tee(len(body), sse=True)
    tee.push(body)
    tee.close()
    if not tee.complete:
        raise _bad(f"not complete ({tee.end_state})", "not_complete")
    return assemble_events(tee.events())


def render_chat_completion_sse(completion: dict[str, Any], *, include_usage: bool = False) -> bytes:
    """The SSE body for a valid (canonical) completion, per docs/streaming.md."""
    head: dict[str, Any] = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    for key in ("system_fingerprint", "service_tier"):
        if completion.get(key) is not None:
            head[key] = completion[key]
    out: list[bytes] = []

    def emit(choices: list[dict[str, Any]], usage: Any = None) -> None:
        chunk = dict(head, choices=choices)
        if usage is not None:
            chunk["usage"] = usage
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def delta(index: int, d: dict[str, Any], lp: Any = None, finish: Any = None) -> None:
        emit([{"index": index, "delta": d, "logprobs": lp, "finish_reason": finish}])

    for choice in sorted(completion["choices"], key=lambda c: c["index"]):
        i, msg, lp = choice["index"], choice["message"], choice.get("logprobs")
        content = msg.get("content")
        has_text = bool(content)
        delta(
            i,
            {"role": msg.get("role") or "assistant", "content": None if content is None else ""},
            None if has_text else lp,
        )
        if has_text:
            delta(i, {"content": content}, lp)
        for n, call in enumerate(msg.get("tool_calls") or []):
            d: dict[str, Any] = {"index": n}
            for key in ("id", "type"):
                if call.get(key) is not None:
                    d[key] = call[key]
            f = call.get("function") or {}
            d["function"] = {"name": f.get("name") or "", "arguments": f.get("arguments") or ""}
            delta(i, {"tool_calls": [d]})
        if msg.get("function_call") is not None:
            fc = msg["function_call"]
            delta(
                i,
                {
                    "function_call": {
                        "name": fc.get("name") or "",
                        "arguments": fc.get("arguments") or "",
                    }
                },
            )
        if msg.get("refusal") is not None:
            delta(i, {"refusal": msg["refusal"]})
        delta(i, {}, None, choice.get("finish_reason"))
    if include_usage and completion.get("usage") is not None:
        emit([], completion["usage"])
    elif not out:
        emit([])  # no choices: one empty chunk still carries id, model, created
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)
