"""A request body read as Ollama v0.33 reads it: server/routes.go binds it with gin's c.ShouldBindJSON, which
decodes one JSON value with Go's encoding/json into the handler's request struct (api/types.go).

What encoding/json does that Python's json does not, and clients can tell apart:
- only the first value is read: bytes after it are ignored (gin's decodeJSON, json.Decoder.Decode);
- a key fills the struct field whose name it matches exactly or else by Unicode simple folding ("Model",
  "MODEL", "\u212aeep_alive" with a Kelvin sign, "option\u017f" with a long s); keys of no field are ignored;
- every member is decoded in the body's order, so of two keys for one field the last wins, except for a map
  field (options, map[string]any): each object adds its keys to the map the earlier ones made, and null empties
  it; a value of another type fails the request after the rest is decoded.
"""

from __future__ import annotations

import json

# Go's type of each field the stand-in reads (as encoding/json names it in its errors), and the Python types
# json gives for a value of it.
GO_TYPES = {
    "string": (str,),
    "bool": (bool,),
    "map[string]interface {}": (dict,),
    "[]api.Message": (list,),
    "*api.Duration": (str, int, float),
}


class Members(dict):
    """A JSON object as json's object_pairs_hook gives it: the last value of each key, and every member in the
    body's order (.members)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.members = pairs


def fold(key: str) -> str:
    """The key as encoding/json compares it with a field name: simple folding, where only the Kelvin sign and
    the long s fold to ASCII letters."""
    return key.replace("\u212a", "k").replace("\u017f", "s").lower()


def decode(raw: bytes, struct: str, fields: dict) -> tuple[dict, str | None]:
    """RAW into the fields of STRUCT ({json name: Go type}): (the fields set, by their json names, plus the
    keys of no field as they were; Go's error or None). Raises ValueError when RAW is not JSON."""
    text = raw.decode("utf-8", "replace").lstrip(" \t\r\n")
    value, _ = json.JSONDecoder(object_pairs_hook=Members).raw_decode(text)
    if not isinstance(value, dict):
        return {}, f"json: cannot unmarshal {kind(value)} into Go value of type api.{struct}"
    decoded, error = {}, None
    for key, item in value.members:
        name = fold(key) if fold(key) in fields else key
        go_type = fields.get(name)
        if go_type is None:
            decoded[name] = item  # no field of the struct: Ollama never sees it; kept for the stand-in's reading
        elif item is None and go_type == "string":
            decoded.setdefault(name, None)  # null leaves a string as it was; a pointer, slice or map it empties
        elif item is None:
            decoded[name] = None
        elif not isinstance(item, GO_TYPES[go_type]) or isinstance(item, bool) != (go_type == "bool"):
            error = (
                error or f"json: cannot unmarshal {kind(item)} into Go struct field {struct}.{name} of type {go_type}"
            )
        elif go_type == "map[string]interface {}":
            decoded[name] = {**(decoded.get(name) or {}), **item}
        else:
            decoded[name] = item
    return decoded, error


def kind(value) -> str:
    return {dict: "object", Members: "object", list: "array", str: "string", bool: "bool"}.get(type(value), "number")
