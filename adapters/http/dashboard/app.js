// The dashboard of a mantis-py master (served by adapters/http/dashboard.py).
// One SSE stream (/api/v1/dashboard/stream) brings the state (clusters, jobs in Mantis' job
// view) on every change and a metrics sample per stage every few seconds; the output tail
// reads /jobconnectbyid/{jobId}; submit, kill and scale call the REST API with a JSON body
// and the API token (the master's security guard wants both, see adapters/http/security.py).
// Everything the master sends is put in the page as text (textContent), never as markup.

const TOKEN_KEY = "mantis-api-token";
const USER = "dashboard";
const SERIES_POINTS = 90;
const TAIL_LINES = 200;
const CHARTS = [
  { key: "eventsPerSec", title: "events/s" },
  { key: "drops", title: "drops" },
  { key: "cpuCores", title: "CPU cores", limit: "cpuLimit" },
];
const TERMINAL = new Set(["Completed", "Failed", "Terminating_abnormal", "Terminating_normal"]);

const $ = (id) => document.getElementById(id);
const state = { auth: false, clusters: [], jobs: [], selected: null };
const series = new Map(); // jobId -> Map(stage -> [sample])
let tail = null; // the output stream read: { jobId, mql, abort }, kept once it ended

// ------------------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function notice(text, kind = "info") {
  const p = $("notice");
  p.textContent = text;
  p.dataset.kind = kind;
  p.hidden = false;
}

function time(ms) {
  return ms > 0 ? new Date(ms).toLocaleTimeString() : "";
}

function jobState(job) {
  return job.jobMetadata.state;
}

// ------------------------------------------------------------------------------ dialogs

function ask(dialog, okValue = "ok") {
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === okValue), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function confirmAction(text) {
  $("confirm-text").textContent = text;
  return ask($("confirm"));
}

async function askToken() {
  const input = $("token-input");
  input.value = "";
  const given = await ask($("token-dialog"));
  if (given && input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

// ----------------------------------------------------------------------------- mutations

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || body.message || JSON.stringify(body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// Confirm, then send (with the token when the master wants one, asked for once per tab).
async function mutate(method, url, body, question, done) {
  if (state.auth && !sessionStorage.getItem(TOKEN_KEY) && !(await askToken())) return;
  if (!(await confirmAction(question))) return;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401 && attempt === 0) {
      sessionStorage.removeItem(TOKEN_KEY);
      if (await askToken()) continue;
    }
    if (response.ok) notice(done);
    else notice(`${question.replace(/\?$/, "")} failed: ${await errorText(response)}`, "error");
    return;
  }
}

function submitJob(cluster) {
  mutate(
    "POST",
    `/api/v1/jobClusters/${encodeURIComponent(cluster)}/jobs`,
    { name: cluster, user: USER },
    `Submit a new job of ${cluster}?`,
    `Submitted a job of ${cluster}`,
  );
}

function killJob(jobId) {
  const query = new URLSearchParams({ user: USER, reason: "killed from the dashboard" });
  mutate(
    "DELETE",
    `/api/v1/jobs/${encodeURIComponent(jobId)}?${query}`,
    undefined,
    `Kill ${jobId}?`,
    `Asked to kill ${jobId}`,
  );
}

function scaleStage(jobId, stage, workers) {
  mutate(
    "POST",
    `/api/v1/jobs/${encodeURIComponent(jobId)}/actions/scaleStage`,
    { JobId: jobId, StageNumber: stage, NumWorkers: workers, User: USER, Reason: "dashboard" },
    `Scale stage ${stage} of ${jobId} to ${workers} workers?`,
    `Scaled stage ${stage} of ${jobId} to ${workers}`,
  );
}

// --------------------------------------------------------------------------- rendering

// A list is rebuilt only when what it shows changed: an element under the pointer is not
// replaced by an equal one between a press and its release.
const shown = new Map();
function changed(id, what) {
  const key = JSON.stringify(what);
  if (shown.get(id) === key) return false;
  shown.set(id, key);
  return true;
}

function renderClusters() {
  if (!changed("clusters", state.clusters)) return;
  const list = $("clusters");
  list.replaceChildren(
    ...state.clusters.map((c) => {
      const submit = el("button", { type: "button", class: "submit", text: "Submit" });
      submit.disabled = c.disabled;
      submit.addEventListener("click", () => submitJob(c.name));
      const info = `${c.activeJobs} active${c.disabled ? ", disabled" : ""}`;
      return el(
        "li",
        { class: "cluster", "data-name": c.name },
        el("span", { class: "name", text: c.name }),
        el("span", { class: "muted", text: info }),
        submit,
      );
    }),
  );
  if (!state.clusters.length) list.append(el("li", { class: "muted", text: "no job clusters" }));
}

function renderJobs() {
  const rows = state.jobs.map((j) => [j.jobMetadata.jobId, jobState(j)]);
  if (!changed("jobs", [rows, state.selected])) return;
  const list = $("jobs");
  list.replaceChildren(
    ...state.jobs.map((job) => {
      const id = job.jobMetadata.jobId;
      const item = el(
        "li",
        { class: "job", "data-job-id": id, tabindex: "0" },
        el("span", { class: "name", text: id }),
        el("span", { class: "badge state", "data-state": jobState(job), text: jobState(job) }),
      );
      if (id === state.selected) item.setAttribute("aria-current", "true");
      item.addEventListener("click", () => select(id));
      item.addEventListener("keydown", (e) => e.key === "Enter" && select(id));
      return item;
    }),
  );
  if (!state.jobs.length) list.append(el("li", { class: "muted", text: "no jobs" }));
}

function stageSection(stage) {
  const section = el("section", { class: "stage", "data-stage": String(stage) });
  const to = el("input", { class: "scale-to", type: "number", min: "1", "aria-label": "workers" });
  const scale = el("button", { class: "scale", type: "button", text: "Scale" });
  scale.addEventListener("click", () => {
    const workers = Number(to.value);
    if (!Number.isInteger(workers) || workers < 1) {
      notice("Scale: give a whole number of workers, 1 or more", "error");
      return;
    }
    scaleStage(state.selected, stage, workers);
  });
  const charts = el("div", { class: "charts" });
  for (const chart of CHARTS) {
    const box = el("figure", { class: "chart", "data-metric": chart.key });
    box.append(
      svg("svg", { viewBox: "0 0 200 50", preserveAspectRatio: "none", role: "img" }),
      el("figcaption", {}, el("span", { text: chart.title }), el("span", { class: "value" })),
    );
    charts.append(box);
  }
  section.append(
    el(
      "div",
      { class: "stage-head" },
      el("h3", { text: `Stage ${stage}` }),
      el("span", { class: "count" }),
      el("span", { class: "scale-controls" }, to, scale),
    ),
    charts,
    el("div", { class: "table" }, el("table", { class: "workers" })),
    el("details", { class: "history" }, el("summary", { text: "Scaling history" }), el("ol")),
  );
  return section;
}

function renderStage(section, job, meta) {
  const workers = job.workerMetadataList.filter((w) => w.stageNum === meta.stageNum);
  const started = workers.filter((w) => w.state === "Started").length;
  section.querySelector(".count").textContent =
    `${meta.numWorkers} workers, ${started} started` + (meta.scalable ? " (scalable)" : "");
  const to = section.querySelector(".scale-to");
  if (!to.value) to.value = String(meta.numWorkers);
  // Mantis scales only a stage declared scalable, and only while its job runs
  section.querySelector(".scale-controls").hidden = !meta.scalable || TERMINAL.has(jobState(job));
  const table = section.querySelector("table.workers");
  table.replaceChildren(
    el(
      "tr",
      {},
      ...["index", "number", "state", "host", "started", "message"].map((h) =>
        el("th", { text: h }),
      ),
    ),
    ...workers.map((w) =>
      el(
        "tr",
        { class: "worker", "data-worker-number": String(w.workerNumber) },
        el("td", { text: String(w.workerIndex) }),
        el("td", { text: String(w.workerNumber) }),
        el("td", { class: "state", "data-state": w.state, text: w.state }),
        el("td", { text: w.slave || "" }),
        el("td", { text: time(w.startedAt) }),
        el("td", { class: "muted", text: w.message || w.pendingReason || "" }),
      ),
    ),
  );
  const scalings = meta.scalingHistory || [];
  section.querySelector(".history summary").textContent = `Scaling history (${scalings.length})`;
  section.querySelector(".history ol").replaceChildren(
    ...scalings
      .slice()
      .reverse()
      .map((h) =>
        el("li", {
          text: `${time(h.at)}: ${h.fromWorkers} → ${h.toWorkers} by ${h.user || "?"}: ${h.reason}`,
        }),
      ),
  );
}

function renderJob() {
  const job = state.jobs.find((j) => j.jobMetadata.jobId === state.selected);
  const article = $("job");
  if (!job) {
    article.hidden = true;
    stopTail();
    return;
  }
  article.hidden = false;
  const meta = job.jobMetadata;
  article.dataset.jobId = meta.jobId;
  $("job-id").textContent = meta.jobId;
  $("job-state").textContent = meta.state;
  $("job-state").dataset.state = meta.state;
  $("job-message").textContent = meta.message || "";
  $("kill").hidden = TERMINAL.has(meta.state);
  const stages = $("stages");
  if (stages.dataset.jobId !== meta.jobId) {
    stages.replaceChildren();
    stages.dataset.jobId = meta.jobId;
  }
  for (const stage of job.stageMetadataList) {
    let section = stages.querySelector(`section.stage[data-stage="${stage.stageNum}"]`);
    if (!section) {
      section = stageSection(stage.stageNum);
      stages.append(section);
    }
    renderStage(section, job, stage);
  }
  renderCharts();
  if (TERMINAL.has(meta.state)) stopTail();
  else if (!tail || tail.jobId !== meta.jobId) startTail(meta.jobId, $("mql").value.trim());
}

function renderCharts() {
  const stages = series.get(state.selected);
  for (const section of document.querySelectorAll("#stages section.stage")) {
    const samples = (stages && stages.get(section.dataset.stage)) || [];
    for (const chart of CHARTS) {
      const figure = section.querySelector(`figure[data-metric="${chart.key}"]`);
      drawChart(figure, samples, chart);
    }
  }
}

function drawChart(figure, samples, chart) {
  const box = figure.querySelector("svg");
  const values = samples.map((s) => s[chart.key]);
  const limits = chart.limit ? samples.map((s) => s[chart.limit]) : [];
  const top = Math.max(1e-9, ...values, ...limits) * 1.1;
  const line = (points, cls) => {
    const step = 200 / Math.max(1, SERIES_POINTS - 1);
    const start = 200 - step * (points.length - 1);
    const coords = points.map((v, i) => `${(start + i * step).toFixed(1)},${(50 - (v / top) * 48).toFixed(1)}`);
    return svg("polyline", { points: coords.join(" "), class: cls });
  };
  box.replaceChildren();
  if (limits.length) box.append(line(limits, "limit"));
  if (values.length) box.append(line(values, "series"));
  const last = values.length ? values[values.length - 1] : null;
  const shown = last === null ? "–" : Number(last.toFixed(2)).toLocaleString();
  figure.querySelector(".value").textContent = chart.limit && limits.length
    ? `${shown} / ${limits[limits.length - 1]}`
    : shown;
}

function render() {
  $("token-button").hidden = !state.auth;
  renderClusters();
  renderJobs();
  renderJob();
}

function select(jobId) {
  if (state.selected === jobId) return;
  state.selected = jobId;
  history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
  $("tail").replaceChildren();
  $("tail-error").hidden = true;
  stopTail();
  render();
}

// --------------------------------------------------------------------------- the streams

function onState(message) {
  state.auth = message.auth;
  state.clusters = message.clusters;
  state.jobs = message.jobs;
  if (!state.selected || !state.jobs.some((j) => j.jobMetadata.jobId === state.selected)) {
    const wanted = new URLSearchParams(location.hash.slice(1)).get("job");
    const first = state.jobs.find((j) => !TERMINAL.has(jobState(j))) || state.jobs[0];
    state.selected = state.jobs.some((j) => j.jobMetadata.jobId === wanted)
      ? wanted
      : first && first.jobMetadata.jobId;
  }
  render();
}

function onMetrics(message) {
  for (const [jobId, stages] of Object.entries(message.jobs)) {
    if (!series.has(jobId)) series.set(jobId, new Map());
    const byStage = series.get(jobId);
    for (const [stage, sums] of Object.entries(stages)) {
      if (!byStage.has(stage)) byStage.set(stage, []);
      const points = byStage.get(stage);
      points.push({ at: message.at, ...sums });
      if (points.length > SERIES_POINTS) points.shift();
    }
  }
  for (const jobId of series.keys()) if (!(jobId in message.jobs)) series.delete(jobId);
  renderCharts();
}

function connect() {
  const source = new EventSource("/api/v1/dashboard/stream");
  const conn = $("conn");
  source.addEventListener("open", () => {
    conn.textContent = "live";
    conn.dataset.state = "live";
  });
  source.addEventListener("error", () => {
    conn.textContent = "reconnecting…";
    conn.dataset.state = "down";
  });
  source.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "state") onState(message);
    else if (message.type === "metrics") onMetrics(message);
  });
}

function stopTail() {
  if (tail) tail.abort.abort();
  tail = null;
}

function addLines(lines) {
  const list = $("tail");
  for (const line of lines) list.append(el("li", { text: line }));
  while (list.childElementCount > TAIL_LINES) list.firstElementChild.remove();
}

// The job's output as SSE over fetch (not EventSource): a bad MQL query's 400 has a body
// that names the error, which EventSource would not show.
async function startTail(jobId, mql) {
  stopTail();
  const abort = new AbortController();
  tail = { jobId, mql, abort };
  const errorBox = $("tail-error");
  errorBox.hidden = true;
  const query = mql ? `?${new URLSearchParams({ mql })}` : "";
  try {
    const response = await fetch(`/jobconnectbyid/${encodeURIComponent(jobId)}${query}`, {
      signal: abort.signal,
      headers: { Accept: "text/event-stream" },
    });
    if (!response.ok) {
      errorBox.textContent = await errorText(response);
      errorBox.hidden = false;
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      const events = buffer.split("\n\n");
      buffer = events.pop();
      const lines = [];
      for (const event of events) {
        const data = event
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data && data !== "ping") lines.push(data);
      }
      if (lines.length) addLines(lines);
    }
  } catch (error) {
    if (error.name !== "AbortError") {
      errorBox.textContent = `output stream: ${error.message}`;
      errorBox.hidden = false;
    }
  }
}

// ----------------------------------------------------------------------------- wiring

$("kill").addEventListener("click", () => killJob(state.selected));
$("token-button").addEventListener("click", () => askToken());
$("filter").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!state.selected) return;
  $("tail").replaceChildren();
  startTail(state.selected, $("mql").value.trim());
});
connect();
