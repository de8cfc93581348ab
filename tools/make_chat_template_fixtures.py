#!/usr/bin/env python3
"""Renders chat templates with Python's jinja2, configured as transformers
configures it for apply_chat_template (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, raise_exception, its tojson), and writes the
expected texts to tests/fixtures/chat_templates.json for
tests/chat_template_test.cpp. Templates: the ones DeepSeek models ship
(V2-Chat, V3), two other published ones with multi-line layout and slicing,
and one written here to exercise every supported construct.

    pip install jinja2 && python3 tools/make_chat_template_fixtures.py
"""
import json
import os

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

DEEPSEEK_V2_CHAT = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

DEEPSEEK_V3 = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}"
    "{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}"
    "{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
)

# Multi-line, indented, with {%- and tojson (a Qwen template as published).
QWQ = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful and harmless assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MISTRAL = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Every construct dsv2 implements, with blank lines and indentation to test
# trim_blocks / lstrip_blocks.
FEATURES = """{# a comment #}
{% set greeting = "Hello" ~ ", " ~ 'world' %}
{{ greeting | upper }} {{ greeting|length }} {{ (3 + 4) * 2 // 3 }} {{ 7 % 3 }} {{ -2 + 5 }} {{ 1.5 * 2 }}
{% for m in messages if m.role != 'system' %}
  {{ loop.index }}/{{ loop.length }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}: {{ m['content'] | trim }}
  {%- if m.content.startswith('How') %} (a question){% endif %}
{% else %}
  no messages
{% endfor %}
{% set ns = namespace(n=0, words=[]) %}
{% for m in messages %}{% set ns.n = ns.n + m.content.split(' ') | length %}{% endfor %}
words: {{ ns.n }}; missing is {{ 'undefined' if missing is not defined else 'defined' }}; none: {{ none is none }}
{{ messages[-1].content[:5] }}|{{ messages[0]['role'] in ['system', 'user'] }}|{{ 'x' not in 'abc' }}|{{ [1, 2] + [3] }}
{{ {'b': 2, 'a': [1, "q"]} | tojson }} {{ (messages | first).role }} {{ messages | last | length }}
{% if messages | length > 2 and not add_generation_prompt %}long{% elif add_generation_prompt %}prompt{% else %}short{% endif %}
  {%+ if true %}kept indentation{% endif %}
{{ "a,b,,c".split(",") }} {{ "  pad  ".strip() }}|{{ "xxhixx".strip("x") }}|{{ "Hi".replace("i", "o") }}|{{ "a b  c".split() | join("-") }}
{% for k, v in {'one': 1, 'two': 2}.items() %}{{ k }}={{ v }}{{ ', ' if not loop.last }}{% endfor %}

{{ range(3) | list }} {{ "%s" if true }}{{ 10 / 4 }} {{ true }} {{ none }}
"""

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system_and_turns": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks."},
        {"role": "user", "content": "写一首诗"},
    ],
    "two_systems": [
        {"role": "system", "content": "A."},
        {"role": "system", "content": "B."},
        {"role": "user", "content": "  spaced  "},
    ],
    "reasoning": [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>easy</think>2"},
        {"role": "user", "content": "and 2+2?"},
    ],
}

TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "content": "18C"},
    {"role": "tool", "content": "noon"},
    {"role": "assistant", "content": "It is 18C at noon."},
]

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now>", "parameters": {"type": "object"}}}]


def environment():
    def raise_exception(message):
        raise ValueError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def main():
    env = environment()
    suites = [
        ("deepseek_v2_chat", DEEPSEEK_V2_CHAT, list(CONVERSATIONS.items())),
        ("deepseek_v3", DEEPSEEK_V3, list(CONVERSATIONS.items()) + [("tools", TOOL_CONVERSATION)]),
        ("qwq", QWQ, list(CONVERSATIONS.items()) + [("tools", TOOL_CONVERSATION[:1] + TOOL_CONVERSATION[2:4])]),
        ("mistral", MISTRAL, [(k, v) for k, v in CONVERSATIONS.items() if k != "two_systems"]),
        ("features", FEATURES, list(CONVERSATIONS.items())),
    ]
    out = []
    for name, source, conversations in suites:
        template = env.from_string(source)
        cases = []
        for conv_name, messages in conversations:
            for add_generation_prompt in (False, True):
                variables = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                             "bos_token": BOS, "eos_token": EOS}
                if name == "qwq" and conv_name == "tools":
                    variables["tools"] = TOOLS
                cases.append({"conversation": conv_name, "variables": variables, "expected": template.render(**variables)})
        out.append({"name": name, "template": source, "cases": cases})
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chat_templates.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"{sum(len(s['cases']) for s in out)} renderings of {len(out)} templates -> {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
