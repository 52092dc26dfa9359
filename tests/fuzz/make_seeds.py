#!/usr/bin/env python3
"""Writes the seed corpora in seeds/<target>/ from the project's own fixtures (tests/fixtures).

Run from anywhere: python3 tests/fuzz/make_seeds.py. It empties and refills seeds/. Needs PyYAML
only to pull templates and conditions out of the fixture machines.
"""
import hashlib
import json
import pathlib
import shutil

import yaml

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
SEEDS = HERE / "seeds"


def write(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    (folder / name).write_bytes(data)


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def conditions(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "condition" and isinstance(v, str):
                yield v
            else:
                yield from conditions(v)
    elif isinstance(node, list):
        for v in node:
            yield from conditions(v)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    ymls = sorted(FIXTURES.rglob("*.yml"))
    templates, simple, cel = set(), set(), set()
    for path in ymls:
        text = path.read_text()
        rel = path.relative_to(FIXTURES).as_posix().replace("/", "__")
        if "spec: flatmachine" in text:
            write("check_yaml", text, rel)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        for s in strings(doc):
            if "{{" in s or "{%" in s or s.strip().startswith(("context.", "input.", "output.")):
                templates.add(s)
        engine = (doc or {}).get("data", {}).get("expression_engine", "simple") if isinstance(doc, dict) else "simple"
        for c in conditions(doc):
            (cel if engine == "cel" else simple).add(c)
    templates |= {
        "context.nested.k",
        "{{ context.tags | join(', ') }}",
        "{% for t in context.tags %}{{ loop.index }}:{{ t }} {% endfor %}",
        "{{ context.json_text | fromjson }}",
        "{{ input | tojson }}",
        "{{ '%s-%d' % (context.name, context.n) }}",
        "{{ context.score | round(1) }} {{ context.nums | sort }} {{ context.nested }}",
    }
    for t in sorted(templates):
        write("template_value", t)
        write("template_prompt", t)
    simple |= {
        "context.n > 3 and context.name == 'Ada'",
        "not context.flag or context.tags[0] in ['a', 'b']",
        "context.nested['k'][1] * 2 >= 5.0",
        "len(context.tags) == 3",
        "context.none is None",
    }
    cel |= {
        "context.n > 3 && context.name == 'Ada'",
        "size(context.tags) == 3 && 'a' in context.tags",
        "has(context.nested.deep) ? context.nested.deep.x == 'y' : false",
        "context.score * 2.0 > 1.0",
        "context.tags.exists(t, t.startsWith('b'))",
    }
    for c in sorted(simple):
        write("condition_simple", c)
    for c in sorted(cel):
        write("condition_cel", c)
    seen = set()
    for path in sorted(FIXTURES.rglob("step_*.json")):
        data = path.read_bytes()
        if data not in seen:
            seen.add(data)
            write("snapshot", data)
    # Chat-completions bodies built from what the conformance cases' fake server served, each
    # behind the mode byte of the llm_reply target (0: status 200, plain agent; 4: JSON agent).
    served = []
    for log in sorted(FIXTURES.glob("conformance/*/llm_log*.jsonl")):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            served.append(entry.get("served", {}))
    bodies = set()
    for s in served:
        message = {"role": "assistant", "content": s.get("content")}
        finish = "stop"
        if s.get("tool_calls"):
            message["tool_calls"] = [
                {"id": tc.get("id", f"call_{i}"), "type": "function",
                 "function": {"name": tc.get("name"), "arguments": json.dumps(tc.get("arguments", {}))}}
                for i, tc in enumerate(s["tool_calls"])
            ]
            finish = "tool_calls"
        body = {
            "id": "chatcmpl-seed", "object": "chat.completion", "created": 1700000000,
            "model": "seed", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }
        bodies.add(json.dumps(body))
    bodies.add(json.dumps({"choices": [{"message": {"content": "```json\n{\"answer\": \"x\"}\n```"}, "finish_reason": "length"}]}))
    bodies.add(json.dumps({"choices": [{"message": {"content": None, "tool_calls": [{"id": "c1", "function": {"name": "look", "arguments": {"q": 1}}}]}, "finish_reason": "tool_calls"}]}))
    bodies.add(json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit"}}))
    for b in sorted(bodies):
        for mode in (0, 4):
            write("llm_reply", bytes([mode]) + b.encode())
    write("llm_reply", bytes([2 | 8]) + json.dumps({"error": {"message": "slow down"}}).encode())
    write("llm_reply", bytes([3 | 16]) + b"upstream exploded")
    write("llm_reply", bytes([4 | 32]) + json.dumps({"choices": [{"message": {"content": "done"}}]}).encode())
    # The other wire formats, behind a second byte (provider in bits 0-1, stream in bit 2)
    # that a mode byte with its top bits set announces.
    anthropic = {"id": "m", "model": "claude-x", "stop_reason": "tool_use",
                 "content": [{"type": "text", "text": "{\"answer\": \"x\"}"},
                             {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}}],
                 "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 1}}
    gemini = {"candidates": [{"content": {"role": "model", "parts": [
                  {"text": "{\"answer\": \"x\"}"}, {"functionCall": {"name": "look", "args": {"q": 1}}}]},
                  "finishReason": "STOP"}],
              "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}
    ollama = {"model": "m", "message": {"role": "assistant", "content": "{\"answer\": \"x\"}",
                                        "tool_calls": [{"function": {"name": "look", "arguments": {"q": 1}}}]},
              "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
    for dialect, body in ((1, anthropic), (2, gemini), (3, ollama)):
        for mode in (0xC0, 0xC0 | 4, 0xC0 | 32):
            write("llm_reply", bytes([mode, dialect]) + json.dumps(body).encode())
    sse_openai = "".join(f"data: {json.dumps(e)}\n\n" for e in [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "function": {"name": "look", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    ]) + "data: [DONE]\n\n"
    sse_anthropic = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 2}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "look"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
    ])
    sse_gemini = "".join(f"data: {json.dumps(e)}\n\n" for e in [
        {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "look", "args": {}}}]}, "finishReason": "STOP"}]},
    ])
    nd_ollama = "".join(json.dumps(e) + "\n" for e in [
        {"model": "m", "message": {"content": "Hi"}, "done": False},
        {"model": "m", "message": {"content": ""}, "done": True, "done_reason": "stop", "eval_count": 1},
    ])
    for dialect, body in ((4, sse_openai), (5, sse_anthropic), (6, sse_gemini), (7, nd_ollama)):
        write("llm_reply", bytes([0xC0, dialect]) + body.encode())


if __name__ == "__main__":
    main()
