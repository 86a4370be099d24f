/* Reports wait in the phone (IndexedDB) with their Idempotency-Key until the gateway has answered
   201: made without signal, they go out by themselves when the network returns. The key is chosen
   once, when the report is made, so a resend after a lost answer is the same report, never a
   second one. Only one flush runs at a time. */
"use strict";
(function (global) {
  const DB = "lianhu";
  let opening = null;

  function open() {
    if (!opening) {
      opening = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB, 1);
        req.onupgradeneeded = () => {
          const db = req.result;
          db.createObjectStore("outbox", { keyPath: "key" });
          db.createObjectStore("sent", { keyPath: "id" });
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return opening;
  }

  async function run(store, mode, action) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(store, mode);
      const req = action(tx.objectStore(store));
      tx.oncomplete = () => resolve(req && req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  const all = (store) => run(store, "readonly", (s) => s.getAll());
  const put = (store, value) => run(store, "readwrite", (s) => s.put(value));
  const remove = (store, key) => run(store, "readwrite", (s) => s.delete(key));

  // Refusals that a resend cannot change: the report stays, marked, for the worker to see.
  const FINAL = new Set([400, 403, 404, 413, 415, 422]);
  let flushing = null;
  let again = false;

  function body(item) {
    if (item.audio) {
      const form = new FormData();
      const ext = (item.audioType || "").includes("ogg") ? "ogg" : (item.audioType || "").includes("mp4") ? "m4a" : "webm";
      form.append("audio", item.audio, `voice.${ext}`);
      if (item.text) form.append("text", item.text);
      form.append("language", item.language || "auto");
      if (item.household_id) form.append("household_id", String(item.household_id));
      if (item.lat != null) { form.append("lat", String(item.lat)); form.append("lon", String(item.lon)); }
      return { body: form };
    }
    const json = { text: item.text };
    if (item.language) json.language = item.language;
    if (item.household_id) json.household_id = item.household_id;
    if (item.lat != null) json.location = { lat: item.lat, lon: item.lon };
    return { json };
  }

  async function sendOne(item) {
    const response = await Api.request("/v1/reports", {
      method: "POST", headers: { "Idempotency-Key": item.key }, ...body(item),
    });
    if (response.status === 201 || response.status === 200) {
      const report = await response.json();
      await put("sent", {
        id: report.id, key: item.key, username: item.username, created: item.created, text: item.text || "",
        hasAudio: Boolean(item.audio), seconds: item.seconds || null,
      });
      await remove("outbox", item.key);
      return "sent";
    }
    if (FINAL.has(response.status)) {
      let detail = "";
      try { detail = (await response.json()).detail || ""; } catch (e) { /* no body */ }
      await put("outbox", { ...item, state: "failed", error: `${response.status} ${detail}`.trim() });
      return "failed";
    }
    return "later"; // 409 (the first try is still being stored), 429, 5xx: try again later
  }

  async function flushNow() {
    const outcome = { sent: 0, failed: 0, waiting: 0 };
    const items = (await all("outbox")).filter((i) => i.state !== "failed" && (!Api.session || i.username === Api.session.username));
    items.sort((a, b) => a.created.localeCompare(b.created));
    for (const item of items) {
      let result;
      try {
        result = await sendOne(item);
      } catch (error) {
        result = "later"; // no network (TypeError) or the sign-in must be renewed later
      }
      if (result === "later") {
        outcome.waiting = items.length - outcome.sent - outcome.failed;
        break;
      }
      outcome[result] += 1;
    }
    return outcome;
  }

  const Outbox = {
    async add(report) {
      const item = { key: Api.newKey(), created: new Date().toISOString(), state: "waiting", ...report };
      await put("outbox", item);
      return item;
    },
    waiting: () => all("outbox"),
    sent: () => all("sent"),
    discard: (key) => remove("outbox", key),
    flush() {
      if (flushing) {
        again = true; // a report added during a flush goes out right after it
        return flushing;
      }
      flushing = flushNow().finally(() => {
        flushing = null;
        document.dispatchEvent(new CustomEvent("outboxchange"));
        if (again) { again = false; Outbox.flush(); }
      });
      return flushing;
    },
  };
  global.Outbox = Outbox;
})(window);
