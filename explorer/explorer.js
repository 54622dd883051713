// Tally block explorer: served by the node (GET /explorer), no dependencies.
// Everything the node sends is treated as hostile: values are checked against their
// expected shapes before use and rendered only as text (textContent), never as HTML.
// Transaction pages check the inclusion proof (SHA-256, RFC 6962 with Tally's 0x00/0x01
// prefixes) and the commit certificate (Ed25519 over the COMMIT vote's signing bytes,
// docs/SPEC.md) in the page with WebCrypto, against the genesis validators pinned in
// localStorage on first load.
"use strict";

const LATEST_BLOCKS_SHOWN = 10;
const BLOCK_HASH_SEARCH_DEPTH = 10;
const ACCOUNT_PAGE_SIZE = 20;
const PIN_KEY = "tally-explorer-genesis";

// ---- shapes ----------------------------------------------------------------
const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const ADDRESS = /^tally1[02-9ac-hj-np-z]{38}$/;
const CURSOR = /^[0-9]{1,20}:[0-9]{1,10}$/;
const U64_MAX = (1n << 64n) - 1n;

class Hostile extends Error {}

function need(ok, what) { if (!ok) throw new Hostile("the node sent a malformed " + what); }
function hex64(v, what) { need(typeof v === "string" && HEX64.test(v), what); return v; }
function decimal(v, what) { need(typeof v === "string" && DECIMAL.test(v) && BigInt(v) <= U64_MAX, what); return v; }
function address(v, what) { need(typeof v === "string" && ADDRESS.test(v), what); return v; }
function small(v, what) { need(Number.isSafeInteger(v) && v >= 0 && v < 2 ** 31, what); return v; }
function text(v, what, max = 200) { need(typeof v === "string" && v.length <= max, what); return v; }
function list(v, what, max) { need(Array.isArray(v) && v.length <= max, what); return v; }

// ---- bytes -----------------------------------------------------------------
function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}
function toHex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""); }
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
function u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, Number(n), true); return b; }
function u64(decimalText) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(decimalText), true); return b; }
// Canonical strings (and domain tags) are a u32 little-endian length, then UTF-8.
function str(s) { const b = new TextEncoder().encode(s); return concat(u32(b.length), b); }
async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }

// ---- what the page checks ---------------------------------------------------
// Merkle leaves are SHA-256(0x00 ‖ item), nodes SHA-256(0x01 ‖ left ‖ right);
// InclusionProof.verify (Sources/TallyCrypto/Merkle.swift), step by step.
async function merkleRootFromProof(item, index, leafCount, path) {
  if (!(index < leafCount)) return null;
  let position = index, last = leafCount - 1n;
  let node = await sha256(concat(new Uint8Array([0]), item));
  for (const sibling of path) {
    if (last === 0n) return null;
    if ((position & 1n) === 1n || position === last) {
      node = await sha256(concat(new Uint8Array([1]), sibling, node));
      while ((position & 1n) === 0n && position !== 0n) { position >>= 1n; last >>= 1n; }
    } else {
      node = await sha256(concat(new Uint8Array([1]), node, sibling));
    }
    position >>= 1n; last >>= 1n;
  }
  return last === 0n ? node : null;
}

// BlockHeader canonical bytes (Sources/TallyTypes/Block.swift); the block hash is their SHA-256.
async function headerHash(block) {
  return toHex(await sha256(concat(
    str("tally/block-header/v1"), u64(block.height), u64(block.view), u64(block.timestamp_ms),
    fromHex(block.previous_hash), fromHex(block.transactions_root), fromHex(block.state_root),
    u32(block.proposer), u32(block.transactions.length))));
}

// A COMMIT vote's signing bytes (Sources/TallyTypes/Vote.swift).
function commitSigningBytes(chainID, view, height, blockHash) {
  return concat(str("tally/commit/v1"), str(chainID), u64(view), u64(height), fromHex(blockHash));
}

// The certificate rules of CommitCertificate.verify: signers strictly increasing, each a
// genesis validator, at least ⌈(n+f+1)/2⌉ of them, and every signature valid.
async function checkCertificate(block, genesis) {
  const cert = block.certificate;
  const n = genesis.validators.length, f = Math.floor((n - 1) / 3), quorum = Math.floor((n + f + 2) / 2);
  const computed = await headerHash(block);
  if (computed !== block.hash) return { ok: false, reason: "the block's header does not hash to its hash" };
  if (cert.block_hash !== computed || cert.height !== block.height) {
    return { ok: false, reason: "the certificate is for another block" };
  }
  const message = commitSigningBytes(genesis.chainID, cert.view, cert.height, cert.block_hash);
  let previous = -1;
  for (const entry of cert.signatures) {
    if (entry.validator_index <= previous) return { ok: false, reason: "signers are not in increasing order" };
    previous = entry.validator_index;
    if (entry.validator_index >= n) return { ok: false, reason: "signer " + entry.validator_index + " is not a genesis validator" };
    const key = await crypto.subtle.importKey("raw", fromHex(genesis.validators[entry.validator_index].public_key),
      { name: "Ed25519" }, false, ["verify"]);
    const valid = await crypto.subtle.verify({ name: "Ed25519" }, key, fromHex(entry.signature), message);
    if (!valid) return { ok: false, reason: "the signature of " + genesis.validators[entry.validator_index].name + " is invalid" };
  }
  if (cert.signatures.length < quorum) {
    return { ok: false, reason: cert.signatures.length + " signers, below the quorum of " + quorum };
  }
  return { ok: true, signers: cert.signatures.length, of: n };
}

// ---- the node's answers, checked -----------------------------------------------
async function get(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await response.text();
  let json = null;
  try { json = JSON.parse(body); } catch (e) { /* shape checks below report it */ }
  return { status: response.status, json, raw: body };
}

function checkBlock(b) {
  need(b && typeof b === "object", "block");
  decimal(b.height, "block height"); hex64(b.hash, "block hash"); hex64(b.previous_hash, "previous hash");
  decimal(b.view, "view"); decimal(b.timestamp_ms, "timestamp"); small(b.proposer, "proposer");
  hex64(b.transactions_root, "transactions root"); hex64(b.state_root, "state root");
  list(b.transactions, "transaction list", 1_000_000).forEach(checkTransaction);
  const c = b.certificate;
  need(c && typeof c === "object", "certificate");
  decimal(c.view, "certificate view"); decimal(c.height, "certificate height"); hex64(c.block_hash, "certificate hash");
  list(c.signatures, "signature list", 1024).forEach((s) => {
    need(s && typeof s === "object", "signature"); small(s.validator_index, "validator index");
    need(typeof s.signature === "string" && HEX128.test(s.signature), "signature");
  });
  return b;
}

function checkTransaction(t) {
  need(t && typeof t === "object", "transaction");
  hex64(t.hash, "transaction hash"); address(t.from, "sender"); address(t.to, "recipient");
  decimal(t.amount, "amount"); decimal(t.fee, "fee"); decimal(t.nonce, "nonce");
  if (t.height !== undefined) decimal(t.height, "height");
  if (t.index !== undefined) small(t.index, "index");
  return t;
}

async function block(height) {
  const r = await get("/blocks/" + encodeURIComponent(height));
  if (r.status === 404) return null;
  need(r.status === 200, "block answer (status " + r.status + ")");
  return checkBlock(r.json);
}

// ---- genesis, pinned ---------------------------------------------------------------
let genesisPromise = null;
function genesis() {
  if (!genesisPromise) genesisPromise = loadGenesis();
  return genesisPromise;
}

async function loadGenesis() {
  const r = await get("/genesis");
  need(r.status === 200 && r.json, "genesis");
  let pinned = null;
  try { pinned = localStorage.getItem(PIN_KEY); } catch (e) { /* no storage: pin for this page only */ }
  let source = r.raw;
  if (pinned === null) {
    try { localStorage.setItem(PIN_KEY, r.raw); } catch (e) { /* as above */ }
  } else if (pinned !== r.raw) {
    source = pinned;
    banner("This node's genesis differs from the one this page pinned on first load: checks use the pinned one. "
      + "Clear this site's storage to pin another chain.");
  }
  const g = JSON.parse(source);
  const validators = list(g.validators, "validator list", 1024).map((v) => ({
    name: text(v.name, "validator name"), public_key: hex64(v.public_key, "validator key"),
    address: text(v.address, "validator address"),
  }));
  need(validators.length >= 1, "validator list");
  return { chainID: text(g.chain_id, "chain id"), validators };
}

// ---- rendering (text only) -------------------------------------------------------------
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}
// Links only to this page's own routes, built from checked values.
function link(route, label) { return el("a", { href: "#/" + route }, label); }
function blockLink(height) { return link("block/" + height, height); }
function txLink(hash, label) { return el("a", { href: "#/tx/" + hash, class: "mono" }, label || hash.slice(0, 16) + "…"); }
function accountLink(a) { return el("a", { href: "#/account/" + a, class: "mono" }, a); }
function row(cells, header = false) { return el("tr", {}, cells.map((c) => el(header ? "th" : "td", {}, c))); }
function table(headers, rows, attributes) { return el("table", attributes || {}, el("thead", {}, row(headers, true)), el("tbody", {}, rows)); }
function facts(pairs) { return el("dl", {}, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])); }
function check(id, status, message) { return el("span", { id, class: "check", "data-status": status }, message); }
function show(...nodes) { const main = document.getElementById("main"); main.replaceChildren(...nodes); }
function banner(message) { const b = document.getElementById("banner"); b.textContent = message; b.hidden = false; }
// Base units as whole TALLY with 6 decimals, as the wallet prints them (docs/WALLET.md).
function tally(baseUnits) {
  const units = BigInt(baseUnits), whole = units / 1000000n, fraction = (units % 1000000n).toString().padStart(6, "0");
  return whole.toString() + "." + fraction;
}
function time(ms) { const d = new Date(Number(ms)); return isNaN(d) ? ms : d.toISOString(); }

function transactionsTable(transactions, withPlace) {
  const headers = withPlace ? ["height", "index", "hash", "from", "to", "amount (TALLY)", "fee", "nonce"] : ["#", "hash", "from", "to", "amount (TALLY)", "fee", "nonce"];
  return table(headers, transactions.map((t, i) => row([
    ...(withPlace ? [blockLink(t.height), String(t.index)] : [String(i)]),
    txLink(t.hash), accountLink(t.from), accountLink(t.to), tally(t.amount), tally(t.fee), t.nonce,
  ])), { class: "transactions" });
}

// ---- pages ---------------------------------------------------------------------------------
let events = null;
function stopEvents() { if (events) { events.close(); events = null; } }

// `#/?follow=N`: stop the live stream after N blocks (a page left open follows for good;
// a test or a kiosk snapshot gets a page that settles).
async function homePage(params) {
  const follow = /^[1-9][0-9]{0,3}$/.test(params.get("follow") || "") ? Number(params.get("follow")) : Infinity;
  let followed = 0;
  const g = await genesis();
  const statusAnswer = await get("/status");
  need(statusAnswer.status === 200 && statusAnswer.json, "status");
  const s = statusAnswer.json;
  const height = decimal(s.height, "height");
  const primary = small(s.primary, "primary");
  const rows = el("tbody", {});
  const latest = [];
  for (let h = BigInt(height); h >= 1n && latest.length < LATEST_BLOCKS_SHOWN; h--) {
    const b = await block(h.toString());
    if (b) latest.push(b);
  }
  const signedLatest = new Set(latest.length ? latest[0].certificate.signatures.map((x) => x.validator_index) : []);
  const blockRow = (h, hash, count, when) => row([blockLink(h), el("span", { class: "mono" }, hash), String(count), when]);
  latest.forEach((b) => rows.append(blockRow(b.height, b.hash, b.transactions.length, time(b.timestamp_ms))));
  const validators = table(["index", "name", "public key", "address", "status"], g.validators.map((v, i) => row([
    String(i), v.name, el("span", { class: "mono" }, v.public_key), v.address,
    [i === primary ? "primary · " : "", latest.length ? (signedLatest.has(i) ? "signed the latest block" : "not in the latest certificate") : "—"].join(""),
  ])), { id: "validators" });
  const live = el("span", { id: "live", class: "muted" }, "connecting to /events…");
  show(
    el("h1", {}, "Latest blocks"),
    facts([["height", el("span", { id: "height" }, height)], ["view", decimal(s.view, "view")],
      ["answered by", s.validator_name === null ? "a non-validator" : text(String(s.validator_name), "name")],
      ["peers connected", String(small(s.peers_connected, "peers"))], ["mempool", String(small(s.mempool_size, "mempool"))],
      ["live", live]]),
    el("table", { id: "latest-blocks" }, el("thead", {}, row(["height", "hash", "transactions", "time"], true)), rows),
    el("h2", {}, "Validators"), validators);
  stopEvents();
  events = new EventSource("/events");
  events.onopen = () => { live.textContent = "updating live"; };
  events.onerror = () => { live.textContent = "event stream interrupted; the browser retries"; };
  events.addEventListener("block", (event) => {
    let data;
    try { data = JSON.parse(event.data); decimal(data.height, "event height"); hex64(data.hash, "event hash"); small(data.transactions, "event count"); } catch (e) { return; }
    document.getElementById("height").textContent = data.height;
    // A block already listed (committed while the page loaded) is not listed twice.
    for (const existing of rows.querySelectorAll("tr")) {
      if (existing.firstChild && existing.firstChild.textContent === data.height) existing.remove();
    }
    rows.prepend(blockRow(data.height, data.hash, data.transactions, "just now"));
    while (rows.children.length > LATEST_BLOCKS_SHOWN) rows.lastChild.remove();
    followed += 1;
    if (followed >= follow) { stopEvents(); live.textContent = "followed " + followed + " blocks live; reload to follow again"; }
  });
}

async function blockPage(height) {
  need(DECIMAL.test(height), "height");
  const g = await genesis();
  const b = await block(height);
  if (!b) return show(el("h1", {}, "Block " + height), el("p", { class: "error" }, "no block at this height"));
  const signers = b.certificate.signatures.map((s) => g.validators[s.validator_index] ? g.validators[s.validator_index].name : "unknown validator " + s.validator_index);
  const certCheck = check("certificate-check", "pending", "checking certificate…");
  show(
    el("h1", {}, "Block " + b.height),
    facts([["hash", el("span", { class: "mono" }, b.hash)], ["previous", BigInt(b.height) > 1n ? blockLink((BigInt(b.height) - 1n).toString()) : "genesis"],
      ["previous hash", el("span", { class: "mono" }, b.previous_hash)], ["view", b.view], ["time", time(b.timestamp_ms)],
      ["proposer", g.validators[b.proposer] ? g.validators[b.proposer].name : "unknown (" + b.proposer + ")"],
      ["transactions root", el("span", { class: "mono" }, b.transactions_root)], ["state root", el("span", { class: "mono" }, b.state_root)],
      ["certificate", [certCheck]], ["signers", el("span", { id: "signers" }, signers.join(", "))],
      ["next", blockLink((BigInt(b.height) + 1n).toString())]]),
    el("h2", {}, b.transactions.length + " transactions"), transactionsTable(b.transactions, false));
  const result = await checkCertificate(b, g).catch((e) => ({ ok: false, reason: String(e.message || e) }));
  setCertificateCheck(certCheck, result);
}

function setCertificateCheck(node, result) {
  node.setAttribute("data-status", result.ok ? "ok" : "failed");
  node.textContent = result.ok ? "certificate checked (" + result.signers + " of " + result.of + " signers)" : "certificate check failed: " + result.reason;
}

async function transactionPage(hash) {
  need(HEX64.test(hash), "hash");
  const g = await genesis();
  const r = await get("/txs/" + hash);
  const t = r.json || {};
  need((r.status === 200 || r.status === 404) && typeof t.status === "string", "transaction status");
  const status = el("span", { id: "tx-status", class: "status-" + (["committed", "pending"].includes(t.status) ? t.status : "unknown") }, t.status);
  if (t.status !== "committed") {
    return show(el("h1", {}, "Transaction"), facts([["hash", el("span", { class: "mono" }, hash)], ["status", status]]),
      el("p", { class: "muted" }, t.status === "pending" ? "waiting in a mempool; reload to see it commit" : "this node knows no transaction with this hash"));
  }
  decimal(t.height, "height"); small(t.index, "index"); hex64(t.block_hash, "block hash");
  need(t.proof && typeof t.proof === "object", "proof");
  decimal(t.proof.index, "proof index"); decimal(t.proof.leaf_count, "proof leaf count");
  list(t.proof.path, "proof path", 64).forEach((p) => hex64(p, "proof path"));
  const b = await block(t.height);
  const proofCheck = check("proof-check", "pending", "checking inclusion proof…");
  const certCheck = check("certificate-check", "pending", "checking certificate…");
  const mine = b && b.transactions[t.index] && b.transactions[t.index].hash === hash ? b.transactions[t.index] : null;
  show(
    el("h1", {}, "Transaction"),
    facts([["hash", el("span", { class: "mono", id: "tx-hash" }, hash)], ["status", status], ["block", blockLink(t.height)],
      ["index", String(t.index)], ["block hash", el("span", { class: "mono" }, t.block_hash)],
      ["from", mine ? accountLink(mine.from) : "—"], ["to", mine ? accountLink(mine.to) : "—"],
      ["amount", mine ? tally(mine.amount) + " TALLY" : "—"], ["fee", mine ? tally(mine.fee) : "—"], ["nonce", mine ? mine.nonce : "—"],
      ["inclusion proof", [proofCheck, el("div", { class: "muted" }, "leaf " + t.proof.index + " of " + t.proof.leaf_count + ", " + t.proof.path.length + " hashes")]],
      ["certificate", certCheck]]));
  // The chain of checks: this hash →(proof)→ transactions root → header hash (recomputed)
  // →(certificate)→ signatures of the pinned genesis validators.
  if (!b) {
    proofCheck.setAttribute("data-status", "failed"); proofCheck.textContent = "proof check failed: the node has no block " + t.height;
    certCheck.setAttribute("data-status", "failed"); certCheck.textContent = "certificate check failed: no block";
    return;
  }
  let proofOK = false, reason = "";
  try {
    const root = await merkleRootFromProof(fromHex(hash), BigInt(t.proof.index), BigInt(t.proof.leaf_count), t.proof.path.map(fromHex));
    if (root === null) reason = "the proof's shape is wrong";
    else if (toHex(root) !== b.transactions_root) reason = "the proof leads to another root";
    else if (t.proof.index !== String(t.index) || t.proof.leaf_count !== String(b.transactions.length)) reason = "the proof is for another position";
    else if (t.block_hash !== b.hash) reason = "the status names another block";
    else proofOK = true;
  } catch (e) { reason = String(e.message || e); }
  proofCheck.setAttribute("data-status", proofOK ? "ok" : "failed");
  proofCheck.textContent = proofOK ? "proof checked" : "proof check failed: " + reason;
  const result = await checkCertificate(b, g).catch((e) => ({ ok: false, reason: String(e.message || e) }));
  setCertificateCheck(certCheck, result);
}

async function accountPage(a) {
  need(ADDRESS.test(a), "address");
  const r = await get("/accounts/" + a);
  const head = el("h1", {}, "Account");
  if (r.status !== 200) {
    const code = r.json && r.json.error && typeof r.json.error.code === "string" ? text(r.json.error.code, "error") : String(r.status);
    return show(head, el("p", { class: "error" }, "the node did not answer with the account: " + code));
  }
  const body = el("tbody", {});
  const more = el("button", { class: "more", type: "button", hidden: "" }, "older transactions");
  const note = el("p", { class: "muted" });
  show(head, facts([["address", el("span", { class: "mono", id: "account-address" }, address(r.json.address, "address"))],
    ["balance", [el("span", { id: "balance" }, tally(decimal(r.json.balance, "balance"))), " TALLY"]], ["nonce", decimal(r.json.nonce, "nonce")],
    ["pending nonce", decimal(r.json.pending_nonce, "pending nonce")]]),
  el("h2", {}, "Transactions (newest first)"),
  el("table", { id: "account-transactions" }, el("thead", {}, row(["height", "index", "hash", "from", "to", "amount (TALLY)", "fee", "nonce"], true)), body),
  more, note);
  let before = null;
  async function page() {
    more.hidden = true;
    const p = await get("/accounts/" + a + "/txs?limit=" + ACCOUNT_PAGE_SIZE + (before ? "&before=" + before : ""));
    need(p.status === 200 && p.json, "account transactions");
    list(p.json.transactions, "account transactions", 100).forEach(checkTransaction);
    for (const t of p.json.transactions) {
      body.append(row([blockLink(t.height), String(t.index), txLink(t.hash), accountLink(t.from), accountLink(t.to), tally(t.amount), tally(t.fee), t.nonce]));
    }
    need(p.json.next === null || (typeof p.json.next === "string" && CURSOR.test(p.json.next)), "cursor");
    before = p.json.next;
    more.hidden = before === null;
    const from = decimal(p.json.indexed_from_height, "indexed height");
    note.textContent = before === null ? (from === "1" ? "all transactions listed" : "this node indexes transactions from height " + from + " on") : "";
  }
  more.addEventListener("click", () => page().catch(failed));
  await page();
}

// Replaces the search's own URL with its result's (the back button skips the search).
async function search(query) {
  const q = query.trim();
  if (DECIMAL.test(q)) return go("block/" + q, true);
  if (ADDRESS.test(q)) return go("account/" + q, true);
  const h = q.toLowerCase();
  if (HEX64.test(h)) {
    const r = await get("/txs/" + h);
    if (r.status === 200) return go("tx/" + h, true);
    // Not a transaction this node knows: perhaps a recent block's hash.
    const s = await get("/status");
    if (s.status === 200 && s.json && DECIMAL.test(s.json.height)) {
      for (let height = BigInt(s.json.height), n = 0; height >= 1n && n < BLOCK_HASH_SEARCH_DEPTH; height--, n++) {
        const b = await block(height.toString());
        if (b && b.hash === h) return go("block/" + b.height, true);
      }
    }
    return show(el("h1", {}, "Not found"), el("p", {}, "No transaction with hash " + h + " and no block with it among the last " + BLOCK_HASH_SEARCH_DEPTH + "."));
  }
  show(el("h1", {}, "Not found"), el("p", {}, "Search by block height, transaction or block hash (64 hex digits) or tally1… address."));
}

function go(route, replace) {
  if (location.hash === "#/" + route) return route_();
  if (replace) { history.replaceState(null, "", "#/" + route); return route_(); }
  location.hash = "#/" + route;
}

function failed(error) {
  show(el("h1", {}, "Something went wrong"), el("p", { class: "error", id: "error" }, String((error && error.message) || error)));
}

async function route_() {
  stopEvents();
  try {
    const [path, query] = location.hash.replace(/^#\/?/, "").split("?", 2);
    const parts = decodeURIComponent(path).split("/");
    const params = new URLSearchParams(query || "");
    if (parts[0] === "block" && parts.length === 2) await blockPage(parts[1]);
    else if (parts[0] === "tx" && parts.length === 2) await transactionPage(parts[1].toLowerCase());
    else if (parts[0] === "account" && parts.length === 2) await accountPage(parts[1]);
    else if (parts[0] === "search") await search(parts.slice(1).join("/").slice(0, 100));
    else await homePage(params);
  } catch (error) { failed(error); }
}

if (typeof document !== "undefined") {
  window.addEventListener("hashchange", route_);
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    // Through the URL, so a search can be linked to (and reloaded).
    go("search/" + encodeURIComponent(document.getElementById("query").value.trim().slice(0, 100)));
  });
  genesis().then((g) => { document.getElementById("chain").textContent = g.chainID + " · " + g.validators.length + " validators"; }).catch(failed);
  route_();
}
// For ExplorerScriptTests (run by Node.js against vectors from the Swift code).
if (typeof module !== "undefined") {
  module.exports = { merkleRootFromProof, headerHash, commitSigningBytes, checkCertificate, fromHex, toHex, checkBlock, tally, loadGenesis };
}
