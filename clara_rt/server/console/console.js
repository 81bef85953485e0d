// clara-rt console: live job states (/v1/events), cancel, operator logs, metrics charts and the
// viewer's controls. Plain JavaScript, no libraries; every page works without it (read-only).
"use strict";

(() => {
  const body = document.body;
  const TOKEN_KEY = "clara-rt-token";
  const SVG = "http://www.w3.org/2000/svg";
  const GIB = 1024 ** 3;

  // --- small helpers -----------------------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const pad = (n) => String(n).padStart(2, "0");

  // <time data-ts> elements show the browser's local time (the server wrote its own).
  function localTime(t) {
    const d = new Date(parseFloat(t.dataset.ts) * 1000);
    t.textContent = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    t.dateTime = t.title = d.toISOString();
  }

  const localTimes = (root) => $$("time[data-ts]", root).forEach(localTime);

  function timeElement(ts) {
    if (ts === null || ts === undefined) return document.createTextNode("\u2013");
    const t = document.createElement("time");
    t.dataset.ts = String(ts);
    localTime(t);
    return t;
  }

  function badge(value) {
    const span = document.createElement("span");
    span.className = "badge b-" + String(value).replace(/[^A-Za-z0-9]/g, "-");
    span.textContent = value;
    return span;
  }

  function setBadge(cell, value) {
    if (!cell || cell.textContent === value) return false;
    cell.replaceChildren(badge(value));
    return true;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "\u2013";
    if (seconds < 60) return seconds < 10 ? `${seconds.toFixed(2)} s` : `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(Math.round(seconds) / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds) % 60} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  // --- token for writes (asked once, kept in localStorage) ---------------------------------

  function savedToken(ask) {
    let token = localStorage.getItem(TOKEN_KEY);
    if (!token && ask) {
      token = window.prompt("This server needs its access token for changes " +
                            "(clara-rt serve --token-file or CLARA_RT_TOKEN). Token:");
      token = token ? token.trim() : "";
      if (token) localStorage.setItem(TOKEN_KEY, token);
    }
    return token || null;
  }

  // POST with the bearer token when the server needs one; asks again once after a 401.
  async function post(url) {
    if (body.dataset.token !== "required") return fetch(url, { method: "POST" });
    let response = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      const token = savedToken(true);
      if (!token) return response;
      response = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
      if (response.status !== 401) return response;
      localStorage.removeItem(TOKEN_KEY);
    }
    return response;
  }

  const forget = $("#forget-token");
  if (forget) {
    forget.addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      forget.textContent = "token forgotten";
    });
  }

  // --- live job events ---------------------------------------------------------------------

  function onJobEvents(handler) {
    if (!window.EventSource) return;
    const source = new EventSource("/v1/events");
    const indicator = $("#live");
    source.addEventListener("open", () => { if (indicator) indicator.hidden = false; });
    source.addEventListener("error", () => { if (indicator) indicator.hidden = true; });
    source.addEventListener("job", (event) => {
      let job;
      try { job = JSON.parse(event.data); } catch (err) { return; }
      handler(job);
    });
    window.addEventListener("pagehide", () => source.close());
  }

  function matchesFilters(job) {
    if (body.dataset.pipeline) return job.pipeline_id === body.dataset.pipeline;
    const params = new URLSearchParams(location.search);
    if (params.get("before")) return false;  // an older page: new jobs belong on the first
    for (const key of ["state", "status", "priority"]) {
      const want = params.get(key);
      if (want && job[key] !== want) return false;
    }
    const pipeline = params.get("pipeline");
    return !pipeline || pipeline === job.pipeline || pipeline === job.pipeline_id;
  }

  function jobTables() {
    onJobEvents((job) => {
      const row = $(`tr[data-job="${CSS.escape(job.id)}"]`);
      if (!row) {
        const notice = $("#new-jobs");
        if (notice && matchesFilters(job)) notice.hidden = false;
        return;
      }
      const changed = setBadge($("td.state", row), job.state) |
                      setBadge($("td.status", row), job.status);
      if (job.started) {
        const end = job.stopped || Date.now() / 1000;
        $("td.ran", row).textContent = duration(end - job.started);
      }
      if (changed) {
        row.classList.remove("flash");
        void row.offsetWidth;  // restart the animation
        row.classList.add("flash");
      }
    });
  }

  // The pipelines page: a job event re-reads the page (at most twice a second) and swaps in its
  // table, so the queued / running / finished counts and the last job follow without a reload.
  function pipelinesPage() {
    let timer = null;
    async function reload() {
      timer = null;
      try {
        const response = await fetch(location.pathname + location.search);
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = $("table.pipelines", doc), old = $("table.pipelines");
        if (!fresh || !old) return;
        localTimes(fresh);
        old.replaceWith(document.importNode(fresh, true));
      } catch (err) { /* the next event tries again */ }
    }
    onJobEvents(() => { if (timer === null) timer = setTimeout(reload, 500); });
  }

  // --- job page ------------------------------------------------------------------------------

  function jobPage() {
    const id = body.dataset.job;
    const facts = $("#job-facts");
    const cancel = $("#cancel");
    const message = $("#action-message");
    let state = body.dataset.jobState;
    // Records arrive from two sources (the event stream, the cancel answer) in any order: each
    // change of state adds a history entry, so a record with fewer entries is an older one.
    let version = Number(body.dataset.jobVersion || 0);
    let refreshing = null;
    let again = false;

    const say = (text, bad) => {
      message.textContent = text;
      message.className = bad ? "error" : "muted";
    };

    async function refresh() {
      if (refreshing) { again = true; return; }
      refreshing = (async () => {
        try {
          const response = await fetch(`/console/jobs/${encodeURIComponent(id)}/live`);
          if (!response.ok) return;
          const target = $("#live-parts");
          const open = $("details.graph-details", target)?.open;
          target.innerHTML = await response.text();
          const details = $("details.graph-details", target);
          if (details && open !== undefined) details.open = open;
          localTimes(target);
          const viewerLink = $("#open-viewer");
          if (viewerLink) viewerLink.hidden = !$("table.results", target);
        } catch (err) { /* the next event retries */ }
      })();
      await refreshing;
      refreshing = null;
      if (again) { again = false; refresh(); }
    }

    function apply(job) {
      const seen = Array.isArray(job.history) ? job.history.length : version;
      if (seen < version) return;
      version = seen;
      setBadge($("dd.state", facts), job.state);
      setBadge($("dd.status", facts), job.status);
      $("dd.started", facts).replaceChildren(timeElement(job.started));
      $("dd.stopped", facts).replaceChildren(timeElement(job.stopped));
      if (job.started) {
        $("dd.ran", facts).textContent = duration((job.stopped || Date.now() / 1000) - job.started);
      }
      const error = $("dd.error", facts);
      if (job.error) {
        const span = document.createElement("span");
        span.className = "error";
        span.textContent = job.error;
        error.replaceChildren(span);
      }
      if (cancel) cancel.hidden = job.state === "stopped";
      body.dataset.jobState = state = job.state;
      refresh();
    }

    onJobEvents((job) => { if (job.id === id) apply(job); });
    // Operators of a running job advance between events: redraw their bars now and then.
    setInterval(() => { if (state === "running" && !document.hidden) refresh(); }, 2000);

    if (cancel) {
      cancel.addEventListener("click", async () => {
        if (!window.confirm("Cancel this job?")) return;
        cancel.disabled = true;
        say("Cancelling\u2026");
        try {
          const response = await post(`/v1/jobs/${encodeURIComponent(id)}/cancel`);
          if (!response) {
            say("Not cancelled: this server needs a token.", true);
          } else if (response.ok) {
            apply(await response.json());
            say("Cancel requested.");
          } else {
            const detail = (await response.json().catch(() => ({}))).detail;
            say(`Not cancelled (${response.status}): ${detail || response.statusText}`, true);
          }
        } catch (err) {
          say(`Not cancelled: ${err}`, true);
        } finally {
          cancel.disabled = false;
        }
      });
    }

    for (const button of $$("button.show-log")) {
      button.addEventListener("click", async () => {
        const pre = $("pre.log-text", button.parentElement);
        const open = button.getAttribute("aria-expanded") === "true";
        button.setAttribute("aria-expanded", String(!open));
        if (open) { pre.hidden = true; return; }
        pre.hidden = false;
        pre.textContent = "Loading\u2026";
        const op = encodeURIComponent(button.dataset.op);
        try {
          const response = await fetch(`/v1/jobs/${encodeURIComponent(id)}/logs/${op}`);
          const text = await response.text();
          pre.textContent = response.ok ? (text || "(nothing logged yet)")
                                        : `could not load the log (${response.status}): ${text}`;
        } catch (err) {
          pre.textContent = `could not load the log: ${err}`;
        }
      });
    }
  }

  // --- metrics page ------------------------------------------------------------------------

  function metricsPage() {
    const status = $("#monitor-status");
    const box = $("#monitor");
    const show = (text) => { status.textContent = text; status.hidden = false; };

    async function tick() {
      let delay = 3000;
      try {
        const response = await fetch("/v1/monitor", { cache: "no-store" });
        if (response.status === 404) {
          show("Monitoring not available: this server does not offer /v1/monitor.");
          status.className = "notice";
          box.hidden = true;
          delay = 15000;
        } else if (!response.ok) {
          show(`Monitoring not available: /v1/monitor answered ${response.status}.`);
          delay = 6000;
        } else {
          drawMetrics(await response.json());
          status.hidden = true;
          box.hidden = false;
        }
      } catch (err) {
        show(`Monitoring not available: ${err}`);
        delay = 6000;
      }
      setTimeout(tick, delay);
    }
    tick();
  }

  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const fixed = (v, digits, unit) => (num(v) === null ? "\u2013" : `${v.toFixed(digits)}${unit}`);
  const gib = (v) => (num(v) === null ? null : v / GIB);

  function cards(dl, items) {
    dl.replaceChildren(...items.map(([label, value]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value;
      div.append(dt, dd);
      return div;
    }));
  }

  function drawMetrics(m) {
    const host = m.host || {};
    const runtime = m.runtime || {};
    const gpu = m.gpu || {};
    const history = Array.isArray(m.history) ? m.history : [];
    const queued = runtime.queued && typeof runtime.queued === "object" ? runtime.queued : {};
    const jobs = runtime.jobs && typeof runtime.jobs === "object" ? runtime.jobs : {};
    const queuedTotal = Object.values(queued).reduce((a, b) => a + (num(b) || 0), 0);
    cards($("#runtime-facts"), [
      ["Running jobs", String(runtime.running ?? "\u2013")],
      ["Queued jobs", `${queuedTotal}` + (queuedTotal ? ` (${Object.entries(queued)
        .filter(([, n]) => n).map(([p, n]) => `${n} ${p}`).join(", ")})` : "")],
      ["Busy workers", fixed(num(runtime.busy_fraction) === null ? null
                               : runtime.busy_fraction * 100, 0, " %")],
      ...Object.entries(jobs).map(([state, n]) => [`Jobs ${state}`, String(n)]),
      ...(m.cluster ? [["Ray cluster", m.cluster.available
        ? `${m.cluster.nodes} nodes, ${m.cluster.running}/${m.cluster.capacity} slots busy`
        : `unavailable: ${m.cluster.reason || "no answer"}`]] : []),
    ]);
    cards($("#host-facts"), [
      ["CPU", fixed(host.cpu_percent, 0, " %")],
      ["Memory", `${fixed(gib(host.memory_used), 1, "")} / ${fixed(gib(host.memory_total), 1, " GiB")}`],
      ["Disk", `${fixed(gib(host.disk_used), 0, "")} / ${fixed(gib(host.disk_total), 0, " GiB")}`],
      ["Disk free", fixed(gib(host.disk_free), 1, " GiB")],
      ["Server memory (RSS)", fixed(gib(host.rss), 2, " GiB")],
      ["Server threads", String(host.threads ?? "\u2013")],
    ]);
    const times = history.map((h) => num(h.time));
    const column = (key, scale = 1) => history.map((h) => (num(h[key]) === null ? null : h[key] * scale));
    chart("busy", times, [{ name: "busy", values: column("busy_fraction", 100) }], 100, 0, " %");
    chart("cpu", times, [{ name: "CPU", values: column("cpu_percent") }], 100, 0, " %");
    chart("memory", times, [{ name: "memory", values: column("memory_used", 1 / GIB) }],
          gib(host.memory_total), 1, " GiB");
    drawGpu(gpu, history, times);
  }

  function drawGpu(gpu, history, times) {
    const reason = $("#gpu-reason");
    const devicesBox = $("#gpu-devices");
    const charts = $("#gpu-charts");
    const devices = Array.isArray(gpu.devices) ? gpu.devices : [];
    if (!gpu.available) {
      reason.textContent = `No GPU monitoring: ${gpu.reason || "no GPU found"}.`;
      reason.hidden = false;
      devicesBox.replaceChildren();
      charts.hidden = true;
      return;
    }
    reason.hidden = true;
    charts.hidden = false;
    const rows = devices.map((d) => [
      String(d.index ?? ""), String(d.name ?? ""), fixed(d.utilization, 0, " %"),
      `${fixed(gib(d.memory_used), 1, "")} / ${fixed(gib(d.memory_total), 1, " GiB")}`,
      fixed(d.temperature, 0, " \u00b0C"), fixed(d.power_w, 0, " W"),
      fixed(gib(d.process_memory), 2, " GiB")]);
    devicesBox.replaceChildren(dataTable(
      ["GPU", "Name", "Utilisation", "Memory", "Temperature", "Power", "This server"], rows));
    const series = (key, scale) => devices.map((d, i) => ({
      name: `GPU ${d.index ?? i}`,
      values: history.map((h) => {
        const v = Array.isArray(h[key]) ? num(h[key][i]) : null;
        return v === null ? null : v * scale;
      }),
    }));
    const memoryTotal = Math.max(0, ...devices.map((d) => num(d.memory_total) || 0));
    chart("gpu-util", times, series("gpu_utilization", 1), 100, 0, " %");
    chart("gpu-memory", times, series("gpu_memory_used", 1 / GIB), memoryTotal / GIB || null, 1, " GiB");
  }

  function dataTable(headers, rows) {
    const wrap = document.createElement("div");
    wrap.className = "scroll";
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const h of headers) head.appendChild(document.createElement("th")).textContent = h;
    const tbody = table.createTBody();
    for (const row of rows) {
      const tr = tbody.insertRow();
      for (const cell of row) tr.insertCell().textContent = cell;
    }
    wrap.appendChild(table);
    return wrap;
  }

  // A line chart of each series against time, scaled to [0, ymax] (ymax: the data's if null).
  function chart(key, times, series, ymax, digits, unit) {
    const box = $(`[data-chart="${key}"]`);
    const now = $(`[data-now="${key}"]`);
    if (!box) return;
    const known = times.filter((t) => t !== null);
    const values = series.flatMap((s) => s.values.filter((v) => v !== null));
    if (known.length < 2 || !values.length) {
      box.innerHTML = '<div class="empty">collecting samples\u2026</div>';
      if (now) now.textContent = "";
      return;
    }
    const t0 = Math.min(...known);
    const span = Math.max(...known) - t0 || 1;
    const top = num(ymax) || Math.max(...values) * 1.1 || 1;
    const W = 600, H = 120;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${key} over the last ${Math.round(span)} s`);
    for (const f of [0.25, 0.5, 0.75]) {
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("class", "grid");
      line.setAttribute("x1", "0");
      line.setAttribute("x2", String(W));
      line.setAttribute("y1", String(H * f));
      line.setAttribute("y2", String(H * f));
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(line);
    }
    series.forEach((s, index) => {
      let points = [];
      const flush = () => {
        if (points.length) {
          const line = document.createElementNS(SVG, "polyline");
          line.setAttribute("class", `c${index % 6}`);
          line.setAttribute("points", points.join(" "));
          svg.appendChild(line);
        }
        points = [];
      };
      s.values.forEach((v, i) => {
        if (v === null || times[i] === null) { flush(); return; }
        const x = ((times[i] - t0) / span) * W;
        const y = H - (Math.min(Math.max(v, 0), top) / top) * (H - 2) - 1;
        points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      });
      flush();
    });
    const note = document.createElement("div");
    note.className = "hint";
    note.textContent = `last ${Math.round(span)} s \u00b7 scale 0\u2013${top.toFixed(digits)}${unit}` +
      (series.length > 1 ? ` \u00b7 ${series.map((s, i) => `${s.name} (line ${i + 1})`).join(", ")}` : "");
    box.replaceChildren(svg, note);
    if (now) {
      now.textContent = series.map((s) => {
        const last = [...s.values].reverse().find((v) => v !== null);
        return last === undefined ? "" : `${last.toFixed(digits)}${unit}`;
      }).join(" \u00b7 ");
    }
  }

  // --- viewer --------------------------------------------------------------------------------

  function viewer() {
    const form = $("#viewer-controls");
    const presets = {};
    for (const item of (form.dataset.presets || "").split(";")) {
      const [name, wl] = item.split(":");
      if (name && wl) presets[name] = wl.split(",").map(Number);  // [width, level]
    }
    const figures = $$("figure.view");
    const job = encodeURIComponent(body.dataset.job);

    function src(plane, index) {
      const q = new URLSearchParams({ plane, index: String(index) });
      const preset = form.window.value;
      if (preset === "custom") q.set("wl", `${form.ww.value},${form.wl.value}`);
      else q.set("window", preset);
      const labels = form.labels.value;
      q.set("overlay", labels ? "1" : "0");
      if (labels) q.set("labels", labels);
      return `/console/jobs/${job}/view.png?${q}`;
    }

    // One request in flight per view: while one loads, only the latest wanted image waits.
    function show(figure, url) {
      if (figure.dataset.loading === "1") { figure.pending = url; return; }
      figure.dataset.loading = "1";
      $("img", figure).src = url;
    }

    function update(figure) {
      const slider = $("input[type=range]", figure);
      const index = slider ? Number(slider.value) : 0;
      if (slider) $("output", figure).textContent = `${index + 1} / ${figure.dataset.count}`;
      show(figure, src(figure.dataset.plane, index));
    }

    for (const figure of figures) {
      const img = $("img", figure);
      figure.dataset.loading = img.complete ? "" : "1";
      const done = () => {
        figure.dataset.loading = "";
        if (figure.pending) { const next = figure.pending; figure.pending = null; show(figure, next); }
      };
      img.addEventListener("load", () => { figure.classList.remove("failed"); done(); });
      img.addEventListener("error", () => { figure.classList.add("failed"); done(); });
      const slider = $("input[type=range]", figure);
      if (slider) slider.addEventListener("input", () => update(figure));
    }

    // "Hide identifiers" is remembered in this browser (the CSS does the hiding).
    const hideIds = $("#hide-ids");
    if (hideIds) {
      hideIds.checked = localStorage.getItem("clara-rt-hide-ids") === "1";
      hideIds.addEventListener("change", () => {
        localStorage.setItem("clara-rt-hide-ids", hideIds.checked ? "1" : "0");
      });
    }

    form.addEventListener("submit", (event) => event.preventDefault());
    form.window.addEventListener("change", () => {
      const preset = presets[form.window.value];
      if (preset) [form.ww.value, form.wl.value] = preset.map(String);
      figures.forEach(update);
    });
    for (const input of [form.ww, form.wl]) {
      input.addEventListener("change", () => {
        if (!(Number(form.ww.value) > 0) || form.wl.value === "") return;
        form.window.value = "custom";
        figures.forEach(update);
      });
    }
    form.labels.addEventListener("change", () => {
      for (const legend of $$(".legend[data-labels]", form)) {
        legend.hidden = legend.dataset.labels !== form.labels.value;
      }
      figures.forEach(update);
    });
  }

  // --- start -------------------------------------------------------------------------------

  localTimes(document);
  if (body.dataset.viewer) viewer();
  else if (body.dataset.job) jobPage();
  else if (body.dataset.page === "metrics") metricsPage();
  else if ($("table.pipelines")) pipelinesPage();
  else if ($("table.jobs") || $("#new-jobs")) jobTables();
  body.dataset.ready = "1";
})();
