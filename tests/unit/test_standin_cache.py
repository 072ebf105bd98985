"""The stand-in's prompt cache follows llama-server as Ollama v0.33 runs it (tests/ollama_standin/standin_cache.py):
a conversation's next turn evaluates only what its slot does not hold, slots are chosen by shared prefix, then by
least recent use, and prompts pushed out of a slot come back from host memory."""

import json

import standin_cache
from standin_cache import PromptCache, chat_tokens, detokenize, fit_prompt, prompt_tokens, role, tokenize

MIB = 2**20


def turn(history: list[dict], question: str) -> list[dict]:
    return history + [{"role": "user", "content": question}]


def answered(history: list[dict], answer: str) -> list[dict]:
    return history + [{"role": "assistant", "content": answer}]


def test_tokens_are_words_or_pieces_of_long_ones_and_read_back_alike_anywhere():
    text = "short words and an extraordinarily long one, ünïcödé too"
    tokens = tokenize(text)
    # 9 words; "extraordinarily" (15 bytes) in 3 pieces of at most 6 bytes, "ünïcödé" (11 bytes) in 2
    assert len(tokens) == 12
    assert detokenize(tokens) == " ".join(text.split())
    assert all(0 < t < 2**53 for t in tokens)  # exact as JSON numbers
    # a piece that ends a word is not one that goes on: "abcdef gh" and "abcdefgh" differ
    assert tokenize("abcdef gh") != tokenize("abcdefgh")
    assert role("user") not in tokenize("user") and detokenize([role("user")] + tokenize("hi")) == "hi"


def test_a_generate_request_renders_its_context_system_and_prompt():
    context = tokenize("earlier turn")
    request = {"prompt": "next", "system": "be brief", "context": context}
    assert prompt_tokens(request) == context + [role("system")] + tokenize("be brief") + [role("user")] + tokenize(
        "next"
    ) + [role("assistant")]
    assert prompt_tokens({"prompt": "as is", "raw": True}) == tokenize("as is")
    messages = [{"role": "user", "content": "hi"}]
    assert (
        prompt_tokens({"messages": messages})
        == chat_tokens(messages)
        == [role("user"), *tokenize("hi"), role("assistant")]
    )


def test_the_next_turn_evaluates_only_what_follows_the_cached_history():
    cache = PromptCache(slots=1, num_ctx=4096, bytes_per_token=1, ram_bytes=0)
    history = turn([{"role": "system", "content": "you are a helpful assistant " * 20}], "first question")
    prompt = first = chat_tokens(history)
    slot, cached = cache.take(prompt)
    assert cached == 0
    cache.give_back(slot, prompt + tokenize("the first answer"))
    history = turn(answered(history, "the first answer"), "and a second one")
    prompt = chat_tokens(history)
    slot, cached = cache.take(prompt)
    new = [role("user"), *tokenize("and a second one"), role("assistant")]
    assert len(prompt) - cached == len(new)
    cache.give_back(slot, prompt)
    # the same prompt again: its last token is evaluated again (llama-server needs its logits)
    slot, cached = cache.take(prompt)
    assert cached == len(prompt) - 1
    assert cache.view()["prompt_tokens_evaluated"] == len(first) + len(new) + 1


def test_a_turn_finds_its_conversations_slot_and_a_new_conversation_the_least_recently_used():
    cache = PromptCache(slots=2, num_ctx=4096, bytes_per_token=1, ram_bytes=0)
    a = chat_tokens(turn([], "conversation a " * 10))
    b = chat_tokens(turn([], "conversation b is about something else entirely " * 3))
    slot_a, _ = cache.take(a)
    slot_b, _ = cache.take(b)
    assert slot_a is not slot_b
    cache.give_back(slot_a, a)
    cache.give_back(slot_b, b)  # b's slot is now the most recently used
    again, cached = cache.take(a + tokenize("more"))
    assert again is slot_a and cached == len(a)
    cache.give_back(again, a)
    # under standin_cache.SIMILARITY of the prompt shared with any slot: the least recently used one
    other = tokenize("x") + a  # shares nothing from the start
    chosen, cached = cache.take(other)
    assert chosen is slot_b and cached == 0


def test_a_prompt_pushed_out_of_its_slot_comes_back_from_host_memory_of_that_runner_only():
    cache = PromptCache(slots=1, num_ctx=4096, bytes_per_token=1024, ram_bytes=8 * MIB)
    a = chat_tokens(turn([], "the first conversation " * 20))
    b = chat_tokens(turn([], "another one entirely " * 20))
    slot, _ = cache.take(a)
    cache.give_back(slot, a)
    slot, cached = cache.take(b)  # a goes to host memory
    assert cached == 1 and cache.view()["saved_prompts"] == 1
    cache.give_back(slot, b)
    slot, cached = cache.take(a + tokenize("next turn"))
    assert cached == len(a)  # restored (b only shared its first token, the user's role), b saved in its place
    assert cache.view()["saved_prompts"] == 1
    cache.give_back(slot, a)
    # a runner without host memory for prompts (or another instance: its own cache) evaluates a again
    bare = PromptCache(slots=1, num_ctx=4096, bytes_per_token=1024, ram_bytes=0)
    slot, _ = bare.take(a)
    bare.give_back(slot, a)
    slot, _ = bare.take(b)
    bare.give_back(slot, b)
    assert bare.take(a + tokenize("next turn"))[1] == 1  # the user's role only


def test_a_prompt_longer_than_the_context_keeps_num_keep_and_its_end_and_a_full_slot_shifts():
    prompt = list(range(1, 301))
    cut = fit_prompt(prompt, num_ctx=100)
    # contextShiftPromptLimit: 100 - (100 - 4) / 2 = 52 tokens, the first num_keep (4) and the last 48
    assert cut == prompt[:4] + prompt[-48:]
    assert fit_prompt(prompt[:99], num_ctx=100) == prompt[:99]
    cache = PromptCache(slots=1, num_ctx=100, bytes_per_token=1, ram_bytes=0)
    slot, _ = cache.take(cut)
    cache.give_back(slot, cut + list(range(1000, 1060)))  # 112 tokens: over the context, shifted
    assert len(slot.tokens) < 99 and slot.tokens[: standin_cache.NUM_KEEP] == cut[:4]
    assert slot.tokens[-1] == 1059


def test_the_stand_in_answers_a_conversation_from_its_cache_and_counts_every_prompt_token(standin):
    """Over HTTP: prompt_eval_count is every prompt token (llama_server.go promptEvalCount: cache_n + prompt_n),
    prompt_eval_duration only the evaluated ones; /api/generate returns its context and reads it back."""
    server = standin(OLLAMA_NUM_PARALLEL="2", OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_STANDIN_PROMPT_TOKENS_PER_SEC="1000")
    server.pull("qwen3:0.6b")
    history = turn([{"role": "system", "content": "answer in one word " * 100}], "first")
    first = chat(server, history)
    history = turn(answered(history, first["message"]["content"]), "second")
    second = chat(server, history)
    assert second["prompt_eval_count"] == len(chat_tokens(history)) > first["prompt_eval_count"]
    # the first evaluated its 400-odd tokens at 1000/s; the second only its new user turn
    assert first["prompt_eval_duration"] > 0.3e9 and second["prompt_eval_duration"] < 0.05e9
    cache = server.get("/standin/ps")["models"][0]["prompt_cache"]
    # the second turn's new tokens: its role's, its word and the assistant's
    assert cache["prompt_tokens_cached"] == len(chat_tokens(history)) - 3
    answer = generate(server, {"prompt": "tell me " * 50})
    context = answer["context"]
    assert detokenize(context).endswith(answer["response"].strip())
    follow = generate(server, {"prompt": "go on", "context": context})
    assert follow["prompt_eval_count"] == len(context) + 4 and follow["prompt_eval_duration"] < 0.05e9
    assert generate(server, {"prompt": "as is", "raw": True}).get("context") is None


def chat(server, messages):
    body = {"model": "qwen3:0.6b", "messages": messages, "stream": False, "options": {"num_predict": 3}}
    with server.post("/api/chat", body) as resp:
        return json.load(resp)


def generate(server, fields):
    body = {"model": "qwen3:0.6b", "stream": False, "options": {"num_predict": 3}, **fields}
    with server.post("/api/generate", body) as resp:
        return json.load(resp)


def test_host_memory_keeps_one_copy_of_a_prompt_and_drops_the_prompts_it_extends():
    cache = PromptCache(slots=1, num_ctx=4096, bytes_per_token=1, ram_bytes=MIB)
    earlier = tokenize("a conversation so far")
    cache._save(earlier)
    cache._save(list(earlier))
    assert cache.view()["saved_prompts"] == 1
    cache._save(earlier + tokenize("and its next turn"))
    assert list(cache.ram.values()) == [earlier + tokenize("and its next turn")]
