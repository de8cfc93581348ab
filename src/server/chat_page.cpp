#include "server/chat_page.h"

namespace dsv2 {

// Plain HTML + JavaScript, no external resources (the page must work offline).
// It streams replies from /v1/chat/completions with fetch() and reads the
// server-sent events as they arrive.
const std::string& chat_page_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsv2 chat</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; background: #f6f7f9; color: #1d2330; }
  h1 { font-size: 1.2rem; margin: 0 0 .2rem; }
  #model { color: #667; font-size: .85rem; margin-bottom: .8rem; }
  #log { display: flex; flex-direction: column; gap: .6rem; min-height: 50vh; }
  .msg { padding: .6rem .8rem; border-radius: .6rem; white-space: pre-wrap; line-height: 1.4; max-width: 85%; }
  .user { align-self: flex-end; background: #2b5fd9; color: #fff; }
  .assistant { align-self: flex-start; background: #fff; border: 1px solid #dde; }
  .error { align-self: center; color: #b00020; font-size: .9rem; }
  form { display: flex; gap: .5rem; margin-top: 1rem; }
  textarea { flex: 1; font: inherit; padding: .5rem; border-radius: .4rem; border: 1px solid #bbc; resize: vertical; min-height: 2.6rem; }
  button { font: inherit; padding: 0 1rem; border: 0; border-radius: .4rem; background: #2b5fd9; color: #fff; cursor: pointer; }
  button:disabled { background: #99a; }
  #settings { font-size: .8rem; color: #556; margin-top: .4rem; }
  #settings input { width: 4rem; }
</style>
</head>
<body>
<h1>dsv2 chat</h1>
<div id="model">loading model list…</div>
<div id="log"></div>
<form id="form">
  <textarea id="input" placeholder="Write a message; Enter sends, Shift+Enter breaks the line" autofocus></textarea>
  <button id="send" type="submit">Send</button>
</form>
<div id="settings">temperature <input id="temperature" type="number" step="0.1" min="0" max="2" value="0.7">
  max tokens <input id="max_tokens" type="number" min="1" value="128"></div>
<script>
const log = document.getElementById('log'), input = document.getElementById('input'), send = document.getElementById('send');
const messages = [];
const params = new URLSearchParams(location.search);
const streaming = params.get('stream') !== '0';  // ?stream=0: whole responses (headless tests)
let model = '';
fetch('/v1/models').then(r => r.json()).then(j => {
  model = j.data[0].id;
  document.getElementById('model').textContent = 'model: ' + model;
  // /?prompt=TEXT sends TEXT at once (used by the headless-browser test and for links).
  const first = params.get('prompt');
  if (first) ask(first);
}).catch(e => { document.getElementById('model').textContent = 'cannot list models: ' + e; });

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  div.textContent = text;
  log.appendChild(div);
  window.scrollTo(0, document.body.scrollHeight);
  return div;
}

async function ask(text) {
  messages.push({role: 'user', content: text});
  bubble('user', text);
  const reply = bubble('assistant', '');
  send.disabled = true;
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({model, messages, stream: streaming,
                            temperature: Number(document.getElementById('temperature').value),
                            max_tokens: Number(document.getElementById('max_tokens').value)}),
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    if (!streaming) {
      const whole = await response.json();
      if (whole.error) throw new Error(whole.error.message);
      reply.textContent = whole.choices[0].message.content.replace(/^\s+/, '');
    } else {
      const reader = response.body.getReader(), decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
          const chunk = JSON.parse(event.slice(6));
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = chunk.choices.length ? chunk.choices[0].delta : {};
          if (delta.content) { reply.textContent = (reply.textContent + delta.content).replace(/^\s+/, ''); window.scrollTo(0, document.body.scrollHeight); }
        }
      }
    }
    messages.push({role: 'assistant', content: reply.textContent.trim()});
  } catch (e) {
    bubble('error', String(e.message || e));
    messages.pop();
  } finally {
    send.disabled = false;
    input.focus();
  }
}

document.getElementById('form').addEventListener('submit', e => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || send.disabled) return;
  input.value = '';
  ask(text);
});
input.addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); document.getElementById('form').requestSubmit(); }
});
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace dsv2
