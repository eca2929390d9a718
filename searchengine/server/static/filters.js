// The steering controls: folder, dates, file types and minimum score narrow the search; "More results"
// asks for the next page. Loaded before app.js, whose search() these call.
"use strict";

const PAGE_SIZE = Math.min(200, Math.max(1, Number(new URLSearchParams(location.search).get("k")) || 12));
const filterEls = {
  panel: document.getElementById("filters"), under: document.getElementById("filter-under"),
  since: document.getElementById("filter-since"), until: document.getElementById("filter-until"),
  types: document.getElementById("filter-types"), minScore: document.getElementById("filter-min-score"),
  count: document.getElementById("filter-count"), clear: document.getElementById("filter-clear"),
  more: document.getElementById("more"),
};

/** The controls' values as the API's form fields ([name, value] pairs; repeated names for lists). */
function filterFields() {
  const fields = [];
  const under = filterEls.under.value.trim();
  if (under) fields.push(["under", under]);
  if (filterEls.since.value) fields.push(["since", filterEls.since.value]);
  if (filterEls.until.value) fields.push(["until", filterEls.until.value]);
  filterEls.types.value.split(/[\s,;]+/).filter(Boolean).forEach((t) => fields.push(["type", t.replace(/^\./, "")]));
  if (minScore() !== null) fields.push(["min_score", String(minScore())]);
  return fields;
}

function minScore() {
  const raw = filterEls.minScore.value.trim();
  return raw === "" || Number.isNaN(Number(raw)) ? null : Number(raw);
}

/** How many controls narrow the search, shown on the closed panel so a forgotten filter is seen. */
function showFilterCount() {
  const active = new Set(filterFields().map(([name]) => name)).size;
  filterEls.count.textContent = active ? `${active} active` : "";
}

function wireFilters() {
  const rerun = () => {
    showFilterCount();
    if (state.lastQuery) search(state.lastQuery.query, state.lastQuery.label, state.lastQuery.kind);
  };
  [filterEls.under, filterEls.since, filterEls.until, filterEls.types, filterEls.minScore].forEach((input) => {
    input.addEventListener("change", rerun);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); input.blur(); }  // blur fires the change
    });
  });
  filterEls.clear.addEventListener("click", () => {
    [filterEls.under, filterEls.since, filterEls.until, filterEls.types, filterEls.minScore].forEach((i) => { i.value = ""; });
    rerun();
  });
  filterEls.more.addEventListener("click", () => {
    const last = state.lastQuery;
    if (last) search(last.query, last.label, last.kind, els.results.children.length);
  });
  showFilterCount();
}

/** Show the "More results" button when the server says another page follows. */
function showMore(more) {
  filterEls.more.hidden = !more;
}
