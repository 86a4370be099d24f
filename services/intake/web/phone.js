/* The liaison worker's page: press, speak, send. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const { el } = Api;
  /* replaceChildren, skipping the nulls of optional parts (it would print "null"). */
  const present = (children) => children.flat().filter((c) => c !== null && c !== undefined && c !== false);
  const put = (node, ...children) => node.replaceChildren(...present(children));
  const add = (node, ...children) => node.append(...present(children));
  const t = (key) => I18n.t(key);
  const MAX_SECONDS = 110; // the gateway takes up to 120 s

  /* ------------------------------------------------------------------ recording */
  class Recorder {
    constructor(button, label, status, onClip) {
      this.button = button; this.label = label; this.status = status; this.onClip = onClip;
      this.recorder = null; this.heldSince = 0; this.toggled = false;
      button.addEventListener("pointerdown", (e) => { e.preventDefault(); this.heldSince = Date.now(); this.start(); });
      const release = () => {
        if (!this.heldSince) return;
        const held = Date.now() - this.heldSince;
        this.heldSince = 0;
        // A short tap means "tap to start, tap again to stop" for those who cannot hold.
        if (held < 400 && !this.toggled) { this.toggled = true; this.say("press_again"); return; }
        this.toggled = false;
        this.stop();
      };
      ["pointerup", "pointercancel", "pointerleave"].forEach((type) => button.addEventListener(type, release));
      button.addEventListener("contextmenu", (e) => e.preventDefault());
      button.addEventListener("click", (e) => {
        if (e.detail !== 0) return; // keyboard (Enter, Space): press to start, press again to stop
        if (this.recorder) this.stop(); else this.start();
      });
    }

    say(key, extra) { this.status.textContent = t(key) + (extra ? ` ${extra}` : ""); }

    async start() {
      if (this.recorder || this.starting) return;
      this.stopAsked = false;
      this.starting = true;
      try { await this.begin(); } finally { this.starting = false; }
    }

    async begin() {
      if (!navigator.mediaDevices || !global_MediaRecorder()) { this.say("mic_unsupported"); return; }
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (error) {
        this.say("mic_denied");
        return;
      }
      const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"].find((m) => MediaRecorder.isTypeSupported(m));
      const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      const chunks = [];
      const started = Date.now();
      recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
      recorder.onstop = () => {
        stream.getTracks().forEach((track) => track.stop());
        clearInterval(this.ticker);
        const seconds = Math.round((Date.now() - started) / 1000);
        const blob = new Blob(chunks, { type: (recorder.mimeType || type || "audio/webm").split(";")[0] });
        this.button.setAttribute("aria-pressed", "false");
        this.label.textContent = t("hold_to_speak");
        this.recorder = null;
        if (blob.size) { this.say("recorded", `${seconds} ${t("seconds")}`); this.onClip(blob, seconds); }
      };
      this.recorder = recorder;
      recorder.start(250);
      this.button.setAttribute("aria-pressed", "true");
      this.label.textContent = this.heldSince ? t("release_to_stop") : t("press_again");
      this.say("recording", "0");
      this.ticker = setInterval(() => {
        const seconds = Math.round((Date.now() - started) / 1000);
        this.say("recording", `${seconds} ${t("seconds")}`);
        if (seconds >= MAX_SECONDS) this.stop();
      }, 1000);
      this.starting = false;
      if (this.stopAsked) this.stop();
    }

    stop() {
      // Released before the microphone opened: stop as soon as it has.
      if (this.starting) { this.stopAsked = true; return; }
      if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
    }
  }
  function global_MediaRecorder() { return typeof window.MediaRecorder === "function"; }

  /* ------------------------------------------------------------------ network */
  function showNetwork() {
    const online = navigator.onLine;
    $("net").textContent = t(online ? "online" : "offline");
    $("net").classList.toggle("off", !online);
  }
  window.addEventListener("online", () => { showNetwork(); flush(); });
  window.addEventListener("offline", showNetwork);

  /* The send line, in words for the worker and as data-outcome (sent, waiting, ...) for tools. */
  function sendStatus(key) {
    $("send-status").textContent = t(key);
    $("send-status").dataset.outcome = key;
  }

  async function flush() {
    if (!Api.session) return;
    const mine = async () => (await Outbox.waiting()).filter((i) => i.username === Api.session.username && i.state !== "failed").length;
    const before = await mine();
    await Outbox.flush();
    if (before && Api.session && !(await mine())) sendStatus("sent");
    refreshWaiting();
    if (!$("view-mine").hidden) showMine();
  }

  async function refreshWaiting() {
    const waiting = (await Outbox.waiting()).filter((i) => Api.session && i.username === Api.session.username);
    const badge = $("waiting-count");
    badge.textContent = waiting.length;
    badge.hidden = waiting.length === 0;
    badge.setAttribute("aria-label", `${waiting.length} ${t("waiting")}`);
  }

  /* ------------------------------------------------------------------ report form */
  let clip = null;

  function setClip(blob, seconds) {
    clip = { blob, seconds };
    const audio = $("clip-audio");
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
    $("clip").hidden = false;
  }

  function clearClip() {
    clip = null;
    const audio = $("clip-audio");
    if (audio.src) { URL.revokeObjectURL(audio.src); audio.removeAttribute("src"); }
    $("clip").hidden = true;
  }

  function position() {
    return new Promise((resolve) => {
      if (!navigator.geolocation) { resolve(null); return; }
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lat: Number(p.coords.latitude.toFixed(5)), lon: Number(p.coords.longitude.toFixed(5)) }),
        () => resolve(null),
        { timeout: 5000, maximumAge: 600000 },
      );
    });
  }

  async function send() {
    const text = $("text").value.trim();
    if (!text && !clip) { sendStatus("nothing_to_send"); return; }
    $("send").disabled = true;
    try {
      const where = $("with-location").checked ? await position() : null;
      const item = await Outbox.add({
        username: Api.session.username,
        text,
        household_id: $("household").value ? Number($("household").value) : null,
        language: I18n.language,
        audio: clip ? clip.blob : null,
        audioType: clip ? clip.blob.type : null,
        seconds: clip ? clip.seconds : null,
        lat: where ? where.lat : null,
        lon: where ? where.lon : null,
      });
      $("text").value = "";
      $("household").value = "";
      clearClip();
      $("rec-status").textContent = "";
      sendStatus(navigator.onLine ? "sending" : "saved_waiting");
      await refreshWaiting();
      await Outbox.flush();
      const still = (await Outbox.waiting()).find((i) => i.key === item.key);
      sendStatus(!still ? "sent" : still.state === "failed" ? "send_failed" : "saved_waiting");
      refreshWaiting();
    } finally {
      $("send").disabled = false;
    }
  }

  async function loadHouseholds() {
    const cacheKey = `lianhu.households.${Api.session.username}`;
    let items = [];
    try {
      items = (await Api.json("/v1/households?page_size=20")).items;
      localStorage.setItem(cacheKey, JSON.stringify(items));
    } catch (error) {
      try { items = JSON.parse(localStorage.getItem(cacheKey)) || []; } catch (e) { items = []; }
    }
    const select = $("household");
    put(select, el("option", { value: "", text: t("no_household") }));
    for (const h of items) {
      const name = I18n.language === "bo" && h.head_name_bo ? h.head_name_bo : h.head_name;
      select.append(el("option", { value: String(h.id), text: `${name} · ${h.book_no.slice(-4)}` }));
    }
  }

  /* ------------------------------------------------------------------ my reports */
  function stateBadge(state) {
    return el("span", { class: `state ${state}`, "data-state": state, text: I18n.state(state) });
  }

  async function myReports() {
    try {
      const page = await Api.json("/v1/cases?mine=true&page_size=50");
      return page.items.map((c) => ({
        id: c.report_id, state: c.state || "received", created: c.submitted_at, text: c.text || c.summary || "",
        hasAudio: c.has_audio, category: c.category,
      }));
    } catch (error) {
      if (!(error instanceof Api.ApiError) || error.status !== 404) throw error;
    }
    // Until the case list answers: the reports this phone sent, read one by one.
    const sent = (await Outbox.sent()).filter((s) => s.username === Api.session.username);
    sent.sort((a, b) => b.created.localeCompare(a.created));
    return Promise.all(sent.slice(0, 30).map(async (s) => {
      try {
        const r = await Api.json(`/v1/reports/${s.id}`);
        return { id: s.id, state: r.status || "received", created: r.created_at, text: r.text || "", hasAudio: Boolean(r.audio), category: r.category };
      } catch (e) {
        return { ...s, state: "received" };
      }
    }));
  }

  async function showMine() {
    const list = $("mine");
    $("report-detail").hidden = true;
    list.hidden = false;
    const waiting = (await Outbox.waiting()).filter((i) => i.username === Api.session.username);
    const rows = waiting.map((i) => ({ id: null, key: i.key, state: i.state === "failed" ? "failed" : "pending", created: i.created, text: i.text, hasAudio: Boolean(i.audio), error: i.error }));
    let server = [];
    try { server = await myReports(); } catch (e) { /* offline: the waiting ones still show */ }
    const items = [...rows, ...server];
    put(list);
    if (!items.length) { list.append(el("li", { class: "muted", text: t("no_reports") })); return; }
    for (const r of items) {
      const what = [r.hasAudio ? `[${t("voice")}]` : null, r.text ? r.text.slice(0, 60) : null].filter(Boolean).join(" · ");
      const button = el("button", { class: "report-item", type: "button", "data-report-id": r.id || "", "data-key": r.key || "", disabled: !r.id && r.state !== "failed" },
        el("span", { class: "line" }, stateBadge(r.state), el("span", { class: "muted", text: I18n.time(r.created) })),
        el("span", { class: "what", text: what }),
        r.error ? el("span", { class: "error", text: ` ${r.error}` }) : null);
      if (r.id) button.addEventListener("click", () => showReport(r.id));
      else if (r.state === "failed") button.addEventListener("click", async () => { await Outbox.discard(r.key); showMine(); refreshWaiting(); });
      list.append(el("li", {}, button));
    }
  }

  async function act(reportId, action, extra) {
    await Api.json(`/v1/reports/${reportId}/actions`, {
      method: "POST", headers: { "Idempotency-Key": Api.newKey() }, json: { action, ...(extra || {}) },
    });
    showReport(reportId);
  }

  async function showReport(id) {
    const box = $("report-detail");
    $("mine").hidden = true;
    box.hidden = false;
    put(box, el("p", { text: t("loading") }));
    let r;
    try { r = await Api.json(`/v1/reports/${id}`); } catch (e) { put(box, el("p", { class: "error", text: t("error") })); return; }
    const state = r.status || "received";
    const answers = (r.timeline || []).filter((e) => e.kind === "resolved" && e.note);
    const allowed = r.allowed_actions || (state === "resolved" ? ["confirm", "reopen"] : state === "closed" && !r.case?.rating ? ["rate"] : []);
    const parts = [
      el("button", { type: "button", text: `← ${t("back")}`, onclick: showMine }),
      el("h2", {}, stateBadge(state)),
      el("p", { class: "muted", text: I18n.time(r.created_at) }),
      r.text ? el("p", { text: r.text }) : null,
      r.transcript ? el("p", { class: "muted", text: `[${t("voice")}] ${r.transcript}` }) : null,
    ];
    if (r.audio) {
      const audio = el("audio", { controls: true, preload: "none", "aria-label": t("voice") });
      Api.audioUrl(r.audio.url).then((url) => { audio.src = url; }).catch(() => {});
      parts.push(audio);
    }
    if (answers.length) {
      parts.push(el("div", { class: "answer", id: "answer" }, el("strong", { text: `${t("answer")}：` }), el("p", { text: answers[answers.length - 1].note })));
    }
    const row = el("div", { class: "row" });
    if (allowed.includes("confirm")) row.append(el("button", { class: "primary", type: "button", id: "confirm", text: t("confirm"), onclick: () => act(id, "confirm") }));
    if (allowed.includes("reopen")) row.append(el("button", { class: "danger", type: "button", id: "reopen", text: t("reopen"), onclick: () => act(id, "reopen") }));
    parts.push(row);
    if (allowed.includes("rate")) {
      const stars = el("div", { class: "row stars", role: "group", "aria-label": t("rate") });
      for (let n = 1; n <= 5; n += 1) {
        stars.append(el("button", { type: "button", "aria-label": `${t("rate")} ${n}`, text: `${n} ★`, onclick: () => act(id, "rate", { rating: n }) }));
      }
      parts.push(el("p", { text: t("rate") }), stars);
    }
    put(box, parts);
  }

  /* ------------------------------------------------------------------ tasks */
  async function showTasks() {
    const list = $("tasks");
    put(list, el("li", { class: "muted", text: t("loading") }));
    let page;
    try {
      page = await Api.json("/v1/tasks?role=received&page_size=50");
    } catch (error) {
      put(list, el("li", { class: "muted", text: error.status === 404 ? t("no_tasks") : t("error") }));
      return;
    }
    put(list);
    if (!page.items.length) { list.append(el("li", { class: "muted", text: t("no_tasks") })); return; }
    for (const task of page.items) list.append(el("li", {}, taskCard(task)));
  }

  function taskCard(task) {
    const card = el("div", { class: "card", "data-task-id": task.id });
    const done = Boolean(task.my_answer);
    add(card,
      el("h3", { text: task.title }),
      task.body ? el("p", { text: task.body }) : null,
      task.due_at ? el("p", { class: "muted", text: `${t("due")} ${I18n.time(task.due_at)}` }) : null,
      done ? el("p", { class: "ok", text: `${t("answered")}: ${task.my_answer.number ?? task.my_answer.text ?? `[${t("voice")}]`}` }) : null,
    );
    const numeric = task.answer === "number";
    const inputId = `answer-${task.id}`;
    const input = numeric
      ? el("input", { id: inputId, type: "number", inputmode: "numeric", min: "0" })
      : el("textarea", { id: inputId, rows: "2" });
    const status = el("p", { role: "status" });
    let taskClip = null;
    const recLabel = el("span", { text: t("hold_to_speak") });
    const recButton = el("button", { type: "button", class: "rec-small", "aria-pressed": "false" }, recLabel);
    // eslint-disable-next-line no-new
    new Recorder(recButton, recLabel, status, (blob) => { taskClip = blob; });
    const submit = el("button", { class: "primary wide", type: "button", text: t("send") });
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      try {
        if (taskClip) {
          const form = new FormData();
          form.append("audio", taskClip, "answer.webm");
          await Api.json(`/v1/tasks/${task.id}/answers`, { method: "POST", body: form, headers: { "Idempotency-Key": Api.newKey() } });
        } else {
          const value = input.value.trim();
          if (!value) { status.textContent = t("nothing_to_send"); return; }
          await Api.json(`/v1/tasks/${task.id}/answers`, {
            method: "POST", headers: { "Idempotency-Key": Api.newKey() }, json: numeric ? { number: Number(value) } : { text: value },
          });
        }
        status.textContent = t("answered");
        status.className = "ok";
      } catch (error) {
        status.textContent = `${t("send_failed")} ${error.message || ""}`;
      } finally {
        submit.disabled = false;
      }
    });
    // A spoken answer is for text tasks; a number task takes a number.
    add(card, el("label", { for: inputId, text: `${t("your_answer")}（${t(numeric ? "number" : "text")}）` }), input, numeric ? null : recButton, submit, status);
    return card;
  }

  /* ------------------------------------------------------------------ shell */
  const TABS = ["new", "mine", "tasks"];
  function select(name) {
    for (const tab of TABS) {
      const on = tab === name;
      $(`tab-${tab}`).setAttribute("aria-selected", String(on));
      $(`tab-${tab}`).tabIndex = on ? 0 : -1;
      $(`view-${tab}`).hidden = !on;
    }
    if (name === "mine") showMine();
    if (name === "tasks") showTasks();
  }

  function showSignedIn() {
    const signedIn = Boolean(Api.session);
    $("signin").hidden = signedIn;
    $("app").hidden = !signedIn;
    $("footer").hidden = !signedIn;
    if (!signedIn) return;
    if (!I18n.chosen && Api.session.language) I18n.set(Api.session.language);
    $("who").textContent = `${Api.session.unitName || ""} · ${Api.session.username}`;
    loadHouseholds();
    refreshWaiting();
    flush();
  }

  function init() {
    I18n.apply(document);
    showNetwork();
    $("language").addEventListener("click", () => { I18n.set(I18n.language === "bo" ? "zh" : "bo"); if (Api.session) loadHouseholds(); });
    Api.wireSignIn(showSignedIn, t);
    Api.wireTabs(TABS, select);
    new Recorder($("record"), $("record-label"), $("rec-status"), setClip); // eslint-disable-line no-new
    $("clip-delete").addEventListener("click", () => { clearClip(); $("rec-status").textContent = ""; });
    $("send").addEventListener("click", send);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) flush(); });
    document.addEventListener("outboxchange", () => { if (Api.session) refreshWaiting(); });
    setInterval(flush, 20000);
    showSignedIn();
    if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
  }

  document.addEventListener("DOMContentLoaded", init);
})();
