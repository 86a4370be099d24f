/* The public gateway API from a browser: sign-in kept across visits, access tokens renewed with the
   refresh token (one renewal at a time: a spent refresh token used twice signs the phone out). */
"use strict";
(function (global) {
  const KEY = "lianhu.session";

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.code)) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)); } catch (e) { return null; }
  }

  let session = load();
  let renewing = null;

  function keep(tokens) {
    session = {
      access: tokens.access_token,
      refresh: tokens.refresh_token,
      expires: Date.now() + (tokens.expires_in - 30) * 1000,
      username: tokens.username,
      role: tokens.role,
      unit: tokens.org_unit,
      unitName: tokens.org_unit_name,
      township: tokens.township,
      language: tokens.language,
    };
    localStorage.setItem(KEY, JSON.stringify(session));
    return session;
  }

  function forget() {
    session = null;
    localStorage.removeItem(KEY);
    document.dispatchEvent(new CustomEvent("signedout"));
  }

  async function body(response) {
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : null;
  }

  async function signIn(username, password) {
    const response = await fetch("/v1/auth/token", {
      method: "POST",
      body: new URLSearchParams({ username, password }),
    });
    if (!response.ok) throw new ApiError(response.status, await body(response));
    return keep(await response.json());
  }

  async function renew() {
    if (!renewing) {
      renewing = (async () => {
        const response = await fetch("/v1/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: session.refresh }),
        });
        if (response.status === 401) { forget(); throw new ApiError(401, await body(response)); }
        if (!response.ok) throw new ApiError(response.status, await body(response));
        keep(await response.json());
      })().finally(() => { renewing = null; });
    }
    return renewing;
  }

  async function signOut() {
    const refresh = session && session.refresh;
    forget();
    if (refresh) {
      try {
        await fetch("/v1/auth/logout", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: refresh }),
        });
      } catch (e) { /* offline: the token simply expires */ }
    }
  }

  /* fetch with the bearer token; renews it once on 401. Network failures reject with TypeError. */
  async function request(path, options = {}) {
    if (!session) throw new ApiError(401, { detail: "not signed in" });
    if (Date.now() > session.expires) await renew();
    const send = () => {
      const headers = { ...(options.headers || {}), Authorization: `Bearer ${session.access}` };
      let payload = options.body;
      if (options.json !== undefined) {
        headers["Content-Type"] = "application/json";
        payload = JSON.stringify(options.json);
      }
      return fetch(path, { method: options.method || "GET", headers, body: payload, signal: options.signal });
    };
    let response = await send();
    if (response.status === 401 && session) {
      await renew();
      response = await send();
    }
    return response;
  }

  async function json(path, options) {
    const response = await request(path, options);
    const data = await body(response);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
      if (value === undefined || value === null || value === "" || value === false) continue;
      if (Array.isArray(value)) value.forEach((v) => search.append(name, v));
      else search.append(name, value);
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  /* An Idempotency-Key; crypto.randomUUID only exists in secure contexts. */
  function newKey() {
    if (global.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /* A recording behind the bearer token, as a blob: URL an <audio> element can play. */
  async function audioUrl(path) {
    const response = await request(path);
    if (!response.ok) throw new ApiError(response.status, null);
    return URL.createObjectURL(await response.blob());
  }

  /* Text into a new element: never innerHTML with data. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* The sign-in form, the sign-out button and a sign-out elsewhere, the same on every page:
     ``shown()`` draws the page for whoever is signed in now; ``t`` gives the page's words. */
  function wireSignIn(shown, t) {
    const byId = (id) => document.getElementById(id);
    byId("signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      byId("signin-error").textContent = "";
      try {
        await signIn(byId("username").value.trim(), byId("password").value);
        byId("password").value = "";
        shown();
      } catch (error) {
        byId("signin-error").textContent = error.status === 429 ? t("locked") : error.status === 401 ? t("wrong_password") : t("no_network");
      }
    });
    byId("signout").addEventListener("click", async () => { await signOut(); shown(); });
    document.addEventListener("signedout", () => shown());
  }

  /* Tabs (#tab-<name>) as a tablist: a click or the arrow keys select one, skipping hidden tabs. */
  function wireTabs(names, select) {
    const tab = (name) => document.getElementById(`tab-${name}`);
    names.forEach((name, index) => {
      tab(name).addEventListener("click", () => select(name));
      tab(name).addEventListener("keydown", (e) => {
        const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
        if (!step) return;
        let next = index;
        do { next = (next + step + names.length) % names.length; } while (tab(names[next]).hidden);
        select(names[next]);
        tab(names[next]).focus();
      });
    });
  }

  global.Api = {
    ApiError, signIn, signOut, request, json, query, newKey, audioUrl, el, wireSignIn, wireTabs,
    get session() { return session; },
  };
})(window);
