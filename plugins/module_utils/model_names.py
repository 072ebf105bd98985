"""Ollama's rule for model names, written once for the filters, the modules and the test stand-in.

Ollama v0.33.0-rc2 reads a name in two steps:
  internal/modelref/modelref.go ParseRef: trim spaces, drop a ":local" suffix, and send ":cloud" or a "-cloud" tag
    to ollama.com (this toolkit serves no cloud model, so such a name is refused here);
  types/model/name.go ParseNameBare + Merge: [scheme://][host/][namespace/]model[:tag], with registry.ollama.ai,
    library and latest filled in; IsValid checks every part (isValidPart: ASCII letters, digits and "_" first,
    then "_", "-", "." except in a namespace, ":" only in a host; 1-80 bytes, a host 1-350).
Two names are the same model when each part is equal ignoring case (Name.EqualFold, server/routes.go
getExistingName): `key` is that identity. What Ollama shows for a name is DisplayShortest, which keeps the case
written: `display` is the name the plan, the status and the gateway's metrics use.
"""

import re
from typing import NamedTuple

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
# Go's strings.TrimSpace trims unicode.IsSpace: not Python's str.strip() (which also trims \x1c-\x1f) nor
# JavaScript's trim() (which also trims U+FEFF and not U+0085).
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_FIRST = "A-Za-z0-9_"
PART_RULES = {
    "host": re.compile(rf"[{_FIRST}][{_FIRST}.:-]{{0,349}}"),
    "namespace": re.compile(rf"[{_FIRST}][{_FIRST}-]{{0,79}}"),
    "model": re.compile(rf"[{_FIRST}][{_FIRST}.-]{{0,79}}"),
    "tag": re.compile(rf"[{_FIRST}][{_FIRST}.-]{{0,79}}"),
}
VALID = "letters, digits, '_', '-' and (not in a namespace) '.', starting with a letter, digit or '_'"


class InvalidModelName(ValueError):
    """A name Ollama would refuse ("invalid model name"), or one this toolkit does not serve; the message says why."""


class ModelName(NamedTuple):
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def key(self):
        """The model's identity: its full name in lower case (two spellings of one model have one key)."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}".lower()

    @property
    def display(self):
        """What Ollama shows for it (Name.DisplayShortest): the default host and namespace left out."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"


def _source_suffix(raw):
    """modelref parseSourceSuffix: (base, "local" | "cloud" | None)."""
    base, colon, suffix = raw.rpartition(":")
    if not colon:
        return raw, None
    word = suffix.strip(GO_SPACE).lower()
    if word in ("cloud", "local"):
        return base, word
    if "/" not in suffix and word.endswith("-cloud"):
        return f"{base}:{suffix.strip(GO_SPACE)[: -len('-cloud')]}", "cloud"
    return raw, None


def _reference(name):
    """modelref ParseRef: the name without its source suffix; refuses cloud models and conflicting suffixes."""
    if not isinstance(name, str):
        raise InvalidModelName(f"{name!r} is not a model name (a string like llama3.1:8b)")
    raw = name.strip(GO_SPACE)
    if not raw:
        raise InvalidModelName("a model name is required, like llama3.1:8b")
    base, source = _source_suffix(raw)
    if source and _source_suffix(base)[1]:
        raise InvalidModelName(f"{name!r}: use either :local or :cloud, not both")
    if source == "cloud":
        raise InvalidModelName(f"{name!r} is a cloud model, which Ollama sends on to ollama.com: not served here")
    return base


def _cut(text, sep):
    """name.go cutPromised: split at the last SEP; an empty side becomes a part that is never valid."""
    before, found, after = text.rpartition(sep)
    if not found:
        return text, None
    return before or "!MISSING!", after or "!MISSING!"


def parse(name):
    """ModelName of NAME as Ollama reads it; InvalidModelName (saying which part and why) where Ollama refuses it."""
    rest = _reference(name)
    tag = DEFAULT_TAG
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = _cut(rest, ":")
    rest, model = _cut(rest, "/")
    namespace, host = DEFAULT_NAMESPACE, DEFAULT_HOST
    if model is None:
        rest, model = None, rest
    else:
        rest, namespace = _cut(rest, "/")
        if namespace is None:
            rest, namespace = None, rest
    if rest is not None:
        host = rest.split("://", 1)[-1]
    parsed = ModelName(host, namespace, model, tag)
    bad = [part for part, rule in PART_RULES.items() if not rule.fullmatch(getattr(parsed, part))]
    if bad:
        raise InvalidModelName(f"{name!r} is not a model name: its {' and '.join(bad)} must be {VALID}")
    return parsed


def key(name):
    """The identity of NAME: equal for every spelling Ollama takes as the same model."""
    return parse(name).key


def display(name):
    """The name Ollama shows for NAME, e.g. library/qwen3 and registry.ollama.ai/library/qwen3 are qwen3:latest."""
    return parse(name).display


def same(one, other):
    """Whether two names are one model to Ollama."""
    return key(one) == key(other)
