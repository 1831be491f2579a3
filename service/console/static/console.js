// veilmatch console: live alert queue (Server-Sent Events) and in-browser verification
// of audit inclusion proofs (RFC 9162) and the checkpoint signature (signed note,
// Ed25519), with WebCrypto only. No framework, no inline script (CSP: script-src 'self').
"use strict";

(function () {
  function b64(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function hex(text) {
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  const LEAF = new Uint8Array([0]);
  const NODE = new Uint8Array([1]);

  // RFC 9162 section 2.1.3.2: recompute the root from a leaf hash and its PATH.
  async function rootFromInclusion(index, size, leafHash, proof) {
    if (!(index >= 0 && index < size)) throw new Error("index outside the tree");
    let fn = index, sn = size - 1, r = leafHash;
    for (const p of proof) {
      if (sn === 0) throw new Error("proof too long");
      if ((fn & 1) === 1 || fn === sn) {
        r = await sha256(concat(NODE, p, r));
        while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      } else {
        r = await sha256(concat(NODE, r, p));
      }
      fn >>= 1; sn >>= 1;
    }
    if (sn !== 0) throw new Error("proof too short");
    return r;
  }

  function show(cell, cls, text) {
    cell.textContent = "";
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    cell.appendChild(span);
  }

  // signed-note: verify the log's Ed25519 signature over the checkpoint text.
  async function verifyCheckpoint(noteText, vkey) {
    const split = noteText.lastIndexOf("\n\n");
    const body = noteText.slice(0, split + 1);
    // <name>+<hex key id>+<base64(type || key)>; the base64 part may itself contain "+".
    const text = vkey.trim();
    const first = text.indexOf("+");
    const second = text.indexOf("+", first + 1);
    const name = text.slice(0, first);
    const keyIdHex = text.slice(first + 1, second);
    const keyB64 = text.slice(second + 1);
    const typeAndKey = b64(keyB64);
    if (typeAndKey[0] !== 1 || typeAndKey.length !== 33) throw new Error("not an Ed25519 log key");
    const enc = new TextEncoder();
    const keyId = (await sha256(concat(enc.encode(name + "\n"), typeAndKey))).slice(0, 4);
    if (!equal(keyId, hex(keyIdHex))) throw new Error("key id does not match the key");
    const key = await crypto.subtle.importKey("raw", typeAndKey.slice(1), { name: "Ed25519" }, false, ["verify"]);
    for (const line of noteText.slice(split + 2).split("\n")) {
      if (!line.startsWith("\u2014 " + name + " ")) continue;
      const sig = b64(line.slice(name.length + 3));
      if (!equal(sig.slice(0, 4), keyId)) continue;
      if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(body))) {
        const lines = body.split("\n");
        return { size: Number(lines[1]), root: b64(lines[2]) };
      }
      throw new Error("signature does not verify");
    }
    throw new Error("no signature by the log key");
  }

  async function verifyAudit() {
    const noteEl = document.getElementById("cp-note");
    const keyEl = document.getElementById("log-key");
    const status = document.getElementById("cp-browser");
    if (!noteEl || !keyEl || !status) return;
    let checkpoint;
    try {
      checkpoint = await verifyCheckpoint(noteEl.textContent, keyEl.textContent);
      show(status, "ok", "signature verified");
    } catch (err) {
      show(status, "bad", "FAILED: " + err.message);
    }
    for (const row of document.querySelectorAll("tr.entry")) {
      const cell = row.querySelector(".browser-check");
      if (row.dataset.state === "pending") continue;
      if (!checkpoint) { show(cell, "bad", "checkpoint not verified"); continue; }
      try {
        const size = Number(row.dataset.size);
        if (size !== checkpoint.size) throw new Error("proof is for another tree size");
        const proof = row.dataset.proof ? row.dataset.proof.split(",").map(hex) : [];
        const leafHash = await sha256(concat(LEAF, b64(row.dataset.leaf)));
        const root = await rootFromInclusion(Number(row.dataset.seq), size, leafHash, proof);
        if (equal(root, checkpoint.root)) show(cell, "ok", "verified in your browser");
        else show(cell, "bad", "ROOT MISMATCH");
      } catch (err) {
        show(cell, "bad", "FAILED: " + err.message);
      }
    }
  }

  function liveQueue() {
    const live = document.querySelector("[data-sse]");
    if (!live || !window.EventSource) return;
    const status = document.getElementById("live-status");
    const target = document.getElementById(live.dataset.target);
    let refreshing = Promise.resolve();
    function refresh(announce) {
      refreshing = refreshing.then(async () => {
        const res = await fetch(live.dataset.rows, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (res.ok && res.headers.get("content-type").startsWith("text/html") && !res.redirected) {
          target.innerHTML = await res.text();
          if (announce) status.textContent = announce;
        }
      }).catch(() => { status.textContent = "Could not refresh the queue; reload the page."; });
    }
    const source = new EventSource(live.dataset.sse);
    source.addEventListener("ready", () => {
      status.textContent = "Live: new alerts appear here without reloading.";
      live.dataset.connected = "yes";
      refresh(null);
    });
    source.addEventListener("alert", (event) => {
      const data = JSON.parse(event.data);
      const what = data.kind === "raised" ? "New alert from " + data.gate_id : "Alert " + data.status;
      refresh(what + " (" + new Date().toLocaleTimeString() + ").");
    });
    source.onerror = () => {
      live.dataset.connected = "no";
      status.textContent = "Live updates interrupted; reconnecting…";
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    liveQueue();
    verifyAudit();
  });
})();
