// The result cards: thumbnail or waveform, folder and full file name, calibrated score and cosine,
// a link to the original file. Loaded before app.js, which owns the API helpers these call.
"use strict";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function splitPath(path) {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return { folder: path.slice(0, cut + 1), name: path.slice(cut + 1) };
}

/** Replace the cards (a new search), or add the next page's after them (`from` = their first rank). */
function renderHits(hits, from = 0) {
  const cards = hits.map((hit, i) => card(hit, from + i));
  if (from === 0) els.results.replaceChildren(...cards);
  else els.results.append(...cards);
  const shown = els.results.children.length;
  els.empty.hidden = shown > 0;
  els.empty.textContent = state.minScore !== null
    ? `No result scores ${state.minScore} or more: no good match. Lower the minimum score to see weaker ones.`
    : "No results. Is the index empty, or the filter too narrow?";
  hits.filter((h) => h.kind === "audio").forEach((hit) => drawWaveform(hit));
}

function card(hit, rank) {
  const li = el("li", `card card-${hit.kind}${hit.is_query ? " card-query" : ""}`);
  Object.assign(li.dataset, { id: hit.id, kind: hit.kind, path: hit.path, rank: rank + 1,
                              score: hit.score.toFixed(4), cosine: hit.cosine.toFixed(4) });
  if (hit.is_query) li.dataset.isQuery = "true";
  if (hit.start !== undefined) Object.assign(li.dataset, { start: hit.start, end: hit.end });
  li.style.setProperty("--delay", `${Math.min(rank % 50, 12) * 25}ms`);
  const { name } = splitPath(hit.path);
  const action = hit.kind === "image" ? `Find matches for photo ${name}` : `Find photos matching recording ${name}`;
  const button = el("button", "card-hit");
  Object.assign(button, { type: "button", title: action });
  button.setAttribute("aria-label", action);
  button.append(hit.kind === "image" ? thumbnail(hit, name) : waveformCanvas(hit));
  button.addEventListener("click", () => searchWithHit(hit, name));
  li.append(button, cardBody(hit));
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

function cardBody(hit) {
  const { folder, name } = splitPath(hit.path);
  const body = el("div", "card-body");
  if (hit.is_query) body.append(el("span", "query-badge", "your query"));
  const title = el("div", "card-title", name);
  title.title = hit.path;
  const where = el("div", "card-folder", folder);
  where.title = folder;
  body.append(title, where);
  if (hit.kind === "audio") body.append(player(hit, name), transcript(hit));
  body.append(meta(hit), openLink(hit, name));
  return body;
}

/** The player starts at the hit's moment: a media fragment (#t=start,end) seeks there and pauses at its end. */
function player(hit, name) {
  const audio = el("audio", "player");
  const moment = hit.start > 0 ? `#t=${hit.start},${hit.end}` : "";
  Object.assign(audio, { controls: true, preload: moment ? "metadata" : "none", src: tokenUrl(hit.media_url) + moment });
  audio.setAttribute("aria-label", moment ? `Play ${name} from ${clock(hit.start)}` : `Play ${name}`);
  if (moment) {  // a browser that ignores the fragment still starts at the moment
    audio.addEventListener("loadedmetadata", () => {
      if (audio.currentTime < hit.start - 0.25) audio.currentTime = hit.start;
    }, { once: true });
  }
  return audio;
}

/** mm:ss (h:mm:ss from an hour on), as the command line shows a moment. */
function clock(seconds) {
  const whole = Math.floor(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

function transcript(hit) {
  return hit.transcript ? el("q", "transcript", hit.transcript) : el("p", "transcript none", "No transcript");
}

/** The calibrated score (what ranks, comparable across kinds) and the raw cosine beside it. */
function meta(hit) {
  const row = el("div", "meta");
  const score = el("span", "score", hit.score.toFixed(2));
  score.title = "calibrated score: how far this stands above what the best unrelated file of its kind " +
                "reaches by chance (0); above 0 stands out";
  score.style.setProperty("--fill", `${Math.max(0, Math.min(1, (hit.score + 3) / 6)) * 100}%`);
  const cosine = el("span", "cosine", `cos ${hit.cosine.toFixed(3)}`);
  cosine.title = "raw cosine similarity of the embeddings (1 = identical)";
  const facts = hit.kind === "image" ? `${hit.width}×${hit.height}` : `${(hit.duration || 0).toFixed(1)} s`;
  row.append(score, cosine, el("span", "facts", facts));
  if (hit.kind === "audio" && hit.start > 0) row.append(el("span", "moment", `${clock(hit.start)}–${clock(hit.end)}`));
  return row;
}

function openLink(hit, name) {
  const link = el("a", "open-original", "Open original");
  Object.assign(link, { href: tokenUrl(hit.media_url), target: "_blank", rel: "noopener" });
  link.setAttribute("aria-label", `Open the original file ${name}`);
  return link;
}

// ---------------------------------------------------------------- waveforms

let decoder = null;

async function drawWaveform(hit) {
  const canvas = document.getElementById(`wave-${hit.id}`);
  try {
    const bytes = await (await mediaBlob(hit)).arrayBuffer();
    decoder ||= new OfflineAudioContext(1, 1, 44100);  // decodes without needing a user gesture
    const buffer = await decoder.decodeAudioData(bytes);
    paintWave(canvas, buffer.getChannelData(0), hit.start > 0 ? [hit.start / buffer.duration, hit.end / buffer.duration] : null);
  } catch {
    canvas?.classList.add("wave-failed");
  }
}

/** The waveform; `range` ([from, to] as fractions of the length) is the hit's moment, shaded behind it. */
function paintWave(canvas, samples, range = null) {
  if (!canvas?.isConnected) return;
  const ratio = window.devicePixelRatio || 1;
  const width = (canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio)));
  const height = (canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio)));
  const ctx = canvas.getContext("2d");
  if (range) {
    ctx.fillStyle = getComputedStyle(canvas).getPropertyValue("--moment").trim() || "rgba(255, 190, 60, 0.35)";
    ctx.fillRect(range[0] * width, 0, Math.max(ratio, (range[1] - range[0]) * width), height);
    Object.assign(canvas.dataset, { rangeFrom: range[0].toFixed(4), rangeTo: range[1].toFixed(4) });
  }
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
