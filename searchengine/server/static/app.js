// The search page: record / drop / paste / type a query, post it to /api/search, show the hits.
// results.js draws the cards and filters.js reads the steering controls; this file runs last.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const MAX_RECORD_SECONDS = 60;
const KIND_LABELS = { image: "images", audio: "recordings", any: "images and recordings" };

const $ = (id) => document.getElementById(id);
const els = {
  record: $("record"), hint: $("record-hint"), levelBar: $("level-bar"), drop: $("drop-zone"),
  imageInput: $("image-input"), textForm: $("text-form"), textInput: $("text-input"), status: $("status"),
  indexStatus: $("index-status"), results: $("results"), empty: $("empty"), preview: $("query-preview"),
};
const state = { searches: 0, controller: null, lastQuery: null, mediaCache: new Map(), recording: null, minScore: null };

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

/** query: {text} or {field: "audio"|"image", blob, name}; label says what was searched.
 *  offset > 0 fetches the next page and adds its cards after the ones shown. */
async function search(query, label, kind = currentKind(), offset = 0) {
  state.controller?.abort();
  const controller = (state.controller = new AbortController());
  state.lastQuery = { query, label, kind: kind === currentKind() ? undefined : kind };
  state.minScore = minScore();
  setStatus(`Searching ${KIND_LABELS[kind]} for ${label}…`, "busy");
  document.body.classList.add("busy");
  try {
    const body = queryForm(query, kind, offset);
    const data = await (await api("/api/search", { method: "POST", body, signal: controller.signal })).json();
    if (!offset) showPreview(query, data.query_transcript);
    renderHits(data.hits, offset);
    showMore(data.more);
    setStatus(resultLine(els.results.children.length, label, data), "ok");
  } catch (err) {
    if (err.name === "AbortError") return;
    showMore(false);  // the next page of a search that failed is no page at all
    setStatus(`Search failed: ${err.message}`, "error");
  } finally {
    if (state.controller === controller) document.body.classList.remove("busy");
    els.results.dataset.searchCount = String(++state.searches);
  }
}

function queryForm(query, kind, offset) {
  const form = new FormData();
  if (query.text !== undefined) form.append("text", query.text);
  else form.append(query.field, query.blob, query.name);
  form.append("kind", kind);
  form.append("k", String(PAGE_SIZE));
  form.append("offset", String(offset));
  filterFields().forEach(([name, value]) => form.append(name, value));
  return form;
}

function resultLine(shown, label, data) {
  const more = data.more ? " More below." : "";
  const itself = data.query_paths ? " The query itself is in the index: marked “your query”." : "";
  return `${shown} ${shown === 1 ? "result" : "results"} for ${label}.${itself}${more}`;
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

// ---------------------------------------------------------------- results (cards: results.js)

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
wireFilters();
loadIndexStatus();
