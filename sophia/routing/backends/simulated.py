"""The built-in simulated backend: behaves like an OpenAI-compatible server, offline.

It reads the request as a real server would (max_tokens or max_completion_tokens, n, tools and
tool_choice, legacy functions, response_format, logprobs, seed) and answers in the same shapes:
text that reads as a reply to the last user message, tool calls whose arguments match the
function's JSON schema, JSON content in JSON mode, per-token logprobs, embeddings.

Latency is time to first token plus a per-token time; usage is counted like a real server
reports it (a word is a token); faults (errors, slow replies, cut streams) happen at configured
rates. Under a seed, the same sequence of calls gives the same replies and faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sophia.config import Endpoint, Simulation
from sophia.routing.backends.base import BackendError, CallToken, Chunk, Embeddings, Reply, Usage, upstream_body
from sophia.routing.features import estimate_tokens, prompt_text

DEFAULT_MAX_TOKENS = 512  # what the request gets when it names no limit
EMBED_DIMENSIONS = 256
MAX_EMBED_DIMENSIONS = 8192
FINGERPRINT = "fp_simulated"
_STEP = 4  # tokens per stream event, like real servers under load
_MAX_N = 128

_OPENINGS = (
    "Here is a short answer on {a}.",
    "Good question about {a}.",
    "Let me walk through {a} step by step.",
    "On {a}, a few points matter most.",
    "{A} comes down to a handful of things.",
    "Sure, let's look at {a}.",
    "{A} is a good thing to get right.",
    "Happy to help with {a}.",
)
_BODY = (
    "First, be clear about what {a} needs to achieve.",
    "It helps to look at {b} before changing anything else.",
    "In practice, {a} and {b} are closely linked.",
    "A common mistake is to treat {b} as an afterthought.",
    "Start small, measure the effect and adjust.",
    "If {c} matters most, favour the simpler option.",
    "The trade-off is usually between speed, cost and quality.",
    "Keep an eye on {a} as things grow.",
    "The defaults are often a sensible place to start.",
    "Check the documentation on {b} for the exact limits.",
    "Try the change on a small example first.",
    "Write down what you expect before you test {a}.",
    "When {b} behaves oddly, look at the inputs first.",
    "Then compare the result with {c}.",
    "Small, steady steps work better than one big change.",
    "That way {a} stays easy to reason about.",
    "Other factors, like {c}, can shift the balance.",
    "It is worth revisiting {b} once the basics work.",
    "Most problems with {a} show up early.",
    "Keep it simple.",
    "Details matter here.",
    "{A} rewards a careful approach.",
)
_CLOSERS = ("I hope this helps.", "Hope this helps.", "Good luck.", "Thanks.", "Cheers.")  # longest first
_FALLBACK_TOPICS = ("this question", "the details", "the context")
_PROSE_KEYS = frozenset(
    "answer summary description text explanation reason reasoning content message response reply comment".split()
)
_ALTERNATIVES = tuple(
    " the| a| and| to| of| it| is| that| in| for| on| with| this| as| be| or| at| by| an| so".split("|")
)
_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else ever every few for from
    further get gets give got had has have having he her here hers him his how however i if in into is it its
    just know let like made make many may me might mine more most much must my need no nor not now of off on
    once one only or other our ours out over own please quite rather really same shall she should show so some
    such tell than thank thanks that the their theirs them then there these they thing things this those through
    to too under until up upon us use used using very want was way we well were what whats when where whether
    which while who whom whose why will with within without would yes yet you your yours explain describe write
    give list summarize summarise compare help hello hi hey okay ok sure today tomorrow tonight yesterday
    something anything everything nothing someone anyone example""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'_-]*")
_VERB_CUES = frozenset("i to you we can could should would will".split())
_TOKEN = re.compile(r"\s*\S+")  # a word with its leading space: joined back, the tokens give the text


def latency_ms(sim: Simulation, completion_tokens, slow=False):
    """The simulated latency model, shared with demo traffic: TTFT + tokens x per-token time."""
    if isinstance(slow, np.ndarray):
        factor = np.where(slow, sim.slow_factor, 1.0)
    else:
        factor = sim.slow_factor if slow else 1.0
    return (sim.ttft_ms + np.multiply(completion_tokens, sim.tpot_ms)) * factor


def _stable(*parts: object) -> int:
    """A hash that is the same in every process (str hashes are salted per process)."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def _int(v: Any, default: int, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return default
    return max(lo, min(hi, int(v)))


def _bad_request(message: str) -> BackendError:
    return BackendError("http_status", f"simulated HTTP 400: {message}", status=400, retryable=False)


# --- the request ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    description: str
    parameters: Mapping


@dataclass(slots=True)
class _Request:
    messages: Sequence[Mapping]
    prompt: str
    max_tokens: int
    n: int
    tools: tuple[_Tool, ...]
    legacy: bool  # offered as `functions`: answered with `function_call`
    tool_tokens: int
    choice: str  # none, auto or required
    named: str | None  # the function tool_choice names
    json_mode: str | None  # object or schema
    schema: Mapping | None
    logprobs: bool
    top_logprobs: int
    seed: int | None


def _tools(raw: Any, legacy: bool) -> tuple[_Tool, ...]:
    out = []
    for t in raw if isinstance(raw, list) else ():
        if not isinstance(t, Mapping):
            continue
        fn = t if legacy or not isinstance(t.get("function"), Mapping) else t["function"]
        name = fn.get("name")
        if isinstance(name, str) and name and (legacy or t.get("type", "function") == "function"):
            params, desc = fn.get("parameters"), fn.get("description")
            params = params if isinstance(params, Mapping) else {}
            out.append(_Tool(name, desc if isinstance(desc, str) else "", params))
    return tuple(out)


def _choice(v: Any) -> tuple[str, str | None]:
    """tool_choice / function_call as (mode, named function)."""
    if isinstance(v, str):
        return (v if v in ("none", "auto", "required") else "auto"), None
    if isinstance(v, Mapping):
        fn = v.get("function") if isinstance(v.get("function"), Mapping) else v
        name = fn.get("name")
        if isinstance(name, str) and name:
            return "required", name
    return "auto", None


def _request(model: str, messages: Sequence[Mapping], max_tokens: int | None, body: Mapping | None) -> _Request:
    eff = upstream_body(model, messages, max_tokens, body, stream=False)
    msgs = eff.get("messages")
    msgs = msgs if isinstance(msgs, list) else list(messages)
    limit = eff.get("max_completion_tokens")
    if limit is None:
        limit = eff.get("max_tokens")
    tools, legacy = _tools(eff.get("tools"), False), False
    raw_tools = eff.get("tools")
    mode, named = _choice(eff.get("tool_choice"))
    if not tools and eff.get("functions"):
        tools, legacy, raw_tools = _tools(eff.get("functions"), True), True, eff.get("functions")
        mode, named = _choice(eff.get("function_call"))
    if named is not None and all(t.name != named for t in tools):
        raise _bad_request(f"tool_choice names {named!r}, which is not among the functions offered")
    fmt = eff.get("response_format")
    json_mode, schema = None, None
    if isinstance(fmt, Mapping):
        if fmt.get("type") == "json_object":
            json_mode = "object"
        elif fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            json_mode = "schema" if isinstance(schema, Mapping) else "object"
    seed = eff.get("seed")
    prompt = prompt_text(msgs)
    return _Request(
        messages=msgs,
        prompt=prompt,
        max_tokens=_int(limit, DEFAULT_MAX_TOKENS, 1, 1_000_000),
        n=_int(eff.get("n"), 1, 1, _MAX_N),
        tools=tools,
        legacy=legacy,
        tool_tokens=estimate_tokens(len(json.dumps(raw_tools, default=str))) if tools else 0,
        choice=mode,
        named=named,
        json_mode=json_mode,
        schema=schema,
        logprobs=eff.get("logprobs") is True,
        top_logprobs=_int(eff.get("top_logprobs"), 0, 0, 20),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


# --- what the reply says ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What the reply is about: the last user message's topic words, and a tool result if one came last."""

    topics: tuple[str, ...]
    names: tuple[str, ...]  # the capitalised ones (likely places, people, products)
    raw: str  # the user's first words, for a string argument when no topic word is found
    last_role: str
    tool_name: str | None
    tool_result: str | None


def _cased(w: str, at_start: bool) -> str:
    """Names and acronyms keep their case; other words are lower-cased."""
    if w.islower():
        return w
    keep = (w.isupper() and len(w) > 1) or any(ch.isupper() for ch in w[1:]) or (w[0].isupper() and not at_start)
    return w if keep else w.lower()


def _topics(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The prompt's topic phrases: runs of up to three adjacent content words ("large tables"),
    in order, with a verb after "I"/"to" ("how do I tune ...") dropped or moved last."""
    runs: list[tuple[list[str], bool]] = []
    run: list[str] = []
    cue = False
    before, prev = "", 0
    for count, m in enumerate(_WORD.finditer(text)):
        if count == 120 or len(runs) == 16:  # the topic is in the first words; a long prompt costs no more
            break
        gap, prev = text[prev : m.start()], m.end()
        w = m.group().rstrip("'_-")
        if w.lower().endswith("'s"):
            w = w[:-2]
        low = w.lower()
        stop = low in _STOP or len(low) > 30 or (len(low) < 3 and not (len(w) == 2 and w.isupper()))
        if run and (stop or gap.strip()):
            runs.append((run, cue))
            run = []
        if not stop:
            if not run:
                cue = before in _VERB_CUES
            run.append(_cased(w, count == 0 or (w[0].isupper() and any(ch in ".!?\n" for ch in gap))))
        before = low
    if run:
        runs.append((run, cue))
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    for words, verb_first in runs:
        if verb_first and len(words) > 1:
            words, verb_first = words[1:], False
        phrase = " ".join(words[-3:])
        (last if verb_first else first).setdefault(phrase.lower(), phrase)
    topics = tuple({**first, **{k: v for k, v in last.items() if k not in first}}.values())[:8]
    return topics, tuple(t for t in topics if t[0].isupper())


def _context(messages: Sequence[Mapping]) -> _Context:
    user = ""
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            user = _text(m.get("content"))
            break
    topics, names = _topics(user)
    last = messages[-1] if messages and isinstance(messages[-1], Mapping) else {}
    role = last.get("role") if isinstance(last.get("role"), str) else ""
    tool_name = tool_result = None
    if role in ("tool", "function"):
        tool_result = _text(last.get("content"))
        tool_name = last.get("name") if isinstance(last.get("name"), str) else None
        if tool_name is None:
            tool_name = _called(messages, last.get("tool_call_id"))
    return _Context(topics or _FALLBACK_TOPICS, names, " ".join(user.split()[:3])[:40], role, tool_name, tool_result)


def _called(messages: Sequence[Mapping], call_id: Any) -> str | None:
    """The function the assistant called under `call_id` (a tool message names only the call)."""
    for m in reversed(messages):
        for call in (m.get("tool_calls") or ()) if isinstance(m, Mapping) else ():
            fn = call.get("function") if isinstance(call, Mapping) and call.get("id") == call_id else None
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                return fn["name"]
    return None


def _sentence(template: str, rng: random.Random, topics: Sequence[str], opening: bool) -> list[str]:
    k = len(topics)
    ia = 0 if opening else rng.randrange(k)
    a = topics[ia]
    b = topics[(ia + 1 + rng.randrange(k - 1)) % k] if k > 1 else a
    c = topics[rng.randrange(k)]
    return template.format(a=a, b=b, c=c, A=a[:1].upper() + a[1:]).split()


def _pick(rng: random.Random, pool: Sequence[str], room: int, topics: Sequence[str], used: set, opening: bool):
    """A sentence of at most `room` words, not yet used; a short closer when none fits."""
    start = rng.randrange(len(pool))
    for k in range(len(pool)):
        template = pool[(start + k) % len(pool)]
        if template in used:
            continue
        words = _sentence(template, rng, topics, opening)
        if len(words) <= room:
            used.add(template)
            return words
    for closer in _CLOSERS:
        words = closer.split()
        if len(words) <= room and closer not in used:
            used.add(closer)
            return words
    return _CLOSERS[-1].split()


def _compose(rng: random.Random, ctx: _Context, n_words: int) -> list[str]:
    """Whole sentences of exactly `n_words` words (more only when a tool result is quoted)."""
    words: list[str] = []
    used: set[str] = set()
    if ctx.tool_result is not None:
        quoted = ctx.tool_result.split()
        lead = ["Based", "on", f"{ctx.tool_name}:" if ctx.tool_name else "the tool result:"]
        words = " ".join(lead).split() + (quoted[:24] or ["nothing", "came", "back"])
        if words[-1][-1] not in ".!?":
            words[-1] += "."
    while len(words) < n_words:
        opening = not words
        words += _pick(rng, _OPENINGS if opening else _BODY, n_words - len(words), ctx.topics, used, opening)
    return words


def _phrase(ctx: _Context) -> str:
    """A string argument made of the prompt's own words."""
    words = ctx.names or (ctx.topics if ctx.topics is not _FALLBACK_TOPICS else ())
    return " ".join(words[:3]) or ctx.raw or "example"


def _resolve(schema: Mapping, root: Mapping) -> Mapping:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    node: Any = root
    for part in ref[1:].strip("/").split("/") if ref != "#" else ():
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _value(schema: Any, root: Mapping, ctx: _Context, rng: random.Random | None, key: str, depth: int = 0) -> Any:
    """A minimal value matching a JSON schema: required properties (all when none are required),
    the first enum value, one array item, bounds respected. Prose strings when `rng` is given."""
    if not isinstance(schema, Mapping) or depth > 12:
        return _phrase(ctx) if depth <= 12 else None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for alt in ("anyOf", "oneOf"):
        options = schema.get(alt)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
            return _value((usable or options)[0], root, ctx, rng, key, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root) if isinstance(part, Mapping) else {}
            for k, v in part.items():
                if k == "properties" and isinstance(v, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **v}
                elif k == "required" and isinstance(v, list):
                    merged["required"] = [*merged.get("required", []), *v]
                else:
                    merged.setdefault(k, v)
        schema = merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        required = [k for k in schema.get("required") or () if isinstance(k, str)]
        keys = list(dict.fromkeys(required)) if required else list(props)
        return {k: _value(props.get(k, {}), root, ctx, rng, k, depth + 1) for k in keys}
    if kind == "array":
        items = schema.get("prefixItems")
        if isinstance(items, list) and items:
            return [_value(s, root, ctx, rng, key, depth + 1) for s in items]
        count = max(1, _int(schema.get("minItems"), 1, 0, 100))
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [_value(schema.get("items", {}), root, ctx, rng, key, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            lo = schema["exclusiveMinimum"] + (1 if kind == "integer" else 0.5)
        if isinstance(schema.get("exclusiveMaximum"), int | float):
            hi = schema["exclusiveMaximum"] - (1 if kind == "integer" else 0.5)
        v: float = 1 if kind == "integer" else 1.5
        v = max(lo, v) if isinstance(lo, int | float) else v
        v = min(hi, v) if isinstance(hi, int | float) else v
        return math.ceil(v) if kind == "integer" else float(v)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, ctx, rng, key)


_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _string(schema: Mapping, ctx: _Context, rng: random.Random | None, key: str) -> str:
    s = _FORMATS.get(schema.get("format")) if isinstance(schema.get("format"), str) else None
    if s is None:
        if rng is not None and key.lower() in _PROSE_KEYS:
            s = " ".join(_compose(rng, ctx, 10))
        else:
            s = _phrase(ctx)
    lo, hi = _int(schema.get("minLength"), 0, 0, 10_000), schema.get("maxLength")
    if len(s) < lo:
        s = (s + " ") * (lo // (len(s) + 1) + 1)
        s = s[:lo]
    if isinstance(hi, int) and not isinstance(hi, bool) and hi >= 0:
        s = s[:hi]
    return s


def _best_tool(tools: Sequence[_Tool], ctx: _Context) -> _Tool:
    """The offered function whose name and description share most words with the prompt."""
    topics = {t.lower() for t in ctx.topics}
    best, score = tools[0], 0
    for t in tools:
        words = set(re.split(r"[^a-z0-9]+", f"{t.name} {t.description}".lower()))
        s = len(topics & words)
        if s > score:
            best, score = t, s
    return best


# --- the reply ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    """One choice: its tokens (content, or the call's arguments), and the call when it makes one."""

    index: int
    tokens: list[str]
    finish: str
    call_id: str | None = None
    call_name: str | None = None


@dataclass(slots=True)
class _Plan:
    """What the shared rng decided for one call, drawn under the lock so the sequence is seeded."""

    fail: bool
    slow: bool
    cut: bool
    draws: list[tuple[float, int, int]]  # per choice: length factor, variation, call id bits


def _logprobs(tokens: Sequence[str], offset: int, top: int) -> list[dict]:
    out = []
    for i, t in enumerate(tokens, offset):
        lp = round(-0.01 * (i % 7) - 0.05, 4)
        entry: dict[str, Any] = {"token": t, "logprob": lp, "bytes": list(t.encode())}
        alts = [entry.copy()] if top else []
        j = 0
        while len(alts) < top:
            alt = _ALTERNATIVES[(i + j) % len(_ALTERNATIVES)]
            j += 1
            if alt != t:
                alts.append({"token": alt, "logprob": round(lp - 1.5 * len(alts), 4), "bytes": list(alt.encode())})
        entry["top_logprobs"] = alts
        out.append(entry)
    return out


class SimulatedBackend:
    simulated = True

    def __init__(self, endpoint: Endpoint, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = endpoint.name
        self.sim = endpoint.simulation
        self._sleep = sleep
        self._rng = random.Random(self.sim.seed)
        self._lock = threading.Lock()

    def _plan(self, n: int) -> _Plan:
        with self._lock:
            r = self._rng
            fail = r.random() < self.sim.error_rate
            slow = r.random() < self.sim.slow_rate
            cut = r.random() < self.sim.cut_rate
            draws = [(r.random(), r.getrandbits(32), r.getrandbits(96)) for _ in range(n)]
        return _Plan(fail, slow, cut, draws)

    def _fail(self) -> BackendError:
        return BackendError("http_status", f"{self.name} answered HTTP 503: simulated failure", status=503)

    def _answers(self, model: str, req: _Request, plan: _Plan) -> list[_Answer]:
        ctx = _context(req.messages)
        calls = bool(req.tools) and req.choice != "none"
        calls = calls and (req.named is not None or req.choice == "required" or ctx.last_role == "user")
        tool, args = None, ""
        if calls:
            tool = next(t for t in req.tools if t.name == req.named) if req.named else _best_tool(req.tools, ctx)
            value = _value(tool.parameters, tool.parameters, ctx, None, tool.name)
            args = json.dumps(value if isinstance(value, dict) else {})  # arguments are always an object
        out = []
        for i, (factor, variation, id_bits) in enumerate(plan.draws):
            # A request seed makes the reply depend on the request alone, as it does upstream.
            key = ("seed", req.seed) if req.seed is not None else ("call", variation)
            rng = random.Random(_stable(self.sim.seed, *key, model, req.prompt, i))
            if req.seed is not None:
                factor = rng.random()
            target = max(1, int(self.sim.reply_tokens * (0.5 + factor)))
            if tool is not None:
                tokens = _TOKEN.findall(args) or [args]
                done = "function_call" if req.legacy else "tool_calls"
                answer = _Answer(i, tokens, done, f"call_{id_bits:024x}", tool.name)
            elif req.json_mode is not None:
                value = _value(req.schema, req.schema, ctx, rng, "answer") if req.schema is not None else None
                if not isinstance(value, dict):  # JSON mode answers with an object
                    value = {"answer": " ".join(_compose(rng, ctx, max(1, target - 1)))}
                content = json.dumps(value)
                answer = _Answer(i, _TOKEN.findall(content) or [content], "stop")
            else:
                words = _compose(rng, ctx, target - 1)
                answer = _Answer(i, [f"[simulated {model}]"] + [" " + w for w in words], "stop")
            if len(answer.tokens) > req.max_tokens:
                answer.tokens, answer.finish = answer.tokens[: req.max_tokens], "length"
            out.append(answer)
        return out

    def _usage(self, req: _Request, answers: Sequence[_Answer]) -> Usage | None:
        if not self.sim.report_usage:
            return None
        return Usage(estimate_tokens(len(req.prompt)) + req.tool_tokens, sum(len(a.tokens) for a in answers))

    def complete(
        self,
        model: str,
        messages: Sequence[Mapping],
        max_tokens: int | None,
        body: Mapping | None = None,
        token: CallToken | None = None,
    ) -> Reply:
        req = _request(model, messages, max_tokens, body)
        plan = self._plan(req.n)
        if plan.fail:
            self._sleep(self.sim.ttft_ms / 1000)
            raise self._fail()
        answers = self._answers(model, req, plan)
        tokens = sum(len(a.tokens) for a in answers)
        self._sleep(float(latency_ms(self.sim, tokens, plan.slow)) / 1000)
        choices = []
        for a in answers:
            text = "".join(a.tokens)
            msg: dict[str, Any] = {"role": "assistant", "content": None if a.call_id else text, "refusal": None}
            if a.call_id and req.legacy:
                msg["function_call"] = {"name": a.call_name, "arguments": text}
            elif a.call_id:
                msg["tool_calls"] = [
                    {"id": a.call_id, "type": "function", "function": {"name": a.call_name, "arguments": text}}
                ]
            lp = None
            if req.logprobs and not a.call_id:
                lp = {"content": _logprobs(a.tokens, 0, req.top_logprobs), "refusal": None}
            choices.append({"index": a.index, "message": msg, "logprobs": lp, "finish_reason": a.finish})
        return Reply(choices, self._usage(req, answers), FINGERPRINT)

    def stream(
        self,
        model: str,
        messages: Sequence[Mapping],
        max_tokens: int | None,
        body: Mapping | None = None,
        token: CallToken | None = None,
    ) -> Iterator[Chunk]:
        req = _request(model, messages, max_tokens, body)
        plan = self._plan(req.n)
        factor = self.sim.slow_factor if plan.slow else 1.0
        self._sleep(self.sim.ttft_ms * factor / 1000)
        if plan.fail:
            raise self._fail()
        answers = self._answers(model, req, plan)
        total = sum(len(a.tokens) for a in answers)
        budget = total // 2 if plan.cut else total  # a cut stream stops half-way
        sent = 0
        for a in answers:
            if a.call_id:
                head = {"name": a.call_name, "arguments": ""}
                if req.legacy:
                    delta: dict[str, Any] = {"function_call": head}
                else:
                    delta = {"tool_calls": [{"index": 0, "id": a.call_id, "type": "function", "function": head}]}
                yield self._event(a.index, "", delta, None)
            for k in range(0, len(a.tokens), _STEP):
                part = a.tokens[k : min(k + _STEP, k + budget - sent)]
                if not part:
                    break
                if sent:
                    self._sleep(self.sim.tpot_ms * factor * len(part) / 1000)
                if token is not None and token.cancelled:
                    raise BackendError("cancelled", "the client went away", retryable=False)
                sent += len(part)
                piece = "".join(part)
                if not a.call_id:
                    lp = {"content": _logprobs(part, k, req.top_logprobs), "refusal": None} if req.logprobs else None
                    yield self._event(a.index, piece if a.index == 0 else "", {"content": piece}, lp)
                elif req.legacy:
                    yield self._event(a.index, "", {"function_call": {"arguments": piece}}, None)
                else:
                    frag = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                    yield self._event(a.index, "", frag, None)
            if sent >= budget and plan.cut:
                raise BackendError("cut_stream", f"{self.name} dropped the connection mid-stream (simulated)")
            end = {"index": a.index, "delta": {}, "logprobs": None, "finish_reason": a.finish}
            yield Chunk("", choices=[end], fingerprint=FINGERPRINT)
        yield Chunk("", self._usage(req, answers), choices=[], fingerprint=FINGERPRINT)

    @staticmethod
    def _event(index: int, text: str, delta: Mapping, logprobs: Mapping | None) -> Chunk:
        return Chunk(
            text,
            choices=[{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}],
            fingerprint=FINGERPRINT,
        )

    def embed(self, model: str, body: Mapping) -> Embeddings:
        inputs = _embedding_inputs(body.get("input"))
        dims = body.get("dimensions")
        dims = EMBED_DIMENSIONS if dims is None else dims
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_EMBED_DIMENSIONS:
            raise _bad_request(f"dimensions must be a whole number from 1 to {MAX_EMBED_DIMENSIONS}")
        as_base64 = body.get("encoding_format") == "base64"
        with self._lock:
            fail = self._rng.random() < self.sim.error_rate
            slow = self._rng.random() < self.sim.slow_rate
        self._sleep(self.sim.ttft_ms * (self.sim.slow_factor if slow else 1.0) / 1000)
        if fail:
            raise self._fail()
        data = []
        for i, (key, features, _) in enumerate(inputs):
            v = _vector(model, key, features, dims)
            vec: Any = base64.b64encode(array("f", v).tobytes()).decode() if as_base64 else v
            data.append({"object": "embedding", "index": i, "embedding": vec})
        return Embeddings(data, Usage(sum(n for _, _, n in inputs), 0))

    def check(self) -> bool:
        return self.sim.error_rate < 1.0

    def close(self) -> None:
        pass


# --- embeddings -------------------------------------------------------------------------------


def _embedding_inputs(raw: Any) -> list[tuple[str, list[str], int]]:
    """Each input as (hash key, word features, prompt tokens): strings, or token ids."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _bad_request("input must be a string, a list of strings or a list of token ids, and not empty")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raw = [raw]
    out = []
    for x in raw:
        if isinstance(x, str):
            words = _WORD.findall(x.lower())
            content = [w for w in words if w not in _STOP]  # what the text is about weighs most
            out.append((x, content or words, estimate_tokens(len(x))))
        elif isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x):
            ids = [f"#{t}" for t in x]
            out.append(("\x00" + " ".join(ids), ids, len(x)))
        else:
            raise _bad_request("input must be a string, a list of strings or a list of token ids, and not empty")
    return out


def _vector(model: str, key: str, features: Sequence[str], dims: int) -> list[float]:
    """A unit vector from the text: each word adds signed weight to a few dimensions (so texts
    sharing words point alike), over a small dense part from the whole text's hash (no zeros)."""
    rng = random.Random(_stable("embed", model, key))
    v = [0.05 * rng.gauss(0.0, 1.0) for _ in range(dims)]
    for w in features:
        h = int.from_bytes(hashlib.blake2b(f"{model}\x1f{w}".encode(), digest_size=16).digest(), "big")
        for k in range(4):
            v[(h >> (16 * k)) % dims] += 1.0 if (h >> (64 + k)) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]
