/* The console of the governance centre, townships, villages and departments: each sees its own
   jurisdiction, because every call is answered by the gateway within the caller's area. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { el } = Api;
  /* replaceChildren, skipping the nulls of optional parts (it would print "null"). */
  const put = (node, ...children) => node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  const t = (key) => I18n.t(key);
  const ADMINS = new Set(["county_command", "governance_centre"]);
  const COUNTY_WIDE = new Set(["county_command", "governance_centre"]);
  const STATES = ["routed", "acknowledged", "in_progress", "resolved", "closed", "returned", "escalated", "reopened", "merged"];
  const LIVE_MS = 10000;

  /* The units of the caller's area (GET /v1/units), and any other seen in statistics and cases. */
  const units = new Map();
  function noteUnit(unit) {
    if (unit && unit.id && !units.has(unit.id)) { units.set(unit.id, unit); unitsChanged(); }
  }
  let unitTimer = null;
  function unitsChanged() {
    clearTimeout(unitTimer);
    unitTimer = setTimeout(fillUnitSelects, 50);
  }
  function unitName(unit) { return unit ? (I18n.language === "bo" && unit.name_bo ? unit.name_bo : unit.name) : ""; }
  function fillUnitSelects() {
    const sorted = [...units.values()].sort((a, b) => (a.level || 9) - (b.level || 9) || a.id - b.id);
    for (const [id, blank] of [["f-unit", t("all")], ["b-unit", t("my_area")], ["t-targets", null]]) {
      const select = $(id);
      const chosen = [...select.selectedOptions].map((o) => o.value);
      put(select);
      if (blank !== null) select.append(el("option", { value: "", text: blank }));
      for (const unit of sorted) {
        if (id === "t-targets" && unit.kind === "governance_centre") continue;
        select.append(el("option", { value: String(unit.id), text: unitName(unit), selected: chosen.includes(String(unit.id)) }));
      }
    }
  }

  function badge(state) { return el("span", { class: `state ${state}`, "data-state": state, text: I18n.state(state) || state }); }
  function message(error) { return error instanceof Api.ApiError ? `${error.status} ${error.message}` : t("no_network"); }

  /* ================================================================== cases */
  let casePage = 1;
  let caseSource = "cases"; // "inbox" while GET /v1/cases is not there
  let caseTotal = 0;
  let selectedCase = null;

  function caseFilters() {
    return {
      unit: $("f-unit").value, category: $("f-category").value, urgency: $("f-urgency").value,
      state: $("f-state").value, overdue: $("f-overdue").checked ? "true" : "", q: $("f-q").value.trim(),
      page: casePage, page_size: 25,
    };
  }

  async function fetchCases() {
    if (caseSource === "cases") {
      try {
        const page = await Api.json(`/v1/cases${Api.query(caseFilters())}`);
        return { items: page.items, total: page.total };
      } catch (error) {
        if (!(error instanceof Api.ApiError) || error.status !== 404 || error.body.code === "not_found_unit") throw error;
        caseSource = "inbox";
      }
    }
    // Fallback: the unit's inbox, filtered here.
    const f = caseFilters();
    const page = await Api.json(`/v1/inbox?limit=200`);
    let items = page.items.map((i) => ({
      report_id: i.report_id, state: i.state, category: i.category, urgency: i.urgency, summary: i.summary,
      deadline_at: i.deadline_at, submitted_at: i.created_at, handler: { org_unit: i.org_unit }, has_audio: Boolean(i.audio),
      overdue: i.deadline_at ? new Date(i.deadline_at) < new Date() && !["resolved", "closed"].includes(i.state) : false,
    }));
    items = items.filter((c) => (!f.category || c.category === f.category) && (!f.urgency || c.urgency === f.urgency)
      && (!f.state || c.state === f.state) && (!f.overdue || c.overdue) && (!f.q || (c.summary || "").includes(f.q)));
    return { items: items.slice((casePage - 1) * 25, casePage * 25), total: items.length };
  }

  async function loadCases() {
    let page;
    try {
      page = await fetchCases();
    } catch (error) {
      $("case-status").textContent = `${t("error")}: ${message(error)}`;
      return;
    }
    caseTotal = page.total;
    const body = $("case-table").tBodies[0];
    put(body);
    for (const c of page.items) {
      if (c.handler && c.handler.org_unit) noteUnit(c.handler.org_unit);
      const open = el("button", { type: "button", class: "link", text: (c.summary || c.text || c.transcript || (c.has_audio ? `[${t("audio")}]` : "—")).slice(0, 80) });
      open.addEventListener("click", () => showCase(c.report_id));
      const row = el("tr", { "data-report-id": c.report_id, class: c.report_id === selectedCase ? "selected" : "" },
        el("td", {}, c.urgency === "urgent" ? el("span", { class: "urgent", text: `${t("urgent")} · ` }) : null, open,
          el("div", { class: "muted", text: [I18n.time(c.submitted_at), typeof c.township === "object" ? unitName(c.township) : c.township, c.handler && unitName(c.handler.org_unit)].filter(Boolean).join(" · ") })),
        el("td", {}, badge(c.state || "received"), c.overdue ? el("span", { class: "state overdue", text: t("overdue") }) : null),
        el("td", { text: I18n.category(c.category) }),
        el("td", { text: I18n.time(c.deadline_at) }));
      body.append(row);
    }
    const pages = Math.max(1, Math.ceil(caseTotal / 25));
    $("case-page").textContent = `${casePage} / ${pages} · ${t("total")} ${caseTotal}`;
    $("case-prev").disabled = casePage <= 1;
    $("case-next").disabled = casePage >= pages;
    const now = new Date().toLocaleTimeString();
    $("case-status").textContent = `${caseSource === "inbox" ? `${t("cases_fallback")} · ` : ""}${t("updated")} ${now}`;
  }

  function fallbackActions(r) {
    const state = r.status;
    const me = Api.session;
    const handlerUnit = r.case && r.case.handler && r.case.handler.org_unit.id;
    const actions = ["comment"];
    if (me.unit === handlerUnit) {
      if (["routed", "reopened", "escalated", "returned"].includes(state)) actions.push("acknowledge");
      if (["routed", "acknowledged", "reopened", "escalated"].includes(state)) actions.push("start");
      if (!["resolved", "closed", "merged"].includes(state)) actions.push("resolve", "return");
    }
    if (COUNTY_WIDE.has(me.role) || me.role === "township_command") actions.push("reassign", "escalate", "merge");
    if (r.reporter === me.username) {
      if (state === "resolved") actions.push("confirm", "reopen");
      if (state === "closed") actions.push("rate");
    }
    return actions;
  }

  async function showCase(reportId) {
    selectedCase = reportId;
    [...$("case-table").tBodies[0].rows].forEach((row) => row.classList.toggle("selected", row.dataset.reportId === reportId));
    const box = $("case-detail");
    box.hidden = false;
    put(box, el("p", { text: t("loading") }));
    let r;
    try { r = await Api.json(`/v1/reports/${reportId}`); } catch (error) { put(box, el("p", { class: "error", text: message(error) })); return; }
    const c = r.case || {};
    (c.recipients || []).forEach((x) => noteUnit(x.org_unit));
    const parts = [
      el("h2", { text: `${I18n.category(r.category) || "—"} ` }, r.urgency === "urgent" ? el("span", { class: "urgent", text: t("urgent") }) : null),
      el("p", {}, badge(r.status || "received"), c.overdue ? el("span", { class: "state overdue", text: ` ${t("overdue")}` }) : null),
      el("dl", { class: "facts" },
        el("dt", { text: t("submitted") }), el("dd", { text: `${I18n.time(r.created_at)} · ${r.reporter}` }),
        el("dt", { text: t("deadline") }), el("dd", { text: I18n.time(c.deadline_at) || "—" }),
        el("dt", { text: t("handler") }), el("dd", { text: c.handler ? `${unitName(c.handler.org_unit)} · ${c.handler.person ? c.handler.person.name : ""}` : "—" }),
        r.household_id ? el("dt", { text: t("household") }) : null, r.household_id ? el("dd", {}, householdLink(r.household_id)) : null),
      r.text ? el("p", { class: "report-text", text: r.text }) : null,
    ];
    if (r.audio) {
      const audio = el("audio", { controls: true, preload: "none", "aria-label": t("audio") });
      Api.audioUrl(r.audio.url).then((url) => { audio.src = url; }).catch(() => {});
      parts.push(el("h3", { text: t("audio") }), audio);
    }
    if (r.audio || r.transcript) {
      parts.push(el("h3", { text: t("transcript") }), el("p", { id: "transcript", text: r.transcript || `(${r.transcription || "—"})` }));
    }
    parts.push(el("h3", { text: t("evidence") }),
      el("ul", { class: "chips" }, (r.matched || []).map((m) => el("li", { text: `${m.term}${m.urgent ? " !" : ""} → ${I18n.category(m.category)}` }))),
      c.explanation ? el("p", { class: "muted", text: c.explanation }) : null);
    parts.push(el("h3", { text: t("recipients") }), el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: t("role") }), el("th", { scope: "col", text: t("unit") }), el("th", { scope: "col", text: t("reason") }))),
      el("tbody", {}, (c.recipients || []).map((x) => el("tr", {},
        el("td", { text: x.role === "handler" ? t("handler") : t("copy") }),
        el("td", { text: `${unitName(x.org_unit)}${x.person ? ` · ${x.person.name}` : ""}` }),
        el("td", { class: "muted", text: x.reason || "" }))))));
    parts.push(el("h3", { text: t("timeline") }), el("ol", { class: "timeline" }, (r.timeline || []).map((e) => el("li", {},
      el("time", { datetime: e.at, text: I18n.time(e.at) }),
      el("strong", { text: I18n.t(`st_${e.kind}`) !== `st_${e.kind}` ? I18n.t(`st_${e.kind}`) : e.kind }),
      e.actor ? ` · ${e.actor}` : "", e.note ? el("div", { text: e.note }) : null))));
    const allowed = r.allowed_actions || fallbackActions(r);
    if (allowed.length) parts.push(actionForm(reportId, allowed));
    put(box, parts);
  }

  function actionForm(reportId, allowed) {
    const form = el("form", { class: "actions", id: "action-form" });
    const select = el("select", { id: "a-action" }, allowed.map((a) => el("option", { value: a, text: t(`a_${a}`) })));
    const note = el("textarea", { id: "a-note", rows: "3" });
    const reason = el("select", { id: "a-reason" }, ["not_ours", "cannot_solve"].map((r) => el("option", { value: r, text: t(`r_${r}`) })));
    const unit = el("select", { id: "a-unit" }, [...units.values()].map((u) => el("option", { value: String(u.id), text: unitName(u) })));
    const into = el("input", { id: "a-into", placeholder: "report id" });
    const rating = el("input", { id: "a-rating", type: "number", min: "1", max: "5", value: "5" });
    const extras = {
      return: el("div", {}, el("label", { for: "a-reason", text: t("reason") }), reason),
      reassign: el("div", {}, el("label", { for: "a-unit", text: t("unit") }), unit),
      merge: el("div", {}, el("label", { for: "a-into", text: "into" }), into),
      rate: el("div", {}, el("label", { for: "a-rating", text: t("rate") }), rating),
    };
    const show = () => Object.entries(extras).forEach(([name, node]) => { node.hidden = select.value !== name; });
    select.addEventListener("change", show);
    const status = el("p", { role: "status", id: "action-status" });
    form.append(el("h3", { text: t("actions") }), el("label", { for: "a-action", text: t("actions") }), select,
      ...Object.values(extras), el("label", { for: "a-note", text: t("note") }), note, status,
      el("button", { class: "primary", type: "submit", text: t("send") }));
    show();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = select.value;
      const payload = { action, note: note.value.trim() || undefined };
      if (action === "return") payload.reason = reason.value;
      if (action === "reassign") payload.unit_id = Number(unit.value);
      if (action === "merge") payload.into = into.value.trim();
      if (action === "rate") payload.rating = Number(rating.value);
      try {
        await Api.json(`/v1/reports/${reportId}/actions`, { method: "POST", headers: { "Idempotency-Key": Api.newKey() }, json: payload });
        await showCase(reportId);
        loadCases();
      } catch (error) {
        status.textContent = message(error);
        status.className = "error";
      }
    });
    return form;
  }

  /* ================================================================== board */
  let boardUnit = null;
  const charts = {};
  let map = null;
  let mapLayer = null;

  function day(offset) {
    const d = new Date(Date.now() + offset * 86400000);
    return d.toISOString().slice(0, 10);
  }

  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    const scales = config.type === "doughnut" ? {} : { scales: { [config.options && config.options.indexAxis === "y" ? "x" : "y"]: { beginAtZero: true, ticks: { precision: 0 } } } };
    charts[id] = new Chart($(id), { ...config, options: { responsive: true, maintainAspectRatio: true, animation: false, ...scales, ...(config.options || {}) } });
  }

  async function loadBoard() {
    if (!boardUnit && COUNTY_WIDE.has(Api.session.role)) await loadRegistrySummary();
    const unit = $("b-unit").value || boardUnit;
    const period = { unit, from: $("b-from").value, to: $("b-to").value };
    let s;
    try {
      s = await Api.json(`/v1/stats/summary${Api.query(period)}`);
    } catch (error) {
      put($("kpis"), el("p", { class: "error", text: message(error) }));
      return;
    }
    noteUnit(s.unit);
    (s.by_unit || []).forEach((row) => noteUnit(row.unit));
    const onTime = s.resolved ? Math.round((100 * s.resolved_on_time) / s.resolved) : null;
    const tiles = [
      ["collected", s.collected], ["resolved", s.resolved], ["on_time", onTime === null ? "—" : `${onTime}%`],
      ["overdue", s.overdue], ["escalated", s.escalated], ["satisfaction", s.satisfaction_avg ?? "—"],
    ];
    put($("kpis"), el("h2", { class: "sr-only", text: unitName(s.unit) }), ...tiles.map(([key, value]) =>
      el("div", { class: "kpi", id: `kpi-${key}` }, el("span", { class: "value", text: String(value) }), el("span", { text: t(key) }))));
    const rows = (s.by_unit || []).filter((row) => row.unit);
    const labels = rows.map((row) => unitName(row.unit));
    chart("chart-units", { type: "bar", data: { labels, datasets: [
      { label: t("collected"), data: rows.map((r) => r.collected), backgroundColor: "#0b5cad" },
      { label: t("resolved"), data: rows.map((r) => r.resolved), backgroundColor: "#1e6b35" },
      { label: t("overdue"), data: rows.map((r) => r.overdue), backgroundColor: "#b3261e" }] } });
    const cats = Object.entries(s.by_category || {});
    const palette = ["#0b5cad", "#1e6b35", "#b3261e", "#8a5300", "#5b3a9b", "#00707a", "#a0306b", "#4a5260", "#2f6f9f", "#7a6a00", "#6b3d00", "#365e1e", "#7d1f1f", "#334"];
    chart("chart-categories", { type: "doughnut", data: { labels: cats.map(([c]) => I18n.category(c)), datasets: [
      { data: cats.map(([, v]) => v.collected), backgroundColor: cats.map((_, i) => palette[i % palette.length]) }] } });
    chart("chart-overdue", { type: "bar", data: { labels, datasets: [{ label: t("overdue"), data: rows.map((r) => r.overdue), backgroundColor: "#b3261e" }] }, options: { indexAxis: "y" } });
    put($("unit-table").tHead, el("tr", {}, ["unit", "collected", "resolved", "on_time", "overdue", "escalated"].map((k) => el("th", { scope: "col", text: t(k) }))));
    $("unit-table").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
      el("td", { text: unitName(r.unit) }), el("td", { text: r.collected }), el("td", { text: r.resolved }),
      el("td", { text: r.resolved ? `${Math.round((100 * r.resolved_on_time) / r.resolved)}%` : "—" }),
      el("td", { text: r.overdue }), el("td", { text: r.escalated }))));
    loadTrend(unit);
    loadMap();
  }

  async function loadTrend(unit) {
    const weeks = [];
    for (let w = 7; w >= 0; w -= 1) weeks.push({ from: day(-7 * w - 6), to: day(-7 * w + 1) });
    const figures = await Promise.all(weeks.map((p) => Api.json(`/v1/stats/summary${Api.query({ unit, ...p })}`).catch(() => null)));
    chart("chart-trend", { type: "line", data: { labels: weeks.map((p) => p.from.slice(5)), datasets: [
      { label: t("collected"), data: figures.map((f) => (f ? f.collected : null)), borderColor: "#0b5cad", backgroundColor: "#0b5cad" },
      { label: t("resolved"), data: figures.map((f) => (f ? f.resolved : null)), borderColor: "#1e6b35", backgroundColor: "#1e6b35" }] } });
  }

  // Gande county, roughly (no map tiles offline): a sketch to place the reports, not a survey.
  const GANDE_OUTLINE = [[34.45, 99.35], [34.5, 99.95], [34.3, 100.55], [33.95, 100.9], [33.5, 100.75], [33.35, 100.2], [33.55, 99.6], [33.95, 99.3]];

  async function loadMap() {
    if (!window.L) return;
    if (!map) {
      map = L.map("map", { attributionControl: false, zoomSnap: 0.25 });
      L.polygon(GANDE_OUTLINE, { color: "#4a5260", weight: 2, fillColor: "#dfe8d8", fillOpacity: 0.6, interactive: false }).addTo(map);
      map.fitBounds(GANDE_OUTLINE);
      mapLayer = L.layerGroup().addTo(map);
    }
    let items = [];
    try {
      if (caseSource === "cases") items = (await Api.json("/v1/cases?page_size=100")).items;
    } catch (error) { items = []; }
    if (caseSource === "inbox") {
      const inbox = (await Api.json("/v1/inbox?limit=100").catch(() => ({ items: [] }))).items;
      items = (await Promise.all(inbox.slice(0, 50).map((i) => Api.json(`/v1/reports/${i.report_id}`).catch(() => null))))
        .filter(Boolean).map((r) => ({ report_id: r.id, location: r.location, category: r.category, state: r.status, urgency: r.urgency, summary: r.text }));
    }
    mapLayer.clearLayers();
    for (const c of items.filter((i) => i.location)) {
      const color = c.urgency === "urgent" ? "#b3261e" : "#0b5cad";
      L.circleMarker([c.location.lat, c.location.lon], { radius: 7, color, fillColor: color, fillOpacity: 0.8 })
        .bindTooltip(`${I18n.category(c.category)} · ${I18n.state(c.state)} · ${(c.summary || "").slice(0, 30)}`)
        .addTo(mapLayer);
    }
    map.invalidateSize();
  }

  /* ================================================================== archive */
  function householdLink(id) {
    return el("button", { type: "button", class: "link", text: `#${id}`, onclick: () => { select("archive"); showHousehold(id); } });
  }

  async function loadRegistrySummary() {
    try {
      const s = await Api.json("/v1/registry/summary");
      noteUnit(s.unit);
      if (!boardUnit && COUNTY_WIDE.has(Api.session.role)) { boardUnit = s.unit.id; fillUnitSelects(); }
      const livestock = Object.entries(s.livestock || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
      put($("registry-summary"), ...[
        ["households", s.households], ["people", s.people], ["liaison_workers", s.liaison_workers],
      ].map(([k, v]) => el("div", { class: "kpi" }, el("span", { class: "value", text: String(v) }), el("span", { text: t(k) }))),
      el("div", { class: "kpi" }, el("span", { text: `${t("livestock")} (${s.livestock_year || ""})` }), el("div", { text: livestock })));
    } catch (error) {
      put($("registry-summary"), el("p", { class: "error", text: message(error) }));
    }
  }

  async function searchHouseholds(event) {
    if (event) event.preventDefault();
    try {
      const page = await Api.json(`/v1/households${Api.query({ q: $("h-q").value.trim(), flag: $("h-flag").value, page_size: 50 })}`);
      $("household-table").tBodies[0].replaceChildren(...page.items.map((h) => el("tr", {},
        el("td", {}, el("button", { type: "button", class: "link", text: `${h.head_name}${h.head_name_bo ? ` ${h.head_name_bo}` : ""}`, onclick: () => showHousehold(h.id) })),
        el("td", { text: h.book_no }), el("td", { text: h.members }), el("td", { text: (h.flags || []).join(", ") }))));
      $("household-status").textContent = `${t("total")} ${page.total}${page.total_is_estimate ? "+" : ""}`;
    } catch (error) {
      $("household-status").textContent = message(error);
    }
  }

  async function showHousehold(id) {
    const box = $("household-detail");
    box.hidden = false;
    put(box, el("p", { text: t("loading") }));
    let h;
    try { h = await Api.json(`/v1/households/${id}`); } catch (error) { put(box, el("p", { class: "error", text: message(error) })); return; }
    put(box, 
      el("h2", { text: `${h.head_name} ` }, h.head_name_bo ? el("span", { lang: "bo", text: h.head_name_bo }) : null),
      el("dl", { class: "facts" },
        el("dt", { text: t("book_no") }), el("dd", { text: h.book_no }),
        el("dt", { text: t("address") }), el("dd", { text: h.address || "" }),
        el("dt", { text: t("unit") }), el("dd", { text: [h.township, h.village, h.liaison_unit].filter(Boolean).map(unitName).join(" · ") }),
        el("dt", { text: t("flags") }), el("dd", { text: (h.flags || []).join(", ") || t("none") })),
      el("h3", { text: t("members") }),
      el("table", {}, el("thead", {}, el("tr", {}, ["name", "relation"].map((k) => el("th", { scope: "col", text: t(k) })), el("th", { scope: "col", text: "ID" }), el("th", { scope: "col", text: "☎" }))),
        el("tbody", {}, (h.members || []).map((m) => el("tr", {},
          el("td", {}, m.name, m.name_bo ? el("span", { lang: "bo", text: ` ${m.name_bo}` }) : null),
          el("td", { text: m.relation || "" }), el("td", { text: m.id_number || "" }), el("td", { text: m.phone || "" }))))),
      el("h3", { text: t("livestock") }),
      el("table", {}, el("thead", {}, el("tr", {}, ["year", "yak", "sheep", "goat", "horse"].map((k) => el("th", { scope: "col", text: k })))),
        el("tbody", {}, (h.livestock || []).map((l) => el("tr", {}, ["year", "yak", "sheep", "goat", "horse"].map((k) => el("td", { text: l[k] })))))));
  }

  /* ================================================================== tasks */
  let taskRole = "sent";

  async function loadTasks() {
    const body = $("task-table").tBodies[0];
    try {
      const page = await Api.json(`/v1/tasks${Api.query({ role: taskRole, page_size: 50 })}`);
      $("tasks-status").textContent = `${t("total")} ${page.total ?? page.items.length}`;
      put(body, ...page.items.map((task) => {
        const open = el("button", { type: "button", class: "link", text: task.title, onclick: () => showTask(task.id) });
        const r = task.progress;
        const mine = task.my_answer ? t("answered") : "";
        return el("tr", { "data-task-id": task.id }, el("td", {}, open), el("td", {}, badge(task.status || task.state || "open")),
          el("td", { text: I18n.time(task.due_at) }),
          el("td", { class: "progress", text: r ? `${r.answered} / ${r.recipients}${r.overdue ? ` · ${t("overdue")} ${r.overdue}` : ""}` : mine }));
      }));
    } catch (error) {
      put(body);
      $("tasks-status").textContent = error.status === 404 ? t("not_available") : message(error);
    }
  }

  async function showTask(id) {
    const box = $("task-detail");
    box.hidden = false;
    let task;
    loadTasks(); // the list's figures move with the answers
    try { task = await Api.json(`/v1/tasks/${id}`); } catch (error) { put(box, el("p", { class: "error", text: message(error) })); return; }
    const rows = [];
    const walk = (items, depth) => (items || []).forEach((row) => { rows.push({ ...row, depth }); walk(row.beneath, depth + 1); });
    walk(task.rollup ? task.rollup.by_target : [], 0);
    if (task.rollup) rows.push({ unit: { name: t("sum") }, ...task.rollup, depth: 0, total: true });
    const answers = (task.answers || []).filter((a) => a.answer);
    const cancel = el("button", { type: "button", class: "danger", text: t("cancel") });
    cancel.addEventListener("click", async () => {
      try { await Api.json(`/v1/tasks/${id}/cancel`, { method: "POST", headers: { "Idempotency-Key": Api.newKey() } }); showTask(id); loadTasks(); } catch (error) { cancel.after(el("p", { class: "error", text: message(error) })); }
    });
    put(box, 
      el("h2", { text: task.title }), badge(task.state || "open"),
      task.body ? el("p", { text: task.body }) : null,
      el("p", { class: "muted", text: `${t(`k_${task.kind}`)} · ${t(task.answer === "number" ? "number" : "text")} · ${t("due")} ${I18n.time(task.due_at) || "—"}` }),
      el("h3", { text: t("rollup") }),
      el("table", { id: "rollup" }, el("thead", {}, el("tr", {}, ["unit", "recipients_count", "answered_count", "overdue", "sum"].map((k) => el("th", { scope: "col", text: t(k) })))),
        el("tbody", {}, rows.map((row) => el("tr", { class: row.total ? "total" : "" },
          el("td", { text: `${"· ".repeat(row.depth)}${unitName(row.unit)}` }), el("td", { text: row.recipients ?? "" }),
          el("td", { text: row.answered ?? "" }), el("td", { text: row.overdue ?? "" }), el("td", { text: row.sum ?? "" }))))),
      answers.length ? el("h3", { text: t("answer") }) : null,
      answers.length ? el("table", { id: "answers" }, el("tbody", {}, answers.map((a) => el("tr", {},
        el("td", { text: `${unitName(a.unit)} · ${a.person ? a.person.name : ""}` }),
        el("td", { text: a.answer.number ?? a.answer.text ?? "" }, a.answer.audio ? taskAudio(task.id, a.answer) : null),
        el("td", { class: "muted", text: I18n.time(a.answer.answered_at) })))))
        : null,
      taskRole === "sent" && task.view === "sender" && (task.status || task.state) !== "cancelled" ? cancel : null);
  }

  function taskAudio(taskId, answer) {
    const audio = el("audio", { controls: true, preload: "none", "aria-label": t("audio") });
    const url = (answer.audio && answer.audio.url) || `/v1/tasks/${taskId}/answers/${answer.id}/audio`;
    Api.audioUrl(url).then((src) => { audio.src = src; }).catch(() => {});
    return audio;
  }

  async function createTask(event) {
    event.preventDefault();
    const status = $("task-form-status");
    const due = $("t-due").value;
    const payload = {
      title: $("t-title").value.trim(), body: $("t-body").value.trim(), kind: $("t-kind").value, answer: $("t-answer").value,
      targets: [...$("t-targets").selectedOptions].map((o) => Number(o.value)),
      due_at: due ? new Date(due).toISOString() : undefined,
    };
    try {
      await Api.json("/v1/tasks", { method: "POST", headers: { "Idempotency-Key": Api.newKey() }, json: payload });
      status.textContent = t("done_ok");
      status.className = "ok";
      $("task-form").reset();
      taskRole = "sent";
      loadTasks();
    } catch (error) {
      status.textContent = error.status === 404 ? t("not_available") : message(error);
      status.className = "error";
    }
  }

  /* ================================================================== accounts */
  let accountPage = 1;

  async function loadAccounts(event) {
    if (event) { event.preventDefault(); accountPage = 1; }
    try {
      const page = await Api.json(`/v1/accounts${Api.query({ q: $("a-q").value.trim(), role: $("a-role").value, page: accountPage, page_size: 50 })}`);
      $("account-table").tBodies[0].replaceChildren(...page.items.map((a) => {
        noteUnit({ id: a.org_unit_id, name: a.org_unit_name, level: { county_command: 1, governance_centre: 1, township_command: 2, department: 2, village_grid: 3, liaison_worker: 4 }[a.role], kind: a.role === "governance_centre" ? "governance_centre" : undefined });
        const toggle = el("button", { type: "button", text: a.disabled ? t("enable") : t("disable") });
        toggle.addEventListener("click", async () => {
          try { await Api.json(`/v1/accounts/${encodeURIComponent(a.username)}`, { method: "PATCH", json: { disabled: !a.disabled } }); loadAccounts(); } catch (error) { toggle.after(el("span", { class: "error", text: message(error) })); }
        });
        const reset = el("button", { type: "button", text: t("reset_password") });
        reset.addEventListener("click", async () => {
          const password = window.prompt(t("reset_password"));
          if (!password) return;
          try { await Api.json(`/v1/accounts/${encodeURIComponent(a.username)}/password`, { method: "POST", json: { password } }); reset.after(el("span", { class: "ok", text: " ✓" })); } catch (error) { reset.after(el("span", { class: "error", text: ` ${error.body.message_zh || message(error)}` })); }
        });
        return el("tr", {}, el("td", { text: a.username }), el("td", { text: a.display_name }), el("td", { text: a.role }),
          el("td", { text: `${a.org_unit_name} (${a.org_unit_id})` }),
          el("td", { text: a.disabled ? t("disabled") : a.locked ? "locked" : "✓" }), el("td", {}, toggle, " ", reset));
      }));
      const pages = Math.max(1, Math.ceil(page.total / 50));
      $("account-page").textContent = `${accountPage} / ${pages} · ${t("total")} ${page.total}`;
      $("account-prev").disabled = accountPage <= 1;
      $("account-next").disabled = accountPage >= pages;
    } catch (error) {
      $("account-page").textContent = message(error);
    }
  }

  async function createAccount(event) {
    event.preventDefault();
    const status = $("account-form-status");
    try {
      await Api.json("/v1/accounts", { method: "POST", json: {
        username: $("n-username").value.trim(), password: $("n-password").value, person_id: Number($("n-person").value),
        org_unit_id: Number($("n-unit").value), language: $("n-language").value || undefined,
      } });
      status.textContent = t("done_ok");
      status.className = "ok";
      $("account-form").reset();
      loadAccounts();
    } catch (error) {
      status.textContent = error.body.message_zh || message(error);
      status.className = "error";
    }
  }

  /* ================================================================== shell */
  const TABS = ["cases", "board", "archive", "tasks", "accounts"];
  let current = "cases";

  function select(name) {
    current = name;
    for (const tab of TABS) {
      const on = tab === name;
      $(`tab-${tab}`).setAttribute("aria-selected", String(on));
      $(`tab-${tab}`).tabIndex = on ? 0 : -1;
      $(`view-${tab}`).hidden = !on;
    }
    if (name === "cases") loadCases();
    if (name === "board") loadBoard();
    if (name === "archive") { loadRegistrySummary(); searchHouseholds(); }
    if (name === "tasks") loadTasks();
    if (name === "accounts") loadAccounts();
  }

  function showSignedIn() {
    const s = Api.session;
    $("signin").hidden = Boolean(s);
    $("app").hidden = !s;
    $("signout").hidden = !s;
    $("who").textContent = s ? `${s.unitName} · ${s.username}` : "";
    if (!s) return;
    // Another user may sign in on the same screen: nothing of the last one's view stays.
    units.clear();
    selectedCase = null;
    casePage = 1;
    caseSource = "cases";
    ["case-detail", "household-detail", "task-detail"].forEach((id) => { $(id).hidden = true; });
    noteUnit({ id: s.unit, name: s.unitName, level: 9 });
    $("tab-accounts").hidden = !ADMINS.has(s.role);
    if (current === "accounts" && !ADMINS.has(s.role)) current = "cases";
    boardUnit = COUNTY_WIDE.has(s.role) ? null : s.unit;
    loadRegistrySummary();
    loadUnits();
    select(current);
  }

  async function loadUnits() {
    // Every unit of the caller's area down to the villages: filters and task targets.
    const kinds = ["county", "governance_centre", "department", "township", "village"];
    try {
      const page = await Api.json(`/v1/units?${kinds.map((kind) => `kind=${kind}`).join("&")}`);
      page.items.forEach(noteUnit);
    } catch (error) { /* the filters keep the units seen elsewhere */ }
  }

  function init() {
    I18n.apply(document);
    $("f-category").append(...I18n.categories.map((c) => el("option", { value: c, "data-t": `c_${c}`, text: I18n.category(c) })));
    $("f-state").append(...STATES.map((s) => el("option", { value: s, "data-t": `st_${s}`, text: I18n.state(s) })));
    $("language").addEventListener("click", () => { I18n.set(I18n.language === "bo" ? "zh" : "bo"); fillUnitSelects(); if (Api.session) select(current); });
    Api.wireSignIn(showSignedIn, t);
    Api.wireTabs(TABS, select);
    $("case-filters").addEventListener("change", () => { casePage = 1; loadCases(); });
    $("case-filters").addEventListener("submit", (e) => { e.preventDefault(); casePage = 1; loadCases(); });
    $("case-prev").addEventListener("click", () => { casePage -= 1; loadCases(); });
    $("case-next").addEventListener("click", () => { casePage += 1; loadCases(); });
    ["b-unit", "b-from", "b-to"].forEach((id) => $(id).addEventListener("change", loadBoard));
    $("household-search").addEventListener("submit", searchHouseholds);
    $("task-form").addEventListener("submit", createTask);
    $("t-sent").addEventListener("click", () => { taskRole = "sent"; $("t-sent").setAttribute("aria-pressed", "true"); $("t-received").setAttribute("aria-pressed", "false"); loadTasks(); });
    $("t-received").addEventListener("click", () => { taskRole = "received"; $("t-sent").setAttribute("aria-pressed", "false"); $("t-received").setAttribute("aria-pressed", "true"); loadTasks(); });
    $("account-search").addEventListener("submit", loadAccounts);
    $("account-prev").addEventListener("click", () => { accountPage -= 1; loadAccounts(); });
    $("account-next").addEventListener("click", () => { accountPage += 1; loadAccounts(); });
    $("account-form").addEventListener("submit", createAccount);
    // Live updates: the open list (and the open case) are read again every few seconds.
    setInterval(() => {
      if (!Api.session || document.hidden || !$("f-live").checked) return;
      if (current === "cases") loadCases();
      if (current === "tasks") loadTasks();
    }, LIVE_MS);
    showSignedIn();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
