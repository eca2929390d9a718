// The search page: record / drop / paste / type a query, post it to /api/search, show the hits.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const K = 12;
const MAX_RECORD_SECONDS = 60;
const KIND_LABELS = { image: "images", audio: "recordings", any: "images and recordings" };

const $ = (id) => document.getElementById(id);
const els = {
  record: $("record"), hint: $("record-hint"), levelBar: $("level-bar"), drop: $("drop-zone"),
  imageInput: $("image-input"), textForm: $("text-form"), textInput: $("text-input"), status: $("status"),
  indexStatus: $("index-status"), results: $("results"), empty: $("empty"), preview: $("query-preview"),
};
const state = { searches: 0, controller: null, lastQuery: null, mediaCache: new Map(), recording: null };

// ---------------------------------------------------------------- API access

/** Adds ?token= for URLs the browser loads itself (<img>, <audio>), which cannot send headers. */
function tokenUrl(url) {
  if (!TOKEN) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("token", TOKEN);
  return u.pathname + u.search;
}

async function api(path, options = {}) {
  const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
  const resp = await fetch(path, { ...options, headers });
  if (resp.ok) return resp;
  let message = `${resp.status} ${resp.statusText}`;
  try { message = (await resp.json()).error || message; } catch { /* not JSON: keep the status line */ }
  throw new Error(message);
}

async function mediaBlob(hit) {
  if (!state.mediaCache.has(hit.id)) {
    state.mediaCache.set(hit.id, api(hit.media_url).then((r) => r.blob()));
  }
  try { return await state.mediaCache.get(hit.id); } catch (err) { state.mediaCache.delete(hit.id); throw err; }
}

// ---------------------------------------------------------------- status line

function setStatus(message, tone = "info") {
  els.status.textContent = message;
  els.status.dataset.tone = tone;
}

async function loadIndexStatus() {
  try {
    const s = await (await api("/api/status")).json();
    const files = s.files || {};
    const bundle = s.bundle ? ` · model ${s.bundle.name}` : "";
    els.indexStatus.textContent = `${files.image || 0} photos · ${files.audio || 0} recordings${bundle}`;
  } catch (err) {
    els.indexStatus.textContent = `Index unavailable: ${err.message}`;
    els.indexStatus.dataset.tone = "error";
  }
}

// ---------------------------------------------------------------- searching

function currentKind() {
  return document.querySelector('input[name="kind"]:checked').value;
}

/** query: {text} or {field: "audio"|"image", blob, name}; label says what was searched. */
async function search(query, label, kind = currentKind()) {
  state.controller?.abort();
  const controller = (state.controller = new AbortController());
  state.lastQuery = { query, label };
  setStatus(`Searching ${KIND_LABELS[kind]} for ${label}…`, "busy");
  document.body.classList.add("busy");
  try {
    const resp = await api("/api/search", { method: "POST", body: queryForm(query, kind), signal: controller.signal });
    const data = await resp.json();
    showPreview(query, data.query_transcript);
    renderHits(data.hits);
    setStatus(`${data.hits.length} ${data.hits.length === 1 ? "result" : "results"} for ${label}.`, "ok");
  } catch (err) {
    if (err.name === "AbortError") return;
    setStatus(`Search failed: ${err.message}`, "error");
  } finally {
    if (state.controller === controller) document.body.classList.remove("busy");
    els.results.dataset.searchCount = String(++state.searches);
  }
}

function queryForm(query, kind) {
  const form = new FormData();
  if (query.text !== undefined) form.append("text", query.text);
  else form.append(query.field, query.blob, query.name);
  form.append("kind", kind);
  form.append("k", String(K));
  return form;
}

function showPreview(query, transcript) {
  els.preview.replaceChildren();
  const title = el("span", "preview-label", "Query");
  if (query.text !== undefined) {
    els.preview.append(title, el("q", "preview-text", query.text));
  } else if (query.field === "image") {
    const img = el("img", "preview-image");
    img.src = URL.createObjectURL(query.blob);
    img.alt = "the query image";
    els.preview.append(title, img);
  } else {
    const audio = el("audio", "preview-audio");
    audio.controls = true;
    audio.src = URL.createObjectURL(query.blob);
    els.preview.append(title, audio);
  }
  if (transcript) els.preview.append(el("q", "preview-text", transcript));
}

// ---------------------------------------------------------------- results

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function basename(path) {
  return path.split(/[\\/]/).pop();
}

function renderHits(hits) {
  els.results.replaceChildren(...hits.map((hit, rank) => card(hit, rank)));
  els.empty.hidden = hits.length > 0;
  els.empty.textContent = "No results. Is the index empty, or the filter too narrow?";
  hits.filter((h) => h.kind === "audio").forEach((hit) => drawWaveform(hit));
}

function card(hit, rank) {
  const li = el("li", `card card-${hit.kind}`);
  Object.assign(li.dataset, { id: hit.id, kind: hit.kind, path: hit.path, score: hit.score.toFixed(4) });
  li.style.setProperty("--delay", `${Math.min(rank, 12) * 25}ms`);
  const name = basename(hit.path);
  const action = hit.kind === "image" ? `Find matches for photo ${name}` : `Find photos matching recording ${name}`;
  const button = el("button", "card-hit");
  Object.assign(button, { type: "button", title: action });
  button.setAttribute("aria-label", action);
  button.append(hit.kind === "image" ? thumbnail(hit, name) : waveformCanvas(hit));
  button.addEventListener("click", () => searchWithHit(hit, name));
  li.append(button, cardBody(hit, name));
  return li;
}

function thumbnail(hit, name) {
  const img = el("img", "thumb");
  Object.assign(img, { src: tokenUrl(hit.thumb_url), alt: name, loading: "lazy", decoding: "async" });
  return img;
}

function waveformCanvas(hit) {
  const canvas = el("canvas", "wave");
  canvas.id = `wave-${hit.id}`;
  canvas.setAttribute("aria-hidden", "true");
  return canvas;
}

function cardBody(hit, name) {
  const body = el("div", "card-body");
  const title = el("div", "card-title", name);
  title.title = hit.path;
  body.append(title);
  if (hit.kind === "audio") body.append(player(hit, name), transcript(hit));
  body.append(meta(hit));
  return body;
}

function player(hit, name) {
  const audio = el("audio", "player");
  Object.assign(audio, { controls: true, preload: "none", src: tokenUrl(hit.media_url) });
  audio.setAttribute("aria-label", `Play ${name}`);
  return audio;
}

function transcript(hit) {
  return hit.transcript ? el("q", "transcript", hit.transcript) : el("p", "transcript none", "No transcript");
}

function meta(hit) {
  const row = el("div", "meta");
  const score = el("span", "score", hit.score.toFixed(3));
  score.title = "similarity to the query (1 = identical)";
  score.style.setProperty("--fill", `${Math.max(0, Math.min(1, hit.score)) * 100}%`);
  const facts = hit.kind === "image" ? `${hit.width}×${hit.height}` : `${(hit.duration || 0).toFixed(1)} s`;
  row.append(score, el("span", "facts", facts));
  return row;
}

async function searchWithHit(hit, name) {
  setStatus(`Fetching ${name}…`, "busy");
  let blob;
  try { blob = await mediaBlob(hit); } catch (err) { return setStatus(`Could not fetch ${name}: ${err.message}`, "error"); }
  const query = { field: hit.kind, blob, name };
  if (hit.kind === "image") return search(query, `photo ${name}`);
  // A recording asks for the photos it describes, unless only recordings are wanted.
  const kind = currentKind() === "audio" ? "audio" : "image";
  return search(query, `recording ${name}`, kind);
}

// ---------------------------------------------------------------- waveforms

let decoder = null;

async function drawWaveform(hit) {
  const canvas = document.getElementById(`wave-${hit.id}`);
  try {
    const bytes = await (await mediaBlob(hit)).arrayBuffer();
    decoder ||= new OfflineAudioContext(1, 1, 44100);  // decodes without needing a user gesture
    const buffer = await decoder.decodeAudioData(bytes);
    paintWave(canvas, buffer.getChannelData(0));
  } catch {
    canvas?.classList.add("wave-failed");
  }
}

function paintWave(canvas, samples) {
  if (!canvas?.isConnected) return;
  const ratio = window.devicePixelRatio || 1;
  const width = (canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio)));
  const height = (canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio)));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = getComputedStyle(canvas).color;
  const peaks = columnPeaks(samples, Math.floor(width / (3 * ratio)));
  const step = width / peaks.length;
  peaks.forEach((peak, i) => {
    const h = Math.max(ratio, peak * height * 0.92);
    ctx.fillRect(i * step, (height - h) / 2, Math.max(ratio, step - ratio), h);
  });
  canvas.dataset.drawn = "true";
}

/** The loudest sample in each of `columns` slices, scaled so the loudest slice fills the height. */
function columnPeaks(samples, columns) {
  const size = Math.max(1, Math.floor(samples.length / Math.max(1, columns)));
  const peaks = [];
  for (let start = 0; start + size <= samples.length; start += size) {
    let peak = 0;
    for (let i = start; i < start + size; i++) peak = Math.max(peak, Math.abs(samples[i]));
    peaks.push(peak);
  }
  const top = Math.max(...peaks, 1e-6);
  return peaks.map((p) => p / top);
}

// ---------------------------------------------------------------- recording

async function toggleRecording() {
  if (state.recording) return stopRecording();
  if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
    return setStatus("This browser cannot record here (it needs https:// or localhost, and MediaRecorder).", "error");
  }
  let stream;
  try {
    // Raw sound: the processing made for calls distorts the voice the speech encoder hears.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    return setStatus(`Microphone unavailable: ${err.message}`, "error");
  }
  startRecording(stream);
}

function startRecording(stream) {
  const mimeType = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
  const rec = { recorder, stream, chunks: [], started: performance.now(), meter: startMeter(stream) };
  recorder.ondataavailable = (e) => e.data.size && rec.chunks.push(e.data);
  recorder.onstop = () => finishRecording(rec);
  recorder.start();
  rec.timer = setInterval(() => tickRecording(rec), 200);
  state.recording = rec;
  setRecordingUi(true);
  setStatus("Recording… press the button again to search.", "recording");
}

function tickRecording(rec) {
  const seconds = (performance.now() - rec.started) / 1000;
  els.hint.textContent = `Recording ${seconds.toFixed(1)} s — press to stop and search.`;
  if (seconds >= MAX_RECORD_SECONDS) stopRecording();
}

function stopRecording() {
  const rec = state.recording;
  state.recording = null;
  clearInterval(rec.timer);
  rec.seconds = (performance.now() - rec.started) / 1000;
  rec.recorder.stop();
  rec.stream.getTracks().forEach((t) => t.stop());
  rec.meter();
  setRecordingUi(false);
}

function setRecordingUi(on) {
  els.record.classList.toggle("recording", on);
  els.record.setAttribute("aria-pressed", String(on));
  els.record.setAttribute("aria-label", on ? "Stop recording and search" : "Record a voice query");
  if (!on) els.hint.textContent = "Press to record, press again to search.";
}

async function finishRecording(rec) {
  const blob = new Blob(rec.chunks, { type: rec.recorder.mimeType || "audio/webm" });
  const peak = await peakLevel(blob);
  // Exposed for tests and curious people: the size and loudness of what gets uploaded.
  Object.assign(document.body.dataset, { lastUploadBytes: blob.size, lastUploadType: blob.type, lastPeak: peak.toFixed(4) });
  if (!blob.size || (peak >= 0 && peak < 0.001)) {
    return setStatus("The recording is silent — check that the right microphone is selected.", "error");
  }
  const ext = blob.type.includes("ogg") ? "ogg" : blob.type.includes("mp4") ? "m4a" : "webm";
  search({ field: "audio", blob, name: `recording.${ext}` }, `your ${rec.seconds.toFixed(1)} s recording`);
}

async function peakLevel(blob) {
  try {
    decoder ||= new OfflineAudioContext(1, 1, 44100);
    const buffer = await decoder.decodeAudioData(await blob.arrayBuffer());
    return buffer.getChannelData(0).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  } catch {
    return -1;  // unknown (undecodable here): let the server judge it
  }
}

/** A live input level on the bar under the button; returns a function that stops it. */
function startMeter(stream) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let frame = requestAnimationFrame(function draw() {
    analyser.getFloatTimeDomainData(data);
    const peak = data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    els.levelBar.style.transform = `scaleX(${Math.min(1, peak * 1.5)})`;
    frame = requestAnimationFrame(draw);
  });
  return () => { cancelAnimationFrame(frame); els.levelBar.style.transform = "scaleX(0)"; ctx.close(); };
}

// ---------------------------------------------------------------- image and text input

function searchImageFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) return setStatus(`${file.name || "That file"} is not an image.`, "error");
  search({ field: "image", blob: file, name: file.name || "pasted-image.png" }, `photo ${file.name || "(pasted)"}`);
}

function wireImageInput() {
  els.imageInput.addEventListener("change", () => {
    searchImageFile(els.imageInput.files[0]);
    els.imageInput.value = "";  // choosing the same file again still searches
  });
  ["dragenter", "dragover"].forEach((type) => els.drop.addEventListener(type, (e) => {
    e.preventDefault();
    els.drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => els.drop.addEventListener(type, () => els.drop.classList.remove("dragging")));
  els.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    searchImageFile(e.dataTransfer.files[0]);
  });
}

function wirePaste() {
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;  // ordinary text pastes go to the text box untouched
    e.preventDefault();
    searchImageFile(item.getAsFile());
  });
}

function wireTextInput() {
  els.textForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = els.textInput.value.trim();
    if (!text) return setStatus("Type what you are looking for first.", "error");
    search({ text }, `“${text}”`);
  });
}

function wireKindSwitch() {
  document.querySelectorAll('input[name="kind"]').forEach((radio) => radio.addEventListener("change", () => {
    if (state.lastQuery) search(state.lastQuery.query, state.lastQuery.label);
  }));
}

els.record.addEventListener("click", toggleRecording);
wireImageInput();
wirePaste();
wireTextInput();
wireKindSwitch();
loadIndexStatus();
