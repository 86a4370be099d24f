/* The phone page opens without signal: its files are kept here, refreshed from the network when
   there is one. API calls (/v1/...) are never touched: reports wait in IndexedDB, not here. */
"use strict";
const CACHE = "lianhu-shell-v1";
const SHELL = [
  "/phone", "/web/app.css", "/web/phone.css", "/web/i18n.js", "/web/api.js", "/web/outbox.js", "/web/phone.js",
  "/manifest.webmanifest", "/web/icons/icon.svg", "/web/icons/icon-192.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  if (!SHELL.includes(url.pathname)) return;
  // Network first (a new release shows at once), the kept copy when there is no network.
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true })),
  );
});
