"""The prompt cache of one loaded model, as Ollama v0.33.0-rc2 runs llama.cpp's llama-server (llm/llama_server.go:
`-np` slots, each with its own KV cache of num_ctx tokens; `cache_prompt: true` on every request; `--context-shift`
with `--keep num_keep`) and as llama-server (llama.cpp b10488, Ollama's LLAMA_CPP_VERSION) reuses it:

- slot choice (tools/server/server-context.cpp get_available_slot): of the idle slots holding tokens, the one whose
  cached tokens share the longest prefix with the prompt, as a share of the prompt's tokens, when that share is over
  SIMILARITY (slot_prompt_similarity, 0.1); otherwise the least recently used idle slot;
- the host-memory prompt cache (server_prompt_cache, `--cache-ram`, 8192 MiB as Ollama leaves it): when the chosen
  slot would keep less than half its tokens, they are saved to RAM first, and a saved prompt that suits the request
  better (on both the share of it kept and the share of the prompt covered) is restored into the slot; oldest out
  first when full. One per runner: a conversation another instance served is in none of this one's caches;
- reuse (pre_decode): only the tokens after the common prefix are evaluated, at least one;
- context: a prompt longer than the slot is cut as Ollama cuts it (completionPromptForRequest,
  contextShiftPromptLimit: keep num_keep, then the last part), and a slot that fills up while generating drops half
  of what follows num_keep (pre_decode's context shift).

A token here is a word (text split on white space) or a 6-byte piece of a longer one, and each chat message
starts with a token for its role: close enough to real tokenizers for what the toolkit depends on (which prefix is
cached where, and how many tokens are evaluated), with ids that every stand-in reads alike (the bytes as an
integer), so the `context` one instance returns means the same on another.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

SIMILARITY = 0.1  # common.h slot_prompt_similarity
PIECE = 6  # bytes per token of a long word
NUM_KEEP = 4  # api/types.go DefaultOptions NumKeep
WORD = re.compile(rb"\S+")


MORE, LAST, ROLE = b"\x01", b"\x02", b"\x03"  # a token's first byte: a piece with more of its word to come, a
# word's last piece, a chat role


def tokenize(text: str) -> list[int]:
    """Words, longer ones in pieces of PIECE bytes; each token's id is a marker byte and its bytes, read as one
    integer (at most 7 bytes: exact in JSON)."""
    tokens = []
    for word in WORD.findall(text.encode()):
        for at in range(0, len(word), PIECE):
            piece = word[at : at + PIECE]
            tokens.append(int.from_bytes((LAST if at + PIECE >= len(word) else MORE) + piece, "big"))
    return tokens


def detokenize(tokens: list[int]) -> str:
    """The words again, one space apart; a role's token and an id that is no token of tokenize's are left out."""
    words, word = [], b""
    for token in tokens:
        if not isinstance(token, int) or token <= 0 or token.bit_length() > 8 * (PIECE + 1):
            continue
        raw = token.to_bytes((token.bit_length() + 7) // 8, "big")
        if raw[:1] == MORE:
            word += raw[1:]
        elif raw[:1] == LAST:
            words.append(word + raw[1:])
            word = b""
    return b" ".join(words).decode(errors="replace")


def role(name: str) -> int:
    """The token that opens a chat message of role NAME."""
    return int.from_bytes(ROLE + name.encode()[:PIECE], "big")


def prompt_tokens(request: dict) -> list[int]:
    """The tokens a native request's prompt renders to: a chat's messages (chat_tokens); a generate request's
    prompt as is when raw, else its `context` (the tokens an earlier answer returned; server/routes.go
    GenerateHandler detokenizes them in front), the system prompt and the prompt as a user's message."""
    if "messages" in request:
        messages = request.get("messages")
        return chat_tokens(messages if isinstance(messages, list) else [])
    prompt = request.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    if request.get("raw") is True:
        return tokenize(prompt)
    context = request.get("context")
    tokens = [t for t in context if isinstance(t, int)] if isinstance(context, list) else []
    system = request.get("system")
    if isinstance(system, str) and system:
        tokens += [role("system")] + tokenize(system)
    return tokens + [role("user")] + tokenize(prompt) + [role("assistant")]


def chat_tokens(messages: list[dict]) -> list[int]:
    """A chat as its template renders it: each message its role's token and its words, then the assistant's
    turn."""
    tokens = []
    for message in messages:
        message = message if isinstance(message, dict) else {}
        content = message.get("content")
        tokens += [role(str(message.get("role", "user")))] + tokenize(content if isinstance(content, str) else "")
    return tokens + [role("assistant")]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def fit_prompt(tokens: list[int], num_ctx: int, num_keep: int = NUM_KEEP) -> list[int]:
    """llm/llama_server.go completionPromptForRequest: a prompt of num_ctx tokens or more keeps its first
    num_keep and its last tokens, to contextShiftPromptLimit (about half the context)."""
    if num_ctx <= 1 or len(tokens) <= num_ctx - 1:
        return tokens
    keep = min(max(num_keep, 0), num_ctx - 1)
    limit = num_ctx - max((num_ctx - keep) // 2, 1)
    return tokens[:keep] + tokens[len(tokens) - (limit - keep) :]


class Slot:
    def __init__(self, index: int):
        self.index = index
        self.tokens: list[int] = []
        self.busy = False
        self.last_used = -1.0  # never used: the first a least-recently-used choice takes


class PromptCache:
    """The slots of one runner and its host-memory cache. take() and give_back() are called with a slot free
    (the runner's semaphore holds requests beyond its slots)."""

    def __init__(self, slots: int, num_ctx: int, bytes_per_token: int, ram_bytes: int):
        self.slots = [Slot(n) for n in range(slots)]
        self.num_ctx = num_ctx
        self.bytes_per_token = max(bytes_per_token, 1)
        self.ram_tokens = ram_bytes // self.bytes_per_token
        self.ram: OrderedDict[int, list[int]] = OrderedDict()  # saved prompts, oldest first
        self.saved = 0
        self.evaluated = 0  # prompt tokens evaluated, over the runner's life
        self.cached = 0  # prompt tokens found in the cache
        self.lock = threading.Lock()

    def take(self, prompt: list[int]) -> tuple[Slot, int]:
        """The slot PROMPT runs in, and how many of its tokens are already there (n_past)."""
        with self.lock:
            idle = [s for s in self.slots if not s.busy]
            best, best_share, kept = None, SIMILARITY, 0
            for slot in idle:
                if slot.tokens:
                    common = common_prefix(slot.tokens, prompt)
                    share = common / max(len(prompt), 1)
                    if share > best_share:
                        best, best_share, kept = slot, share, common
            lru = best is None
            if lru:
                best = min(idle, key=lambda s: s.last_used)
                kept = common_prefix(best.tokens, prompt)
            if best.tokens and (lru or kept / len(best.tokens) < 0.5):
                self._save(best.tokens)
                self._restore(best, prompt, kept)
            best.busy = True
            cached = common_prefix(best.tokens, prompt)
            if cached == len(prompt):
                cached -= 1  # the last token is evaluated again for its logits
            cached = max(cached, 0)
            best.tokens = best.tokens[:cached]
            self.cached += cached
            self.evaluated += len(prompt) - cached
            return best, cached

    def give_back(self, slot: Slot, tokens: list[int]) -> None:
        """SLOT holds TOKENS (the prompt and what was generated), shifted as llama-server shifts a full slot."""
        with self.lock:
            while self.num_ctx > 1 and len(tokens) + 1 >= self.num_ctx:
                keep = min(NUM_KEEP, self.num_ctx - 4)
                discard = max((len(tokens) - keep) // 2, 1)
                tokens = tokens[:keep] + tokens[keep + discard :]
            slot.tokens = tokens
            slot.busy = False
            slot.last_used = time.monotonic()

    def _save(self, tokens: list[int]) -> None:
        """server_prompt_cache::alloc: a prompt already saved is not saved again, and saved ones it contains
        (its prefixes) go."""
        if len(tokens) > self.ram_tokens or any(saved == tokens for saved in self.ram.values()):
            return
        for key in [k for k, saved in self.ram.items() if tokens[: len(saved)] == saved]:
            del self.ram[key]
        self.saved += 1
        self.ram[self.saved] = list(tokens)
        while sum(len(t) for t in self.ram.values()) > self.ram_tokens:
            self.ram.popitem(last=False)

    def _restore(self, slot: Slot, prompt: list[int], kept: int) -> None:
        """server_prompt_cache::load: a saved prompt better than what the slot keeps, on both the share of it
        kept and the share of the prompt it covers (none that would keep under a quarter of itself)."""
        keep_share = kept / len(slot.tokens) if slot.tokens else 0.0
        cover_share = kept / max(len(prompt), 1)
        choice = None
        for key, saved in self.ram.items():
            common = common_prefix(saved, prompt)
            keeps, covers = common / len(saved), common / max(len(prompt), 1)
            if keeps >= 0.25 and keeps > keep_share and covers > cover_share:
                choice, keep_share, cover_share = key, keeps, covers
        if choice is not None:
            slot.tokens = self.ram.pop(choice)

    def view(self) -> dict:
        """Not Ollama's: what each slot holds and what was evaluated, for tests and benchmarks."""
        with self.lock:
            return {
                "slots": [len(s.tokens) for s in self.slots],
                "saved_prompts": len(self.ram),
                "prompt_tokens_evaluated": self.evaluated,
                "prompt_tokens_cached": self.cached,
            }
