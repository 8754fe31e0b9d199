"use strict";
// Installs the service worker (the card offline) and, on the card page, swaps the signed QR
// code for the card number's when the phone is offline or the page is the kept copy.
(() => {
  const manifest = document.querySelector('link[rel="manifest"]');
  if ("serviceWorker" in navigator && manifest) {
    const scope = manifest.dataset.scope;
    navigator.serviceWorker.register(scope + "sw.js", { scope }).catch(() => {});
  }
  const signed = document.getElementById("token-qr");
  const plain = document.getElementById("plain-card");
  if (!signed || !plain) return;
  const lifetime = Number(signed.dataset.ttl) * 1000;
  const check = () => {
    if (!navigator.onLine || signed.dataset.kept === "1") {
      signed.hidden = true;
      plain.open = true;
    }
  };
  check();
  window.addEventListener("offline", check);
  // A fresh token before this one runs out, while online; offline, the number's QR code.
  setTimeout(() => (navigator.onLine ? location.reload() : check()), Math.max(lifetime - 15000, 15000));
})();
