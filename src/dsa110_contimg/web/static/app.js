/* DSA-110 continuum pages: polling the JSON API and drawing SVG plots.
   Plain JavaScript, no library and nothing loaded from another host. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const body = document.body;
  const pollMs = 1000 * parseFloat(body.dataset.pollS || "5");

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
      (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return esc(v);
    if (Number.isInteger(v) && digits === undefined) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(digits || 2);
    return v.toFixed(digits === undefined ? 3 : digits);
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return n.toFixed(1) + " " + u[i];
  }
  async function api(path, opts) {
    const r = await fetch(path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!r.ok) { const err = new Error((data && data.detail) || r.statusText); err.status = r.status; throw err; }
    return data;
  }
  function stamp() { const u = $("updated"); if (u) u.textContent = "updated " + new Date().toLocaleTimeString(); }
  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function rows(table, head, data) {
    table.innerHTML = "<thead><tr>" + head.map((h) => "<th>" + h + "</th>").join("") +
      "</tr></thead><tbody>" + data.map((r) => "<tr>" + r.map((c) => "<td>" + c + "</td>").join("") + "</tr>").join("") + "</tbody>";
  }
  function kv(table, pairs) {
    table.innerHTML = pairs.map((p) => "<tr><td>" + esc(p[0]) + "</td><td>" + p[1] + "</td></tr>").join("");
  }

  /* plot(container, {xlabel, ylabel, logx, logy, series: [{kind: "line"|"points", data: [{x, y, err, shape,
     title, href, cls}], color}]}): an SVG plot with axes and ticks. */
  function plot(container, o) {
    const W = o.width || 720, H = o.height || 300, L = 64, R = 12, T = 10, B = 40;
    const tx = (v) => (o.logx ? Math.log10(v) : v), ty = (v) => (o.logy ? Math.log10(v) : v);
    const ok = (p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.logx || p.x > 0) && (!o.logy || p.y > 0);
    let xs = [], ys = [];
    o.series.forEach((s) => s.data.filter(ok).forEach((p) => {
      xs.push(tx(p.x)); ys.push(ty(p.y));
      if (p.err && !o.logy) { ys.push(p.y - p.err); ys.push(p.y + p.err); }
    }));
    container.innerHTML = "";
    const svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H }, container);
    svg.dataset.points = String(o.series.filter((s) => s.kind === "points").reduce((n, s) => n + s.data.filter(ok).length, 0));
    if (!xs.length) {
      const t = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#777" }, svg);
      t.textContent = o.empty || "no data yet"; return svg;
    }
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const positive = !o.logy && y0 >= 0;
    if (x1 === x0) { x0 -= 0.5; x1 += 0.5; } if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const px = (x1 - x0) * 0.04, py = (y1 - y0) * 0.06; x0 -= px; x1 += px; y0 -= py; y1 += py;
    if (positive) y0 = Math.max(y0, 0); /* counts and fluxes: no negative axis */
    const sx = (v) => L + (tx(v) - x0) / (x1 - x0) * (W - L - R);
    const sy = (v) => H - B - (ty(v) - y0) / (y1 - y0) * (H - T - B);
    el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#999" }, svg);
    const ticks = (a, b, log) => {
      if (log) { const out = []; for (let k = Math.ceil(a); k <= Math.floor(b); k++) out.push(k); return out.length >= 2 ? out : [a, b]; }
      const step = Math.pow(10, Math.floor(Math.log10((b - a) / 4))), m = (b - a) / step > 20 ? 5 : (b - a) / step > 8 ? 2 : 1;
      const out = []; for (let v = Math.ceil(a / (step * m)) * step * m; v <= b; v += step * m) out.push(v); return out;
    };
    const decimals = (t) => t.length > 1 ? Math.max(0, Math.ceil(-Math.log10(t[1] - t[0]) - 1e-9)) : 3;
    const label = (v, log, time, d) => log ? (Math.abs(v - Math.round(v)) < 1e-9 ? "1e" + Math.round(v) : Math.pow(10, v).toPrecision(2))
      : time ? new Date(v).toISOString().slice(11, 16) : v.toFixed(d);
    const xt = ticks(x0, x1, o.logx), yt = ticks(y0, y1, o.logy), xd = decimals(xt), yd = decimals(yt);
    xt.forEach((v) => {
      const X = L + (v - x0) / (x1 - x0) * (W - L - R);
      el("line", { x1: X, x2: X, y1: H - B, y2: H - B + 4, stroke: "#666" }, svg);
      el("text", { x: X, y: H - B + 16, "text-anchor": "middle", "font-size": 11 }, svg).textContent = label(v, o.logx, o.xtime, xd);
    });
    yt.forEach((v) => {
      const Y = H - B - (v - y0) / (y1 - y0) * (H - T - B);
      el("line", { x1: L - 4, x2: L, y1: Y, y2: Y, stroke: "#666" }, svg);
      el("text", { x: L - 6, y: Y + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = label(v, o.logy, false, yd);
    });
    el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12 }, svg).textContent = o.xlabel || "";
    el("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12, transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" }, svg).textContent = o.ylabel || "";
    (o.hlines || []).concat(o.vlines || []).forEach((h, i) => {
      const vertical = i >= (o.hlines || []).length;
      if (vertical ? !(tx(h) >= x0 && tx(h) <= x1) : !(ty(h) >= y0 && ty(h) <= y1)) return;
      const a = vertical ? { x1: sx(h), x2: sx(h), y1: T, y2: H - B } : { x1: L, x2: W - R, y1: sy(h), y2: sy(h) };
      el("line", Object.assign(a, { stroke: "#c88", "stroke-dasharray": "4 3" }), svg);
    });
    o.series.forEach((s) => {
      const pts = s.data.filter(ok), color = s.color || "#2166ac";
      if (s.kind === "line") {
        el("polyline", { points: pts.map((p) => sx(p.x) + "," + sy(p.y)).join(" "), fill: "none", stroke: color, "stroke-width": s.width || 1.6, class: s.cls || "" }, svg);
        return;
      }
      pts.forEach((p) => {
        const X = sx(p.x), Y = sy(p.y), g = el("g", { class: "pt " + (p.cls || "") }, svg);
        if (p.err && !o.logy) el("line", { x1: X, x2: X, y1: sy(p.y - p.err), y2: sy(p.y + p.err), stroke: color }, g);
        const c = p.color || color;
        if (p.shape === "square") el("rect", { x: X - 4, y: Y - 4, width: 8, height: 8, fill: c }, g);
        else if (p.shape === "down") el("path", { d: "M" + (X - 5) + "," + (Y - 4) + "h10l-5,9z", fill: "none", stroke: c, "stroke-width": 1.5 }, g);
        else el("circle", { cx: X, cy: Y, r: p.r || 4, fill: c }, g);
        if (p.title) el("title", {}, g).textContent = p.title;
        if (p.href) { g.dataset.href = p.href; g.addEventListener("click", () => { window.location.href = p.href; }); }
      });
    });
    return svg;
  }

  /* ------------------------------------------------------------ dashboard */
  async function dashboard() {
    const token = $("token");
    token.value = sessionStorage.getItem("dsa110-operator-token") || "";
    token.addEventListener("input", () => sessionStorage.setItem("dsa110-operator-token", token.value));
    let health = null, tick = 0;
    async function requeue(id) {
      const out = $("action-result");
      try {
        const r = await api("/api/actions/requeue/" + id, {
          method: "POST", headers: { Authorization: "Bearer " + token.value, "Content-Type": "application/json" },
          body: JSON.stringify({ reason: "requeued from the dashboard" }) });
        out.textContent = r.detail + (r.job ? ": now " + r.job.state : ""); out.className = "ok";
      } catch (e) { out.textContent = "requeue refused: " + e.message; out.className = "bad"; }
      refresh(true);
    }
    async function refresh(fresh) {
      // after an action, revalidate (If-None-Match) instead of reusing the
      // browser's copy of an answer (Cache-Control: max-age=1)
      const opts = fresh ? { cache: "no-cache" } : undefined;
      const get = (p) => api(p, opts).catch((e) => ({ _error: e.message }));
      if (tick++ % 6 === 0) health = await get("/api/health");
      const [queue, fig, backlog, mosaics, cal, failures, disk] = await Promise.all([
        get("/api/queue"), get("/api/metrics"), get("/api/metrics/backlog?points=60"), get("/api/mosaics?limit=1"),
        get("/api/calibration/strips"), get("/api/failures?limit=20"), get("/api/disk")]);
      const status = $("status");
      if (queue._error) { status.textContent = "unavailable"; status.className = "big bad"; status.title = queue._error; }
      else {
        const h = health && !health._error ? health.status : "unknown";
        const open = queue.intake.open;
        status.textContent = h + (open ? "" : " · intake paused");
        status.className = "big " + (h === "healthy" && open ? "ok" : h === "unhealthy" ? "bad" : "warning");
        const states = ["pending", "running", "done", "failed", "quarantined"];
        kv($("queue"), [["backlog (runnable)", String(queue.backlog.n_runnable)],
          ["oldest pending data", esc(queue.backlog.oldest_data_time_iso || "–")]].concat(
          Object.keys(queue.by_kind).sort().map((k) => [k, states.map((s) => s + " " + (queue.by_kind[k][s] || 0)).join(" · ")])));
      }
      if (!fig._error) {
        kv($("rates"), [["backlog now", String(fig.backlog)],
          ["arrived / h", fmt(fig.ingest_rate_per_h, 1)], ["processed / h", fmt(fig.processed_rate_per_h, 1)],
          ["processed / arrived", fmt(fig.processed_over_arrived, 2)],
          ["real-time factor", "<span id='rtf'>" + fmt(fig.real_time_factor, 3) + "</span>"],
          ["block success rate", fmt(fig.block_success_rate, 2)], ["ingest lag median (s)", fmt(fig.ingest_lag_median_s, 1)],
          ["data age (s)", fmt(fig.data_age_s, 0)], ["window (h)", fmt(fig.window_h, 1)]]);
      }
      if (Array.isArray(backlog)) {
        const t = backlog.map((p) => Date.parse(p.time));
        plot($("backlog-plot"), { xlabel: "time (UTC)", ylabel: "jobs", xtime: true, height: 220, series: [
          { kind: "line", color: "#2166ac", data: backlog.map((p, i) => ({ x: t[i], y: p.backlog })) },
          { kind: "line", color: "#d6604d", data: backlog.map((p, i) => ({ x: t[i], y: p.pending_groups })) }] });
        $("backlog-plot").dataset.last = String(backlog.length ? backlog[backlog.length - 1].backlog : "");
      }
      if (mosaics.items && mosaics.items.length) {
        const m = mosaics.items[0];
        const box = $("mosaic");
        if (box.dataset.id !== String(m.id)) {
          box.dataset.id = String(m.id);
          box.innerHTML = "<a href='/mosaics/" + m.id + "'><img id='mosaic-preview' alt='mosaic' src='/api/products/" + m.id +
            "/preview.png'></a><p>" + esc(m.block_id) + " · recorded " + esc(m.created_at || "") + " <span id='mosaic-age'></span></p>";
        }
        const age = (Date.now() - Date.parse(m.created_at)) / 3.6e6, note = $("mosaic-age");
        if (note) { note.textContent = age > 1 ? "(older than an hour: no mosaic in the last hour)" : ""; note.className = age > 1 ? "warning" : ""; }
      }
      if (Array.isArray(cal)) {
        rows($("calibration"), ["strip (deg)", "calibrator", "age (h)", "valid now"], cal.map((c) => [
          fmt(c.dec_strip_deg, 2), esc(c.calibrator), fmt(c.age_h, 1), c.valid_now ? "<span class='ok'>yes</span>" : "<span class='bad'>no</span>"]));
        if (!cal.length) $("calibration").innerHTML = "<tr><td class='muted'>no calibration solution yet</td></tr>";
      }
      if (failures.items) {
        rows($("failures"), ["job", "kind", "key", "state", "error", "reason", ""], failures.items.map((j) => [
          String(j.id), esc(j.kind), esc(j.key), "<span class='" + esc(j.state) + "'>" + esc(j.state) + "</span>",
          esc(j.error_class), esc(j.error_message), "<button data-job='" + j.id + "'>requeue</button>"]));
        if (!failures.items.length) $("failures").innerHTML = "<tr><td class='ok'>no failed or quarantined job</td></tr>";
        $("failures").querySelectorAll("button[data-job]").forEach((b) => b.addEventListener("click", () => requeue(b.dataset.job)));
      }
      if (Array.isArray(disk)) {
        rows($("disk"), ["directory", "used", "free", "free %"], disk.map((d) => [esc(d.directory), bytes(d.used_bytes),
          bytes(d.free_bytes), d.free_fraction === null ? "–" : "<span class='" + (d.free_fraction < 0.1 ? "bad" : "ok") + "'>" +
          (100 * d.free_fraction).toFixed(1) + "</span>"]));
      }
      stamp();
    }
    await refresh();
    setInterval(refresh, pollMs);
  }

  /* ------------------------------------------------------------ listings */
  async function images() {
    async function fill(kind, table) {
      const r = await api("/api/" + kind + "?limit=100");
      rows(table, ["id", "block", "file", "recorded"], r.items.map((p) => ["<a href='/" + kind + "/" + p.id + "'>" + p.id + "</a>",
        esc(p.block_id), esc(String(p.path).split("/").pop()), esc(p.created_at || "")]));
    }
    await Promise.all([fill("mosaics", $("mosaic-list")), fill("images", $("image-list"))]);
    stamp();
  }

  /* ------------------------------------------------------------ image page */
  async function imagePage() {
    const id = body.dataset.productId, kind = body.dataset.api;
    const zoom = $("zoom"), stage = $("stage");
    zoom.addEventListener("input", () => { stage.style.transform = "scale(" + zoom.value + ")"; $("zoom-value").textContent = zoom.value + "×"; });
    $("viewer").addEventListener("wheel", (ev) => {
      if (!ev.ctrlKey) return; ev.preventDefault();
      zoom.value = Math.min(8, Math.max(1, parseFloat(zoom.value) + (ev.deltaY < 0 ? 0.5 : -0.5))); zoom.dispatchEvent(new Event("input"));
    });
    $("show-overlay").addEventListener("change", (ev) => { $("overlay").style.display = ev.target.checked ? "" : "none"; });
    const detail = await api("/api/" + kind + "/" + id);
    kv($("header"), Object.entries(detail.header).map(([k, v]) => [k, esc(v)]));
    $("download").textContent = "Download " + String(detail.product.path).split("/").pop();
    try {
      const ov = await api("/api/products/" + id + "/overlay");
      $("overlay").innerHTML = ov.sources.map((s) => "<a href='/sources/" + encodeURIComponent(s.source_name) + "' title='" + esc(s.source_name) +
        "' style='left:" + (100 * s.x_frac).toFixed(3) + "%;top:" + (100 * s.y_frac).toFixed(3) + "%'><span>" + esc(s.source_name) + "</span></a>").join("");
      rows($("field-sources"), ["source", "RA (deg)", "Dec (deg)", "catalogue flux (Jy)", "pixel x, y"], ov.sources.map((s) => [
        "<a href='/sources/" + encodeURIComponent(s.source_name) + "'>" + esc(s.source_name) + "</a>", fmt(s.ra_deg, 5), fmt(s.dec_deg, 5),
        fmt(s.catalog_flux_jy, 3), fmt(s.x_pix, 1) + ", " + fmt(s.y_pix, 1)]));
    } catch (e) { $("field-sources").innerHTML = "<tr><td class='muted'>" + esc(e.message) + "</td></tr>"; }
    stamp();
  }

  /* ------------------------------------------------------------ source page */
  async function sourcePage() {
    const name = body.dataset.source, q = encodeURIComponent(name);
    const [curve, fit, src] = await Promise.all([api("/api/lightcurves/" + q), api("/api/sources/" + q + "/fit").catch(() => null),
      api("/api/sources/" + q).catch(() => null)]);
    kv($("stats"), [["RA, Dec (deg)", src ? fmt(src.ra_deg, 5) + ", " + fmt(src.dec_deg, 5) : "–"],
      ["catalogue flux (Jy)", src ? fmt(src.catalog_flux_jy) : "–"], ["epochs", String(curve.n_points)],
      ["eta", fit ? fmt(fit.eta) : "–"], ["V", fit ? fmt(fit.v) : "–"], ["Vs (largest pair)", fit ? fmt(fit.vs) : "–"],
      ["m (that pair)", fit ? fmt(fit.m) : "–"], ["ESE candidate", fit && fit.ese_candidate ? "yes (" + fmt(fit.ese_significance, 1) + " σ)" : "no"]]);
    const pts = curve.points.map((p) => {
      const limit = Number.isFinite(p.upper_limit_jy);
      const flux = p.flux_corr_jy !== null && p.flux_corr_jy !== undefined ? p.flux_corr_jy : p.flux_jy;
      const err = p.flux_corr_err_jy !== null && p.flux_corr_err_jy !== undefined ? p.flux_corr_err_jy : p.flux_err_jy;
      return { x: p.mjd, y: limit ? p.upper_limit_jy : flux, err: limit ? 0 : err,
        shape: limit ? "down" : p.image_kind === "mosaic" ? "square" : "circle",
        cls: limit ? "limit" : p.image_kind === "mosaic" ? "mosaic" : "image",
        color: p.image_kind === "mosaic" ? "#b2182b" : "#2166ac",
        title: p.epoch_id + ": " + fmt(flux) + " ± " + fmt(err) + " Jy" + (limit ? " (upper limit)" : "") };
    });
    const series = [{ kind: "points", data: pts }];
    if (fit && fit.ese_curve) series.push({ kind: "line", cls: "ese-fit", color: "#1b7837", data: fit.ese_curve.mjd.map((t, i) => ({ x: t, y: fit.ese_curve.flux_jy[i] })) });
    plot($("lightcurve"), { xlabel: "MJD", ylabel: "flux density (Jy)", series: series, empty: "no measurement" });
    try {
      const cuts = await api("/api/cutouts/" + q);
      $("cutouts").innerHTML = cuts.items.map((c) => "<figure><img loading='lazy' alt='cutout " + esc(c.epoch_id) + "' src='" + esc(c.url) +
        "'><figcaption>" + esc(c.image_kind) + " · MJD " + fmt(c.mjd, 4) + "</figcaption></figure>").join("");
    } catch (e) { $("cutouts").innerHTML = "<p class='muted'>" + esc(e.message) + "</p>"; }
    stamp();
  }

  /* ------------------------------------------------------------ variability */
  async function variabilityPage() {
    let data = [], sortKey = "eta", desc = true;
    const cols = [["source_name", "source"], ["n_epochs", "epochs"], ["mean_flux_jy", "mean flux (Jy)"], ["eta", "eta"], ["v", "V"],
      ["is_variable", "variable"], ["ese_candidate", "ESE"], ["ese_significance", "ESE σ"]];
    function table() {
      const f = $("filter").value.toLowerCase(), vo = $("variable-only").checked, eo = $("ese-only").checked;
      const shown = data.filter((r) => r.source_name.toLowerCase().includes(f) && (!vo || r.is_variable) && (!eo || r.ese_candidate));
      shown.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
      });
      const t = $("candidates");
      t.innerHTML = "<thead><tr>" + cols.map(([k, h]) => "<th data-key='" + k + "'>" + h + (k === sortKey ? (desc ? " ▼" : " ▲") : "") + "</th>").join("") +
        "</tr></thead><tbody>" + shown.map((r) => "<tr data-source='" + esc(r.source_name) + "'>" + cols.map(([k]) =>
          "<td>" + (k === "source_name" ? "<a href='/sources/" + encodeURIComponent(r.source_name) + "'>" + esc(r.source_name) + "</a>"
            : typeof r[k] === "boolean" ? (r[k] ? "yes" : "") : fmt(r[k])) + "</td>").join("") + "</tr>").join("") + "</tbody>";
      t.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
        if (sortKey === th.dataset.key) desc = !desc; else { sortKey = th.dataset.key; desc = true; } table();
      }));
      t.querySelectorAll("tbody tr").forEach((tr) => tr.addEventListener("click", () => {
        window.location.href = "/sources/" + encodeURIComponent(tr.dataset.source);
      }));
    }
    ["filter", "variable-only", "ese-only"].forEach((id) => $(id).addEventListener("input", table));
    async function refresh() {
      const r = await api("/api/variability?limit=" + 1000).catch(() => ({ items: [] }));
      data = r.items;
      plot($("etav"), { xlabel: "eta (weighted reduced chi-square)", ylabel: "V (modulation index)", logx: true, logy: true, height: 360,
        empty: "no source with eta and V yet (needs two epochs)",
        series: [{ kind: "points", data: data.map((d) => ({ x: d.eta, y: d.v, title: d.source_name,
          href: "/sources/" + encodeURIComponent(d.source_name), color: d.ese_candidate ? "#b2182b" : d.is_variable ? "#e08214" : "#2166ac" })) }] });
      table(); stamp();
    }
    await refresh();
    setInterval(refresh, Math.max(pollMs, 2000));
  }

  /* ------------------------------------------------------------ coverage */
  async function coveragePage() {
    const r = await api("/api/coverage?limit=1000");
    const strips = {}, palette = ["#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214", "#35978f"];
    r.items.forEach((f) => { const k = (f.pointing_dec_deg === null ? f.dec_deg : f.pointing_dec_deg).toFixed(1); (strips[k] = strips[k] || []).push(f); });
    const keys = Object.keys(strips).sort((a, b) => a - b);
    const W = 900, H = 420, L = 50, B = 30;
    const box = $("sky"); box.innerHTML = "";
    const svg = el("svg", { width: W, height: H }, box);
    let d0 = Math.min(...r.items.map((f) => f.dec_deg - f.height_deg / 2)), d1 = Math.max(...r.items.map((f) => f.dec_deg + f.height_deg / 2));
    if (!r.items.length) { d0 = -30; d1 = 90; } d0 -= 1; d1 += 1;
    const sx = (ra) => L + (360 - ra) / 360 * (W - L - 10), sy = (dec) => H - B - (dec - d0) / (d1 - d0) * (H - B - 10);
    el("rect", { x: L, y: 10, width: W - L - 10, height: H - B - 10, fill: "none", stroke: "#999" }, svg);
    for (let ra = 0; ra <= 360; ra += 60) el("text", { x: sx(ra), y: H - 12, "text-anchor": "middle", "font-size": 11 }, svg).textContent = ra + "°";
    [d0, (d0 + d1) / 2, d1].forEach((d) => el("text", { x: L - 4, y: sy(d) + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = d.toFixed(1) + "°");
    keys.forEach((k, i) => strips[k].forEach((f) => {
      const w = Math.max(2, f.width_deg / 360 * (W - L - 10) / Math.cos(f.dec_deg * Math.PI / 180)), h = Math.max(2, sy(f.dec_deg - f.height_deg / 2) - sy(f.dec_deg + f.height_deg / 2));
      const rect = el("rect", { class: "footprint", x: sx(f.ra_deg) - w / 2, y: sy(f.dec_deg) - h / 2, width: w, height: h,
        fill: f.kind === "mosaic" ? palette[i % palette.length] : "none", "fill-opacity": 0.35, stroke: palette[i % palette.length] }, svg);
      el("title", {}, rect).textContent = f.kind + " " + f.product_id + " (" + f.block_id + ")";
    }));
    rows($("strips"), ["strip (deg)", "images", "mosaics", "RA span (deg)", "first", "last"], keys.map((k) => {
      const fs = strips[k], ra = fs.map((f) => f.ra_deg), t = fs.map((f) => f.date_obs).filter(Boolean).sort();
      return [k, String(fs.filter((f) => f.kind === "image").length), String(fs.filter((f) => f.kind === "mosaic").length),
        fmt(Math.min(...ra), 2) + " – " + fmt(Math.max(...ra), 2), esc(t[0] || "–"), esc(t[t.length - 1] || "–")];
    }));
    stamp();
  }

  const pages = { dashboard: dashboard, images: images, image: imagePage, source: sourcePage, variability: variabilityPage, coverage: coveragePage };
  const run = pages[body.dataset.page];
  if (run) run().catch((e) => { const m = document.createElement("p"); m.className = "bad"; m.id = "page-error"; m.textContent = e.message; document.querySelector("main").appendChild(m); });
})();
