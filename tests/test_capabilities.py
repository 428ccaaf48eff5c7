"""What a request uses, where it can go, and what the scorer reads: traits, capabilities in the
decision, scorer settings, stream assembly, the cache key, and their configuration checks."""

from __future__ import annotations

import pytest

from sophia import config
from sophia.routing import features, policy
from sophia.routing.backends.base import Chunk, upstream_body
from sophia.routing.cache import cache_key
from sophia.routing.reply import Assembly, as_chunks, finish_reason, tool_calls
from sophia.routing.traits import PLAIN, traits
from sophia.vocab import Reason, Tier
from tests.helpers import DEDICATED_NAMES, EMBEDDINGS_MODEL, SERVERLESS_MODELS, reference

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
HELLO = [{"role": "user", "content": "Hello!"}]
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
]


def cfg_with(mutate=None) -> config.Config:
    data = reference()
    if mutate:
        mutate(data)
    return config.parse(data)


def decide(cfg, messages, body=None, **state):
    tr = traits(messages, body)
    f = features.extract(messages, (body or {}).get("max_tokens"), cfg.scorer, cfg.routing.default_max_tokens)
    st = policy.RuntimeState(needs=tr.needs, tokens=f.est_prompt_tokens + f.max_tokens * tr.choices, **state)
    return policy.decide(f, cfg, st)


# --- traits -------------------------------------------------------------------------------------


def test_traits_name_what_a_request_uses():
    assert traits(HELLO, None) is PLAIN and PLAIN.needs == {"chat"}
    t = traits(HELLO, {"tools": TOOLS, "response_format": {"type": "json_object"}, "n": 3, "logprobs": True})
    assert t.needs == {"chat", "tools", "json_mode", "n", "logprobs"} and t.uses_tools and t.choices == 3
    assert t.response_format == "json_object" and t.extra_chars > 0
    assert traits(HELLO, {"tools": TOOLS, "tool_choice": "none"}).needs == {"chat"}  # offered, never called
    t = traits(IMAGE, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}})
    assert t.needs == {"chat", "vision", "json_schema"} and t.images == 1
    assert traits(HELLO, {"temperature": 0}).deterministic and traits(HELLO, {"seed": 1}).deterministic
    assert not traits(HELLO, {}).deterministic and not traits(HELLO, {"temperature": 0.7}).deterministic


def test_images_and_tool_definitions_count_in_the_estimate_not_the_score():
    cfg = cfg_with()
    tr = traits(IMAGE, None)
    f = features.extract(
        IMAGE, 10, cfg.scorer, 512, images=tr.images, image_tokens=cfg.image_tokens(SERVERLESS_MODELS[0])
    )
    text = features.extract(IMAGE, 10, cfg.scorer, 512)
    assert f.images == 1 and f.est_prompt_tokens == text.est_prompt_tokens + 765
    assert f.prompt_chars == text.prompt_chars == len("What is in this picture?")


# --- the scorer's settings ----------------------------------------------------------------------


def test_scorer_can_leave_out_the_system_prompt_and_earlier_turns():
    rag = [
        {"role": "system", "content": "Use this context to analyze the session stream. " * 300},
        {"role": "user", "content": "Remember the earlier context?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "hi"},
    ]
    default = cfg_with()
    assert decide(default, rag).complexity >= 0.9  # as today: everything is scored
    quiet = cfg_with(lambda d: d["scorer"].update(score_system=False, score_history=False))
    d = decide(quiet, rag)
    assert d.complexity == 0.0 and d.tier == Tier.SERVERLESS
    assert d.features.est_prompt_tokens == decide(default, rag).features.est_prompt_tokens  # cost counts all
    no_system = cfg_with(lambda d: d["scorer"].update(score_system=False))
    assert 0 < decide(no_system, rag).complexity < decide(default, rag).complexity  # history still scored


# --- capabilities in the decision -------------------------------------------------------------


def test_a_place_without_a_capability_is_skipped_with_reason_capability():
    cfg = cfg_with(lambda d: d["endpoints"][0].update(capabilities=["chat"]))
    d = decide(cfg, HELLO, {"tools": TOOLS})
    assert (d.tier, d.endpoint, d.reason) == (Tier.DEDICATED, DEDICATED_NAMES[0], Reason.CAPABILITY)
    assert all(cfg.endpoint(e).tier == Tier.DEDICATED for e, _ in d.chain)  # never to serverless
    assert decide(cfg, HELLO).reason == Reason.COST_OPTIMIZED  # plain requests as before


def test_a_model_without_vision_is_skipped_and_a_forced_one_is_refused():
    cfg = cfg_with()
    forced = decide(cfg, IMAGE, None, force_model=SERVERLESS_MODELS[2])  # the 8b model: no vision
    assert forced.refused and forced.reason == Reason.CAPABILITY and "vision" in forced.unservable
    assert forced.unservable.startswith(f"the model {SERVERLESS_MODELS[2]} does not support vision")
    ok = decide(cfg, IMAGE)
    assert not ok.refused and ok.model == SERVERLESS_MODELS[0]


def test_no_place_can_serve_it_is_a_refusal_naming_the_capability():
    def chat_only(d):
        for e in d["endpoints"]:
            e["capabilities"] = ["chat"]
        d["models"][2].pop("capabilities")

    cfg = cfg_with(chat_only)
    d = decide(cfg, HELLO, {"tools": TOOLS})
    assert d.refused and d.chain == () and d.reason == Reason.CAPABILITY
    assert d.unservable.startswith("no configured model supports tools, which the request uses: add it")
    assert not decide(cfg, HELLO).refused


def test_context_windows_keep_long_requests_away():
    def windows(d):
        d["endpoints"][0]["context_window"] = 1000
        d["endpoints"][1]["context_window"] = 200_000

    cfg = cfg_with(windows)
    long = [{"role": "user", "content": "word " * 1000}]  # ~1,250 tokens + 512 max_tokens
    d = decide(cfg, long)
    assert d.reason == Reason.CAPABILITY and d.endpoint == DEDICATED_NAMES[0]
    assert decide(cfg, HELLO).tier == Tier.SERVERLESS


def test_an_embeddings_model_never_serves_chat():
    cfg = cfg_with()
    d = decide(cfg, HELLO, None, force_model=EMBEDDINGS_MODEL)
    assert d.refused and "chat" in d.unservable
    e = policy.decide_embeddings(features.extract(HELLO, 1, cfg.scorer, 1), cfg, EMBEDDINGS_MODEL)
    assert (e.tier, e.model, e.chain, e.refused) == (
        Tier.SERVERLESS,
        EMBEDDINGS_MODEL,
        (("serverless", EMBEDDINGS_MODEL),),
        False,
    )
    blocked = policy.decide_embeddings(e.features, cfg, EMBEDDINGS_MODEL, policy.RuntimeState(budget_action="block"))
    assert blocked.refused and blocked.reason == Reason.BUDGET


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda d: d["endpoints"][0].update(capabilities=["tools", "telepathy"]), "endpoints.serverless.capabilities"),
        (lambda d: d["endpoints"][0].update(capabilities="tools"), "a list of names"),
        (lambda d: d["endpoints"][0].update(context_window=-1), "endpoints.serverless.context_window"),
        (lambda d: d["endpoints"][0].update(drop_params=[1]), "endpoints.serverless.drop_params"),
        (lambda d: d["models"][0].update(image_tokens=-5), "models.llama-4-scout-17b-16e-instruct.image_tokens"),
        (lambda d: d["models"][0].update(capabilities=["vision", 3]), "models.llama-4-scout-17b-16e-instruct"),
        (lambda d: d["routing"].update(embeddings_model="nope"), "routing.embeddings_model"),
        (lambda d: d["routing"].update(embeddings_model=SERVERLESS_MODELS[0]), 'capabilities = ["embeddings"]'),
        (lambda d: d["scorer"].update(score_system="no"), "scorer.score_system"),
        (lambda d: d["cache"].update(sampled=1), "cache.sampled"),
    ],
)
def test_bad_capability_settings_are_one_line(mutate, expect):
    with pytest.raises(config.ConfigError) as e:
        cfg_with(mutate)
    assert expect in str(e.value)


# --- a stream's choices, the cache key, the upstream body --------------------------------------


def test_assembly_merges_tool_call_fragments_and_choices_by_index():
    a = Assembly()
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
    a.add(Chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [call]}}]))
    for piece in ('{"q": ', '"paris"}'):
        a.add(Chunk(choices=[{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}]))
    a.add(Chunk("Hi", choices=[{"index": 1, "delta": {"content": "Hi"}, "logprobs": {"content": [{"token": "Hi"}]}}]))
    a.add(Chunk(choices=[{"index": 1, "delta": {"content": " there"}, "logprobs": {"content": [{"token": " there"}]}}]))
    a.add(Chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    a.add(Chunk(choices=[{"index": 1, "delta": {}, "finish_reason": "stop"}]))
    c0, c1 = a.choices
    assert c0["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "paris"}'}}
    ]
    assert c1["message"]["content"] == "Hi there" and len(c1["logprobs"]["content"]) == 2
    assert finish_reason(a.choices) == "tool_calls" and tool_calls(a.choices) == 1
    # A whole reply streamed back (a cache hit) assembles into the same choices.
    again = Assembly()
    for ch in as_chunks(a.choices):
        again.add(ch)
    assert again.choices == a.choices


def test_cache_key_covers_every_output_field_and_the_routed_model():
    def key(body, place=("serverless", "m")):
        return cache_key(HELLO, 100, None, None, "s", body, place)

    base = {"model": "sophia-auto", "messages": HELLO, "temperature": 0}
    k = key(base)
    assert key({**base, "user": "someone", "metadata": {"a": "b"}, "stream": True}) == k  # no output change
    for change in (
        {"temperature": 0.5},
        {"tools": TOOLS},
        {"seed": 3},
        {"n": 2},
        {"response_format": {"type": "json_object"}},
    ):
        assert key({**base, **change}) != k, change
    assert key(base, ("sophia-ai-core", "m")) != k


def test_upstream_body_is_the_clients_with_the_routed_model():
    body = {"model": "sophia-auto", "messages": HELLO, "temperature": 0.2, "x_vendor": [1], "logit_bias": {"1": 2}}
    out = upstream_body("scout", HELLO, 512, body, False, drop=("logit_bias",))
    assert list(out) == ["model", "messages", "temperature", "x_vendor"] and out["model"] == "scout"
    assert body["model"] == "sophia-auto"  # the client's dict is not changed
    streamed = upstream_body("scout", HELLO, 512, {**body, "stream": True, "stream_options": {"x": 1}}, True)
    assert streamed["stream_options"] == {"x": 1, "include_usage": True}
    assert upstream_body("scout", HELLO, 64, None, False) == {"model": "scout", "messages": HELLO, "max_tokens": 64}


def test_the_body_size_stands_for_everything_sent_besides_text():
    import json

    body = {"model": "sophia-auto", "messages": HELLO, "tools": TOOLS, "temperature": 0}
    raw = json.dumps(body)
    by_size = traits(HELLO, body, len(raw))
    assert by_size.extra_chars == len(raw) - len("Hello!") >= len(json.dumps(TOOLS))
    assert traits(HELLO, {"model": "m", "messages": HELLO}, 500).extra_chars == 0  # plain: text only
