"use strict";
// The member card offline (docs/portal.md). Pages: network first; the card page is kept, and
// shown when the network is gone. Its CSS and script: network first, the kept copy offline.
// Nothing else is kept, POSTs are never touched, and opening the sign-in page (after signing
// out, or before someone else signs in on this phone) drops what was kept.
const SCOPE = new URL(self.registration.scope).pathname; // /m/{program}/
const CACHE = "patron-card:" + SCOPE;
const CARD = SCOPE + "card";
const SIGN_IN = SCOPE + "sign-in";
const ASSETS = [new URL("../static/", self.registration.scope).pathname, SCOPE + "brand.css"];

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function keep(key, response, copy = (r) => r.clone()) {
  if (response.ok && response.type === "basic" && !response.redirected) {
    const cache = await caches.open(CACHE);
    await cache.put(key, await copy(response));
  }
  return response;
}

// The kept card page says it is a kept copy, so portal.js shows the card number's QR code on it
// (its signed code has most likely run out) without trusting the phone's clock.
async function marked(response) {
  const text = (await response.clone().text()).replace('data-kept="0"', 'data-kept="1"');
  const headers = new Headers(response.headers);
  headers.delete("content-length");
  headers.delete("content-encoding");
  return new Response(text, { headers });
}

async function page(request, url) {
  try {
    const response = await fetch(request);
    return url.pathname === CARD ? await keep(CARD, response, marked) : response;
  } catch (offline) {
    const cache = await caches.open(CACHE);
    return (await cache.match(CARD)) || Response.error();
  }
}

async function asset(request) {
  try {
    return await keep(request, await fetch(request));
  } catch (offline) {
    const cache = await caches.open(CACHE);
    return (await cache.match(request)) || Response.error();
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    if (url.pathname === SIGN_IN) {
      event.waitUntil(caches.delete(CACHE));
      return;
    }
    if (url.pathname.startsWith(SCOPE)) event.respondWith(page(request, url));
  } else if (ASSETS.some((prefix) => url.pathname.startsWith(prefix))) {
    event.respondWith(asset(request));
  }
});
