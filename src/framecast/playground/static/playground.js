// framecast playground: a client of the public /v1 API, with the key typed into the page.
// The form is built from each model's input schema, so a new model or field needs no change here.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "framecast.api_key";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATE_LABELS = {
  in_queue: "Queued",
  in_progress: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};
const POLL_MS = 500;
const HISTORY_MAX = 50;
// Strings longer than this get a text area rather than a one-line input.
const LONG_TEXT = 200;

let models = [];
let fields = []; // [{spec, el}] of the model on show
let uploaded = null; // data: URI of the chosen file; it wins over the URL field
let current = null; // the history entry on show in the Run panel
let view = 0; // bumped whenever the Run panel changes request; older loops then stop
let stream = null; // AbortController of the open status stream

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// framecast answers {"error": {"code", "message"}}; RunComfy-style bodies put a string
// "error_message" beside it (or instead of it).
function errorMessage(body, status) {
  if (body && typeof body === "object") {
    const e = body.error;
    if (e && typeof e === "object" && e.message) return e.message;
    if (typeof body.error_message === "string" && body.error_message) return body.error_message;
    if (typeof e === "string" && e) return e;
  }
  return `the server answered HTTP ${status}`;
}

function apiKey() {
  return $("api_key").value.trim();
}

// Status, result and cancel URLs carry the server's public base URL, which behind a proxy may be
// another origin than the page's (and so blocked by CORS); the page talks to its own server.
function onThisServer(url) {
  const u = new URL(url, location.href);
  return u.origin === location.origin ? u.href : u.pathname + u.search;
}

async function api(url, options = {}) {
  url = onThisServer(url);
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (options.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { ...options, headers });
  } catch (err) {
    throw new ApiError(`the server did not answer (${err.message})`, 0, null);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(errorMessage(body, response.status), response.status, body);
  return { status: response.status, body };
}

// ---------------------------------------------------------------- small helpers

function show(el, text) {
  el.textContent = text ?? "";
  el.hidden = !text;
}

function make(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  for (const child of children) el.append(child);
  return el;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Server-sent events from a fetch() response, as {event, data} once each has ended.
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split("\n");
    buffer = lines.pop(); // an unfinished line waits for the rest of it
    for (let line of lines) {
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) yield { event, data: data.join("\n") };
        event = "message";
        data = [];
      } else if (!line.startsWith(":")) { // ":" starts a comment: the keep-alives
        const [name, ...rest] = line.split(":");
        const value = rest.join(":").replace(/^ /, "");
        if (name === "event") event = value;
        else if (name === "data") data.push(value);
      }
    }
  }
}

// ---------------------------------------------------------------- form from the JSON schema

function deref(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { ...((root.$defs || {})[name] || {}), ...schema, $ref: undefined };
  }
  return schema;
}

// One field's schema reduced to what the form needs. Optional fields are often "X or null":
// the form edits X, and a field left empty is not sent, so the server's default applies.
function fieldSpec(name, prop, root, required) {
  prop = deref(prop, root);
  let schema = prop;
  if (Array.isArray(prop.anyOf)) {
    const kinds = prop.anyOf.map((s) => deref(s, root)).filter((s) => s.type !== "null");
    if (kinds.length === 1) schema = { ...kinds[0], ...prop };
  }
  const options = schema.enum || (schema.const !== undefined ? [schema.const] : null);
  let kind = schema.type;
  if (options) kind = "enum";
  else if (kind === "string" && (schema.maxLength || Infinity) > LONG_TEXT) kind = "text";
  else if (!["boolean", "integer", "number", "string"].includes(kind)) kind = "json";
  return {
    name,
    kind,
    options,
    required,
    title: prop.title || name,
    description: prop.description || "",
    default: prop.default,
    min: schema.minimum ?? schema.exclusiveMinimum,
    max: schema.maximum ?? schema.exclusiveMaximum,
    integer: schema.type === "integer",
    maxLength: schema.maxLength,
  };
}

function control(spec) {
  const id = `field-${spec.name}`;
  if (spec.kind === "enum") {
    const select = make("select", { id, name: spec.name });
    if (!spec.required && spec.default == null) select.append(make("option", { value: "", textContent: "none" }));
    for (const value of spec.options) {
      select.append(make("option", { value: String(value), textContent: String(value) }));
    }
    if (spec.default != null) select.value = String(spec.default);
    return select;
  }
  if (spec.kind === "boolean") {
    return make("input", { id, name: spec.name, type: "checkbox", checked: spec.default === true });
  }
  if (spec.kind === "integer" || spec.kind === "number") {
    const input = make("input", { id, name: spec.name, type: "number", step: spec.integer ? "1" : "any" });
    input.inputMode = spec.integer ? "numeric" : "decimal";
    if (spec.min !== undefined) input.min = String(spec.min);
    if (spec.max !== undefined && spec.max < Number.MAX_SAFE_INTEGER) input.max = String(spec.max);
    if (spec.default != null) input.value = String(spec.default);
    else input.placeholder = "default";
    return input;
  }
  if (spec.kind === "json") {
    const area = make("textarea", { id, name: spec.name, rows: 2, spellcheck: false });
    area.value = spec.default === undefined ? "" : JSON.stringify(spec.default);
    return area;
  }
  const text = spec.kind === "text"
    ? make("textarea", { id, name: spec.name, rows: spec.required ? 4 : 2 })
    : make("input", { id, name: spec.name, type: "text" });
  if (spec.maxLength) text.maxLength = spec.maxLength;
  // A required field's schema default is an example (RunComfy's prompt), not a value to send.
  if (spec.required) text.placeholder = spec.default || "";
  else if (spec.default != null) text.value = spec.default;
  return text;
}

function labelled(spec, el, extra = []) {
  const hintId = `${el.id}-hint`;
  const label = make("label", { htmlFor: el.id, textContent: spec.title + (spec.kind === "json" ? " (JSON)" : "") });
  const parts = spec.kind === "boolean" ? [make("span", { className: "check" }, [el, label])] : [label, el];
  if (spec.description) {
    el.setAttribute("aria-describedby", hintId);
    parts.push(make("p", { id: hintId, className: "hint", textContent: spec.description }));
  }
  if (spec.required) el.required = true;
  const wide = spec.kind === "text" || spec.kind === "json" || spec.required;
  return make("div", { className: `field${wide ? " wide" : ""}` }, [...parts, ...extra]);
}

// The image: a file (sent inline as a data: URI) or a URL, in the field the API names.
function imageField(spec) {
  const url = make("input", { id: `field-${spec.name}`, name: spec.name, type: "url", placeholder: "https://…" });
  const file = make("input", { id: "image-file", type: "file", accept: "image/*" });
  const preview = make("img", { id: "image-preview", alt: "The chosen image", hidden: true });
  const clear = make("button", { type: "button", className: "quiet", textContent: "Remove file", hidden: true });
  const drop = make("div", { className: "drop" }, [
    make("label", { htmlFor: file.id, textContent: "Upload an image (or drop it here)" }),
    file,
    clear,
  ]);
  preview.addEventListener("error", () => { preview.hidden = true; });
  const usePreview = (src) => {
    preview.src = src || "";
    preview.hidden = !src;
  };
  const choose = (chosen) => {
    if (!chosen) return;
    const reader = new FileReader();
    reader.onload = () => {
      uploaded = reader.result;
      usePreview(uploaded);
      clear.hidden = false;
      url.disabled = true;
    };
    reader.readAsDataURL(chosen);
  };
  file.addEventListener("change", () => choose(file.files[0]));
  clear.addEventListener("click", () => {
    uploaded = null;
    file.value = "";
    clear.hidden = true;
    url.disabled = false;
    usePreview(url.value.trim());
    file.focus();
  });
  url.addEventListener("change", () => usePreview(url.value.trim()));
  drop.addEventListener("dragover", (ev) => ev.preventDefault());
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    choose(ev.dataTransfer.files[0]);
  });
  const urlLabel = make("label", { htmlFor: url.id, textContent: "or its URL" });
  const box = make("fieldset", { className: "field wide image" }, [
    make("legend", { textContent: spec.title }),
    drop,
    urlLabel,
    url,
    preview,
  ]);
  if (spec.description) {
    url.setAttribute("aria-describedby", `${url.id}-hint`);
    box.append(make("p", { id: `${url.id}-hint`, className: "hint", textContent: spec.description }));
  }
  return { box, el: url };
}

function renderForm() {
  const model = models.find((m) => m.id === $("model").value);
  const holder = $("fields");
  holder.replaceChildren();
  fields = [];
  uploaded = null;
  if (!model) return;
  show($("model-hint"), model.description);
  const root = model.input_schema;
  const required = new Set(root.required || []);
  const options = make("div", { className: "grid" });
  for (const [name, prop] of Object.entries(root.properties || {})) {
    const spec = fieldSpec(name, prop, root, required.has(name));
    if (name === imageName(model)) {
      const { box, el } = imageField(spec);
      holder.prepend(box);
      fields.push({ spec, el });
      continue;
    }
    const el = control(spec);
    const extra = [];
    if (name === "seed") {
      const dice = make("button", { type: "button", className: "quiet", textContent: "Random seed" });
      dice.addEventListener("click", () => { el.value = String(Math.floor(Math.random() * 2 ** 31)); });
      extra.push(dice);
    }
    const box = labelled(spec, el, extra);
    (spec.required ? holder : options).append(box);
    fields.push({ spec, el });
  }
  if (options.childElementCount) {
    holder.append(make("fieldset", { className: "options" }, [make("legend", { textContent: "Options" }), options]));
  }
  sizeNote();
}

// The pixel size the chosen aspect ratio and resolution make, when the model lists its sizes.
function sizeNote() {
  const model = models.find((m) => m.id === $("model").value);
  const form = $("run-form");
  const size = (model?.sizes || []).find(
    (s) => s.aspect_ratio === form.elements.aspect_ratio?.value && s.resolution === form.elements.resolution?.value,
  );
  $("size-note").textContent = size ? `Output: ${size.width}×${size.height}` : "";
}

// The field that takes the image: models name it differently (image_url, image).
function imageName(model) {
  return model?.image_field || "image_url";
}

function readInput() {
  const input = {};
  const model = models.find((m) => m.id === $("model").value);
  for (const { spec, el } of fields) {
    let value;
    if (spec.name === imageName(model) && uploaded) value = uploaded;
    else if (spec.kind === "boolean") value = el.checked;
    else if (el.value.trim() === "") continue; // not sent: the server's default applies
    else if (spec.kind === "enum") value = spec.options.find((o) => String(o) === el.value);
    else if (spec.kind === "integer" || spec.kind === "number") {
      value = Number(el.value);
      // JavaScript numbers hold integers exactly only up to 2^53; a larger one would change.
      if (spec.integer && !Number.isSafeInteger(value)) {
        throw new Error(`${spec.title} must be a whole number below 2^53 when sent from this page`);
      }
    }
    else if (spec.kind === "json") {
      try {
        value = JSON.parse(el.value);
      } catch {
        throw new Error(`${spec.title} is not valid JSON`);
      }
    } else value = el.value;
    input[spec.name] = value;
  }
  return input;
}

async function loadModels() {
  show($("page-error"), "");
  if (!apiKey()) {
    show($("page-error"), "Enter your API key to load the models.");
    return;
  }
  try {
    const { body } = await api("v1/models");
    models = body.models || [];
  } catch (err) {
    show($("page-error"), `Could not load the models: ${err.message}`);
    return;
  }
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(...models.map((m) => make("option", { value: m.id, textContent: m.id })));
  if (models.some((m) => m.id === chosen)) select.value = chosen;
  renderForm();
}

async function submit(ev) {
  ev.preventDefault();
  show($("form-error"), "");
  if (!apiKey()) {
    show($("form-error"), "Enter your API key first.");
    $("api_key").focus();
    return;
  }
  let input;
  try {
    input = readInput();
  } catch (err) {
    show($("form-error"), err.message);
    return;
  }
  const model = $("model").value;
  const button = $("submit");
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    const path = model.split("/").map(encodeURIComponent).join("/");
    const { body } = await api(`v1/models/${path}`, { method: "POST", body: JSON.stringify(input) });
    const entry = {
      id: body.request_id,
      model,
      prompt: String(input.prompt || "").slice(0, 120),
      created: Date.now(),
      status: "in_queue",
      status_url: body.status_url,
      result_url: body.result_url,
      cancel_url: body.cancel_url,
    };
    remember(entry);
    openRun(entry);
    bringRunIntoView();
  } catch (err) {
    show($("form-error"), err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Generate";
  }
}

// ---------------------------------------------------------------- the run on show

// Stops following the request on show: its loops see the new view, its stream is closed.
function stopFollowing() {
  view++;
  stream?.abort();
  stream = null;
}

function openRun(entry) {
  stopFollowing();
  current = entry;
  const token = view;
  $("run-empty").hidden = true;
  $("run-body").hidden = false;
  $("run-id").textContent = entry.id;
  $("result").hidden = true;
  $("video").removeAttribute("src");
  $("video").load();
  show($("run-error"), "");
  setState(entry.status);
  $("run-status").textContent = "";
  $("run-progress").removeAttribute("value");
  renderHistory();
  follow(entry, token);
}

// On a phone the run is below the form, barely in sight (and the page may only grow tall enough
// to scroll it up once the video is there).
function bringRunIntoView() {
  const top = $("run").getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight / 2) $("run").scrollIntoView({ block: "start" });
}

function setState(status) {
  const badge = $("run-state");
  badge.textContent = STATE_LABELS[status] || status;
  badge.dataset.state = status;
  $("cancel").hidden = TERMINAL.has(status);
}

// The status stream shows each change as it happens; polling takes over when the server has no
// stream, the stream fails, or it ends before the request has.
async function follow(entry, token) {
  const last = await followStream(entry, token);
  if (token === view && !(last && TERMINAL.has(last.status))) await poll(entry, token);
}

// Shows a status; true once the request has ended (and its result, if any, is shown).
async function settle(entry, body, token) {
  show($("run-error"), "");
  renderStatus(entry, body);
  if (!TERMINAL.has(body.status)) return false;
  if (body.status === "completed") await showResult(entry, token);
  return true;
}

// GET .../status/stream through fetch(): EventSource cannot send the Authorization header.
// Returns the last status it showed, or null.
async function followStream(entry, token) {
  const controller = new AbortController();
  stream = controller;
  let last = null;
  try {
    const response = await fetch(onThisServer(`${entry.status_url}/stream`), {
      headers: { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (!response.ok) return null;
    for await (const { event, data } of serverEvents(response)) {
      if (token !== view) break;
      if (event !== "status") continue;
      last = JSON.parse(data);
      if (await settle(entry, last, token)) break;
    }
  } catch {
    // Broken off (or closed by stopFollowing): the caller decides whether to poll.
  } finally {
    controller.abort();
    if (stream === controller) stream = null;
  }
  return last;
}

async function poll(entry, token) {
  while (token === view) {
    let body;
    try {
      ({ body } = await api(entry.status_url));
    } catch (err) {
      if (token !== view) return;
      show($("run-error"), err.message);
      if (err.status === 401 || err.status === 404) return; // polling again cannot help
      await sleep(POLL_MS * 4);
      continue;
    }
    if (token !== view || (await settle(entry, body, token))) return;
    await sleep(POLL_MS);
  }
}

function renderStatus(entry, body) {
  update(entry.id, { status: body.status });
  setState(body.status);
  const bar = $("run-progress");
  let text = "";
  if (body.status === "in_queue") {
    const ahead = body.queue_position ?? 0;
    text = ahead === 0 ? "In queue: next to run." : `In queue: ${ahead} ahead of it.`;
    if (body.note) text += ` ${body.note}`;
    bar.removeAttribute("value"); // indeterminate: nothing to measure yet
  } else if (body.status === "in_progress") {
    const pct = Math.round((body.progress || 0) * 100);
    const phase = body.phase ? body.phase[0].toUpperCase() + body.phase.slice(1) : "Working";
    text = body.total_steps
      ? `${phase}: step ${body.step ?? 0} of ${body.total_steps} (${pct}%)`
      : `${phase} (${pct}%)`;
    if (body.cancel_requested) text = `Stopping at the next step… (${pct}%)`;
    bar.value = body.progress || 0;
  } else if (body.status === "completed") {
    text = "Done.";
    bar.value = 1;
  } else if (body.status === "failed") {
    text = "Failed.";
    bar.value = 0;
    show($("run-error"), errorMessage(body, 200));
  } else if (body.status === "cancelled") {
    text = "Cancelled: it will not run.";
    bar.value = 0;
  }
  $("run-status").textContent = text;
}

async function showResult(entry, token) {
  let body;
  try {
    ({ body } = await api(entry.result_url));
  } catch (err) {
    show($("run-error"), err.message);
    return;
  }
  if (token !== view) return;
  const meta = body.metadata || {};
  update(entry.id, { engine: meta.engine });
  $("result").hidden = false;
  $("preview-note").hidden = meta.engine !== "preview";
  const video = $("video");
  if (body.output && body.output.video) {
    video.poster = body.poster || "";
    // Its size is known now, so the page does not jump when the video loads.
    if (meta.width && meta.height) video.style.aspectRatio = `${meta.width} / ${meta.height}`;
    video.src = body.output.video;
    // Chromium does not autoplay a src set after load() emptied it; a muted play() is allowed.
    video.play().catch(() => {});
    bringRunIntoView();
    $("download").href = body.output.video;
    $("download").hidden = false;
  } else {
    video.removeAttribute("src");
    video.load();
    $("download").hidden = true;
    show($("run-error"), body.note || "This result has no video.");
  }
  const rows = [
    ["Engine", [meta.engine, meta.model].filter(Boolean).join(" · ")],
    ["Seed", meta.seed],
    ["Size", meta.width && `${meta.width}×${meta.height}`],
    ["Frames", meta.num_frames && `${meta.num_frames} at ${meta.fps} fps (${Number(meta.duration_s).toFixed(2)} s)`],
    ["Took", meta.generation_seconds != null && `${meta.generation_seconds} s`],
  ];
  $("meta").replaceChildren(
    ...rows
      .filter(([, value]) => value !== undefined && value !== null && value !== false && value !== "")
      .flatMap(([name, value]) => [make("dt", { textContent: name }), make("dd", { textContent: String(value) })]),
  );
}

async function cancel() {
  const entry = current;
  if (!entry) return;
  const url = entry.cancel_url || entry.status_url.replace(/status$/, "cancel");
  try {
    const { body } = await api(url, { method: "POST" });
    renderStatus(entry, body);
  } catch (err) {
    show($("run-error"), err.message);
    // 409: it had already finished; the error carries its state.
    if (err.body?.error?.request) renderStatus(entry, err.body.error.request);
  }
}

// ---------------------------------------------------------------- history, per key

// The server lists the key's requests (GET /v1/requests), whichever client made them; this
// browser keeps its own copy, which adds what the server does not say (prompt, model, engine).

// A short tag of the key names its history without writing the key into another storage slot.
function historyStore() {
  let h = 2166136261;
  for (const c of apiKey()) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  return `framecast.history.${h.toString(16)}`;
}

function readStore(name) {
  try {
    return JSON.parse(localStorage.getItem(name) || "[]");
  } catch {
    return [];
  }
}

const loadHistory = () => readStore(historyStore());
// Ids that Clear took off the list: the server still lists them.
const hiddenStore = () => `${historyStore()}.hidden`;

function saveHistory(list) {
  localStorage.setItem(historyStore(), JSON.stringify(list.slice(0, HISTORY_MAX)));
}

function clearHistory() {
  const hidden = [...loadHistory().map((e) => e.id), ...readStore(hiddenStore())];
  localStorage.setItem(hiddenStore(), JSON.stringify(hidden.slice(0, HISTORY_MAX * 10)));
  localStorage.removeItem(historyStore());
  renderHistory();
}

function remember(entry) {
  saveHistory([entry, ...loadHistory().filter((e) => e.id !== entry.id)]);
}

function update(id, changes) {
  const list = loadHistory();
  const entry = list.find((e) => e.id === id);
  if (!entry) return;
  const changed = Object.entries(changes).some(([k, v]) => v !== undefined && entry[k] !== v);
  if (!changed) return;
  Object.assign(entry, changes);
  saveHistory(list);
  renderHistory();
}

function renderHistory() {
  const hidden = new Set(readStore(hiddenStore()));
  const list = apiKey() ? loadHistory().filter((e) => !hidden.has(e.id)) : [];
  $("history-empty").hidden = list.length > 0;
  $("clear-history").hidden = list.length === 0;
  $("history").replaceChildren(
    ...list.map((entry) => {
      const badge = make("span", { className: "badge", textContent: STATE_LABELS[entry.status] || entry.status });
      badge.dataset.state = entry.status;
      const when = new Date(entry.created).toLocaleString();
      const tag = entry.engine === "preview" ? " · preview engine" : "";
      const button = make("button", { type: "button", className: "entry" }, [
        badge,
        make("span", { className: "prompt", textContent: entry.prompt || entry.id }),
        make("span", { className: "hint", textContent: `${when}${tag}` }),
      ]);
      if (current && current.id === entry.id) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => openRun(entry));
      return make("li", {}, [button]);
    }),
  );
}

// The server's list, merged into this browser's: new requests from other clients, fresh states.
async function refreshHistory() {
  if (!apiKey()) return;
  const store = historyStore();
  let listed;
  try {
    ({ body: { requests: listed } } = await api(`v1/requests?limit=${HISTORY_MAX}`));
  } catch {
    return; // this browser's list stands
  }
  if (store !== historyStore()) return; // the key changed meanwhile
  const local = new Map(loadHistory().map((e) => [e.id, e]));
  const merged = listed.map((body) => {
    const known = local.get(body.request_id) || {};
    local.delete(body.request_id);
    return {
      ...known,
      id: body.request_id,
      // A state seen here as final stays (the list may have been read just before it).
      status: TERMINAL.has(known.status) ? known.status : body.status,
      status_url: body.status_url,
      result_url: body.result_url,
      created: Date.parse(body.created_at) || known.created,
    };
  });
  // Ones the page did not list (older, or unknown to it) keep their place by date.
  const all = [...merged, ...local.values()].sort((a, b) => b.created - a.created);
  saveHistory(all);
  renderHistory();
}

// ---------------------------------------------------------------- the server's engines

// /readyz needs no key: it tells whether a worker is up and which engine it runs.

async function serverNote() {
  let body;
  try {
    body = await (await fetch("readyz")).json();
  } catch {
    return;
  }
  const workers = body.workers || [];
  let note = "";
  if (body.error) note = `No worker is ready: ${errorMessage(body, 503)}`;
  else if (workers.length && workers.every((w) => w.engine === "preview")) {
    note = "This server runs the preview engine: its videos are camera moves over your image, not HunyuanVideo output.";
  }
  show($("server-note"), note);
}

// ---------------------------------------------------------------- start

function keyChanged() {
  localStorage.setItem(KEY_STORE, apiKey());
  current = null;
  stopFollowing();
  $("run-body").hidden = true;
  $("run-empty").hidden = false;
  renderHistory();
  loadModels();
  refreshHistory();
}

document.addEventListener("DOMContentLoaded", () => {
  $("api_key").value = localStorage.getItem(KEY_STORE) || "";
  $("api_key").addEventListener("change", keyChanged);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    keyChanged();
  });
  $("show-key").addEventListener("click", () => {
    const input = $("api_key");
    const showing = input.type === "text";
    input.type = showing ? "password" : "text";
    $("show-key").setAttribute("aria-pressed", String(!showing));
    $("show-key").textContent = showing ? "Show" : "Hide";
  });
  $("model").addEventListener("change", renderForm);
  $("fields").addEventListener("change", sizeNote);
  $("run-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("clear-history").addEventListener("click", clearHistory);
  renderHistory();
  loadModels();
  refreshHistory();
  serverNote();
  setInterval(() => {
    refreshHistory();
    serverNote();
  }, 5000);
});
