// The status page: reads /web/state, follows the status table's changes on /web/events
// (server-sent events), and POSTs actions to the API routes the CLI uses, with the CSRF token.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const FORCE_XP_CONNECT = 0x40000, FORCE_XP_DISCONNECT = 0x80000;
const rows = new Map(); // status rows by PR_ENTRYID
let spoolerId = null;

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function when(t) { return t ? new Date(t).toLocaleString() : ""; }
function fill(id, items, draw, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (!items.length) {
    const tr = document.createElement("tr");
    const td = cell(tr, empty, "empty");
    td.colSpan = document.querySelectorAll("#" + id + " th").length;
    body.appendChild(tr);
    return;
  }
  for (const item of items) { const tr = document.createElement("tr"); draw(tr, item); body.appendChild(tr); }
}

function statusRow(tr, r) {
  tr.dataset.id = r.PR_ENTRYID;
  cell(tr, r.PR_DISPLAY_NAME);
  cell(tr, (r.PR_RESOURCE_TYPE_text || "").replace(/^MAPI_/, ""));
  cell(tr, r.PR_STATUS_STRING);
  cell(tr, r.PR_STATUS_CODE_text, "bits");
  cell(tr, r.PR_REMOTE_PROGRESS_TEXT || (r.PR_REMOTE_PROGRESS != null ? r.PR_REMOTE_PROGRESS + "%" : ""));
  cell(tr, r.PR_MSP_QUEUED_COUNT);
}
function drawStatus(changed) {
  const list = [...rows.values()];
  fill("status", list, (tr, r) => {
    statusRow(tr, r);
    if (r.PR_ENTRYID === changed) tr.className = "changed";
  }, "no rows");
  const select = document.getElementById("target");
  const chosen = select.value;
  select.replaceChildren(new Option("Spooler (every transport)", ""));
  for (const r of list) {
    if (r.PR_RESOURCE_TYPE_text === "MAPI_SPOOLER") spoolerId = r.PR_ENTRYID;
    if (r.PR_RESOURCE_TYPE_text === "MAPI_TRANSPORT_PROVIDER") select.add(new Option(r.PR_DISPLAY_NAME, r.PR_ENTRYID));
  }
  select.value = chosen;
}

function draw(state) {
  rows.clear();
  for (const r of state.status) rows.set(r.PR_ENTRYID, r);
  drawStatus(null);
  fill("queue", state.queue, (tr, r) => {
    cell(tr, r.PR_SUBJECT);
    cell(tr, r.PR_EMAIL_ADDRESS || r.PR_DISPLAY_NAME);
    cell(tr, r.PR_MSP_QUEUE_STATE);
    cell(tr, r.PR_MSP_LAST_ERROR);
    cell(tr, when(r.PR_MSP_NEXT_ATTEMPT_TIME));
    cell(tr, r.PR_MSP_TRANSPORT);
    const b = document.createElement("button");
    b.textContent = "Abort";
    b.onclick = () => act("/v1/abort", { entry_id: r.PR_ENTRYID }, "aborted");
    cell(tr, "").appendChild(b);
  }, "the queue is empty");
  fill("inbox", state.inbox, (tr, r) => {
    cell(tr, when(r.PR_MESSAGE_DELIVERY_TIME));
    cell(tr, r.PR_SENDER_NAME || r.PR_SENDER_EMAIL_ADDRESS);
    cell(tr, r.PR_SUBJECT);
    cell(tr, r.PR_MESSAGE_SIZE);
  }, "no messages");
  fill("flushes", state.flushes, (tr, f) => {
    cell(tr, when(f.at));
    cell(tr, f.transport);
    cell(tr, f.sent); cell(tr, f.deferred); cell(tr, f.bounced); cell(tr, f.received);
    cell(tr, f.seconds.toFixed(2));
    cell(tr, f.error || f.skipped || "");
  }, "no flush yet");
  chart(state.hour, state.now);
}

// One small SVG per transport: a minute per column over the last hour, sent (left half) and
// received (right half), scaled to the busiest minute.
function chart(hour, now) {
  const box = document.getElementById("chart");
  box.replaceChildren();
  if (!hour.length) {
    const p = document.createElement("p"); p.className = "empty"; p.textContent = "no flush in the last hour";
    box.appendChild(p); return;
  }
  const NS = "http://www.w3.org/2000/svg";
  const start = now - now % 60 - 59 * 60;
  for (const { transport, minutes } of hour) {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    const sent = minutes.reduce((a, m) => a + m.sent, 0), got = minutes.reduce((a, m) => a + m.received, 0);
    cap.append(transport + ": ");
    const s = document.createElement("span"); s.className = "legend-sent"; s.textContent = sent + " sent";
    const r = document.createElement("span"); r.className = "legend-received"; r.textContent = got + " received";
    cap.append(s, ", ", r);
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 600 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", transport + ": " + sent + " sent, " + got + " received in the last hour");
    const top = Math.max(1, ...minutes.map(m => Math.max(m.sent, m.received)));
    for (const m of minutes) {
      const x = ((m.minute - start) / 60) * 10;
      for (const [value, cls, dx] of [[m.sent, "sent", 0], [m.received, "received", 5]]) {
        if (!value) continue;
        const h = (value / top) * 100;
        const bar = document.createElementNS(NS, "rect");
        bar.setAttribute("x", x + dx); bar.setAttribute("width", 4.5);
        bar.setAttribute("y", 100 - h); bar.setAttribute("height", h);
        bar.setAttribute("class", cls);
        svg.appendChild(bar);
      }
    }
    fig.append(cap, svg);
    box.appendChild(fig);
  }
}

let loading = null;
function load() {
  // Many changes in a burst (a flush) cost one read.
  if (loading) return;
  loading = setTimeout(async () => {
    loading = null;
    try {
      const r = await fetch("/web/state", { cache: "no-store" });
      if (r.ok) draw(await r.json());
    } catch (e) { say("cannot read the state: " + e); }
  }, 150);
}

function say(text) { document.getElementById("said").textContent = text; }

async function act(path, body, done) {
  say("…");
  try {
    const r = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    const answer = await r.json().catch(() => ({}));
    say(r.ok ? done : (answer.cause || answer.error || r.statusText));
  } catch (e) { say(String(e)); }
  load();
}

document.querySelectorAll("[data-flush]").forEach(b => b.onclick = () => {
  const target = document.getElementById("target").value || null;
  act("/v1/flush", { on: spoolerId, target, flags: Number(b.dataset.flush) }, "flushed");
});
document.querySelectorAll("[data-switch]").forEach(b => b.onclick = () => {
  const on = document.getElementById("target").value || spoolerId;
  const offline = b.dataset.switch === "offline";
  act("/v1/validate", { on, flags: offline ? FORCE_XP_DISCONNECT : FORCE_XP_CONNECT }, offline ? "offline" : "online");
});

function follow() {
  const live = document.getElementById("live");
  const events = new EventSource("/web/events");
  events.onopen = () => { live.textContent = "live"; live.className = "on"; load(); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
  events.addEventListener("row", e => {
    const { row } = JSON.parse(e.data);
    rows.set(row.PR_ENTRYID, Object.assign(rows.get(row.PR_ENTRYID) || {}, row));
    drawStatus(row.PR_ENTRYID);
    load();
  });
}
load();
follow();
