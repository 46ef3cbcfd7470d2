// clawgate web chat: one WebSocket to the gateway, the store as the truth.
// Replies stream in as run.delta events; when a run ends the transcript is read again from
// the store, so what the page shows is what was recorded. After a reconnect the page asks
// for the events it missed (by seq), so a reload never shows a stale "running".
"use strict";

const ACTIVE = new Set(["queued", "running"]);
const DEFAULT_SESSION = "main";
// What becomes of a message sent during a reply, by the session's queue mode.
const QUEUED = {
  followup: "queued: answered on its own after the current reply",
  collect: "queued: answered together with the other waiting messages after the current reply",
  steer: "handed to the current reply (at its next model call)",
  interrupt: "stopping the current reply to answer this",
};
// Why a message was dropped (its ``reason``), as the queue panel and the notices say it.
const DROPPED = {
  queue_full_oldest: "the queue was full (the oldest waiting message is dropped)",
  queue_full_newest: "the queue was full (the newest message is dropped)",
  queue_full_summarized: "the queue was full (dropped; the next reply is told what it said)",
  stopped: "cleared by stop, or withdrawn when its sender left",  // (Stop, /stop, any client)
  reset: "cleared when the session was reset or deleted",
  superseded: "superseded by a newer message (interrupt mode)",
};
// What became of the summary of a message the full queue dropped (its ``summaryCleared``).
const SUMMARY_CLEARED = {
  stopped: "the queue was full (dropped; its summary was cleared by a stop)",
  reset: "the queue was full (dropped; its summary was cleared by the reset)",
};
const SESSIONS_SHOWN = 200;  // the session list's first page; "show more" adds as many again
const SESSIONS_MOST = 5000;  // the most sessions.list gives; open the others by name
const KEY_RULE = "use 1 to 128 letters, digits and . _ : @ + - /";
// Errors after which a message is sent again once the gateway is back.
const RESEND = new Set(["not_connected", "shutting_down"]);
// What typed is a stop (as the gateway reads it): sent as Stop sends it, so it is answered at
// once, even while a /compact is under way.
const STOP_TYPED = new Set(["stop", "stop!", "stop.", "/stop"]);
const DROPS_SHOWN = 20;  // lines naming dropped messages under the notice, at most
const PREVIEW = 60;  // characters of a dropped message the notice shows, to say which
const state = {
  token: null, ws: null, nextId: 1, waiting: new Map(), lastSeq: 0, session: null,
  sessions: new Map(), streaming: new Map(), delay: 500, queueTimer: null, stick: true,
  replies: new Map(),  // runId -> the reply it is streaming (replies.js), every session's
  listLimit: SESSIONS_SHOWN, total: 0,  // sessions listed at most, and how many there are
  shown: null,  // the shown session's row (it may be beyond the list's end)
  badges: new Map(),  // session key -> its status badge in the list
  outgoing: null,  // the message not yet acknowledged: {session, text, idempotencyKey, resend}
  status: "idle",  // the shown session's
  // The notice: what the page did last (`text`), then a line for each message of the shown
  // session dropped since ({n, id, line}); `waiting`: the message the text says is queued;
  // `named`: messages the text names already.
  said: {text: "", waiting: null, named: new Set(), drops: [], cut: 0},
  dropsSeen: 0,  // drop lines made so far (each one's `n`)
  compacting: new Map(),  // session key -> its /compact requests not yet answered
};
const $ = (id) => document.getElementById(id);

function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    localStorage.setItem("clawgate.token", fromLink);
    history.replaceState(null, "", location.pathname);  // keep the token out of the address
  }
  state.token = localStorage.getItem("clawgate.token");
  $("login-form").addEventListener("submit", (e) => {  // no reload: what is typed stays
    e.preventDefault();
    state.token = $("token-input").value.trim();
    localStorage.setItem("clawgate.token", state.token);
    $("login").hidden = true;
    checkToken().catch(report);
  });
  bindControls();
  followTranscript();
  if (state.token) checkToken(); else showLogin("");
}

// The token is checked before connecting; a gateway that cannot be reached is said to be
// away, and tried again, rather than leaving the page blank.
async function checkToken() {
  let refused;
  try {
    refused = await tokenRefused();
  } catch (error) {
    $("app").hidden = false;
    setConnected(false);
    notice(`cannot reach the gateway (${error.message}); trying again`);
    setTimeout(() => checkToken().catch(report), nextDelay());
    return;
  }
  if (refused) { showLogin("That token was refused."); return; }
  $("app").hidden = false;
  notice("");
  connect();
}

// True when the gateway refuses the token (401); fails when the gateway cannot be reached.
async function tokenRefused() {
  const reply = await fetch("/v1/models", {headers: {Authorization: `Bearer ${state.token}`}});
  return reply.status === 401;
}

function nextDelay() {
  const delay = state.delay;
  state.delay = Math.min(state.delay * 2, 5000);
  return delay;
}

function showLogin(message) {
  $("login").hidden = false;
  $("app").hidden = true;
  $("login-error").textContent = message;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => { state.delay = 500; setConnected(true); onConnected().catch(report); };
  ws.onmessage = (message) => onFrame(JSON.parse(message.data));
  ws.onclose = () => {
    setConnected(false);
    for (const {reject} of state.waiting.values()) reject(notConnected("connection lost"));
    state.waiting.clear();
    reconnect().catch(report);
  };
}

// A closed connection is opened again, unless the gateway now refuses the token (it was
// changed, or the gateway's home replaced): a browser does not say why a WebSocket
// handshake failed, so the token is checked over HTTP, and the login asks for the new one.
async function reconnect() {
  let refused = false;
  try {
    refused = await tokenRefused();
  } catch {
    // the gateway is away: try again later
  }
  if (refused) { showLogin("That token was refused."); return; }
  setTimeout(connect, nextDelay());
}

function setConnected(up) {
  $("connection").classList.toggle("up", up);
  $("connection").title = up ? "connected" : "reconnecting";
}

function request(method, params = {}) {
  return new Promise((resolve, reject) => {
    if (state.ws?.readyState !== WebSocket.OPEN) {
      reject(notConnected("not connected to the gateway"));
      return;
    }
    const id = state.nextId++;
    state.waiting.set(id, {resolve, reject});
    state.ws.send(JSON.stringify({type: "req", id, method, params}));
  });
}

function notConnected(message) {
  return Object.assign(new Error(message), {code: "not_connected"});
}

function onFrame(frame) {
  if (frame.type === "res") {
    const waiter = state.waiting.get(frame.id);
    state.waiting.delete(frame.id);
    if (!waiter) return;
    if (frame.ok) waiter.resolve(frame.payload);
    else waiter.reject(Object.assign(new Error(frame.error.message), {code: frame.error.code}));
    return;
  }
  onEvent(frame);
}

async function onConnected() {
  try {
    await resync();
  } finally {
    await resendOutgoing();
  }
}

async function resync() {
  // Every session's events (for the list); after a reconnect, only what was missed.
  const params = state.lastSeq ? {after: state.lastSeq} : {};
  const subscribed = await request("events.subscribe", params);
  state.lastSeq = subscribed.lastSeq;  // after a reset (another database), the server's newest
  state.replies.clear();  // text streamed while away is missing: the history has it
  await refreshSessions();
  await openSession(state.session || localStorage.getItem("clawgate.session") || DEFAULT_SESSION);
}

function onEvent(frame) {
  if (frame.seq !== null) state.lastSeq = Math.max(state.lastSeq, frame.seq);
  const kind = frame.event, p = frame.payload;
  if (kind === "feed.lagged") { request("events.subscribe", {after: state.lastSeq}); return; }
  if (kind === "gateway.shutdown") {  // the connection's own event: no session, no seq
    notice(`the gateway is shutting down: replies in progress may finish for ` +
           `${p.graceSeconds}s; a message sent now is kept here and sent when it is back`);
    return;
  }
  if (kind.startsWith("session.")) refreshSessionsSoon();
  if (kind === "run.delta") { takeDelta(p); return; }
  if (kind.startsWith("run.") && p.status) {
    rememberStatus(p.session, p.status);
    if (!ACTIVE.has(p.status)) state.replies.delete(p.runId);  // its text is stored now
  }
  if (p.session !== state.session) return;
  if (kind.startsWith("run.")) onRunEvent(p);
  if (kind.startsWith("message.")) scheduleQueueRefresh();
  if (kind === "message.merged") readTranscriptAgain();  // steered in: it, and the reply so far
  if (kind === "message.dropped") droppedHere(p);
  if (kind === "session.model" || kind === "session.queue") scheduleQueueRefresh();  // the header
  if (kind === "session.created") openSession(state.session).catch(report);
  if (kind === "session.archived") shownSessionArchived().catch(report);
}

// The shown session was archived by someone else: reset (a fresh conversation under the same
// name, which shows empty) or deleted, which is said, so that the page does not just empty.
async function shownSessionArchived() {
  const key = state.session;
  await openSession(key);
  if (key === state.session && state.shown === null) {
    notice(`session "${key}" was deleted elsewhere (its transcript is archived); ` +
      "a message sent here starts it afresh", {since: 0});  // (with what it dropped)
  }
}

// A run that starts has put the messages it answers in the transcript, and one that ends
// its reply: the transcript is read again either way (the question shows while its reply
// is written, in every tab). So does a message steered into a running reply (above): the
// reply so far and the message are stored then, and the rest of the reply shows after them.
function onRunEvent(p) {
  setStatus(p.status, p.error);
  readTranscriptAgain();
  if (!ACTIVE.has(p.status)) scheduleQueueRefresh();
}

function rememberStatus(key, status) {
  const row = rowOf(key);
  if (!row) return;
  row.status = status;
  const badge = state.badges.get(key);
  if (badge) setBadge(badge, row);
}

// The session's row, if the page has it: listed, or the one shown (opened by name).
function rowOf(key) {
  return state.sessions.get(key) || (state.shown?.key === key ? state.shown : null);
}

async function refreshSessions() {
  const listed = await request("sessions.list", {limit: state.listLimit});
  state.sessions = new Map(listed.sessions.map((s) => [s.key, s]));
  state.total = listed.total ?? listed.sessions.length;
  renderSessions();
}

// The list is read again after session events, but at most one reading at a time: a burst
// of events (hundreds of new sessions) is a few readings, not one per event.
const refreshSessionsSoon = coalesced(refreshSessions, 200);

function renderSessions() {
  state.badges.clear();
  const keys = [...state.sessions.keys()];
  if (state.session && !state.sessions.has(state.session)) keys.unshift(state.session);
  $("session-list").replaceChildren(...keys.map(sessionItem));
  const listed = state.sessions.size;
  $("session-more").hidden = state.total <= listed;
  $("session-count").textContent = `showing ${listed} of ${state.total}` +
    (state.listLimit >= SESSIONS_MOST ? " (open the others by name)" : "");
  $("show-more").hidden = state.listLimit >= SESSIONS_MOST;
}

function sessionItem(key) {
  const item = document.createElement("li");
  item.dataset.session = key;
  item.classList.toggle("current", key === state.session);
  const name = document.createElement("span");
  name.textContent = key;
  const badge = document.createElement("span");
  setBadge(badge, rowOf(key));
  state.badges.set(key, badge);
  item.append(name, badge);
  item.addEventListener("click", () => choose(key).catch(report));
  return item;
}

function setBadge(badge, row) {  // no row: a session with nothing said yet
  badge.className = `badge ${row ? row.status : "idle"}`;
  badge.textContent = row ? row.status : "new";
}

// On a narrow screen the sessions are a panel above the chat, opened and closed by a button
// (on a wide one they are always there, and this changes nothing).
function showSessionPanel(open) {
  $("app").classList.toggle("sessions-open", open);
  $("sessions-toggle").setAttribute("aria-expanded", String(open));
}

async function showMoreSessions() {
  state.listLimit = Math.min(state.listLimit + SESSIONS_SHOWN, SESSIONS_MOST);
  await refreshSessions();
}

// A session is shown, and remembered, only once the gateway accepted its name.
async function openSession(key) {
  let history;
  try {
    history = await readHistory(key);
  } catch (error) {
    if (error.code !== "invalid_params") throw error;
    await refuseSession(key, error);
    return;
  }
  const switched = key !== state.session;
  if (switched) notice("");  // what was said about the session shown before
  state.session = key;
  localStorage.setItem("clawgate.session", key);
  $("session-key").textContent = key;
  showHistory(history, switched);  // (and Stop, for this session)
  renderSessions();
  await refreshQueue();
}

// A refused name is forgotten (an older page may have remembered it); with no session shown
// yet, the default one opens instead, so the page is never stuck on it.
async function refuseSession(key, error) {
  if (localStorage.getItem("clawgate.session") === key) localStorage.removeItem("clawgate.session");
  if (state.session === null && key !== DEFAULT_SESSION) await openSession(DEFAULT_SESSION);
  notice(`session "${key}" was refused: ${error.message}`);
}

async function readHistory(key) {
  try {
    return await request("chat.history", {session: key});
  } catch (error) {
    if (error.code !== "unknown_session") throw error;
    return {session: {status: "idle", model: "", modelProvider: ""}, entries: []};
  }
}

async function loadTranscript() {
  const key = state.session;
  const history = await readHistory(key);
  if (key === state.session) showHistory(history);
}

const readTranscriptAgain = coalesced(loadTranscript);

// `task` (after `pause` ms), never two at once: asked again while it is under way, it runs
// once more after it. A burst of asks is so two runs, and the last sees the newest state.
function coalesced(task, pause = 0) {
  let busy = false, again = false;
  const run = () => {
    if (busy) { again = true; return; }
    busy = true;
    setTimeout(() => task().catch(report).finally(() => {
      busy = false;
      if (again) { again = false; run(); }
    }), pause);
  };
  return run;
}

// A session just opened shows its end; the same one read again (a run ended, a command)
// keeps the reader's place unless they were at the end.
function showHistory(history, switched = false) {
  const transcript = $("transcript");
  transcript.replaceChildren(...history.entries.map(entryElement));
  state.streaming.clear();
  const s = history.session;
  state.shown = s.key ? s : null;  // a session with nothing said yet has no row
  // A reply being written shows all of it so far; "reply in progress…" while none of it is
  // here (nothing said yet, or said in another gateway process: it shows when it ends).
  const partial = history.partial, runId = partial?.runId;
  if (partial) state.replies.set(runId, withPartial(state.replies.get(runId), partial));
  if (partial && state.replies.get(runId).text) showReply(runId);
  else if (s.status === "running") transcript.append(replyPending());
  showSettings(s);
  setStatus(s.status, s.error);
  if (switched) state.stick = true;
  if (state.stick) transcript.scrollTop = transcript.scrollHeight;
}

// Keep the newest text in view while the reader is at the end, whatever makes it move
// (new text, or the queue panel growing); a reader who scrolled up stays where they are.
function followTranscript() {
  const transcript = $("transcript");
  transcript.addEventListener("scroll", () => {
    const below = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight;
    state.stick = below < 48;
  });
  const keep = () => { if (state.stick) transcript.scrollTop = transcript.scrollHeight; };
  new ResizeObserver(keep).observe(transcript);
  new MutationObserver(keep).observe(transcript,
    {childList: true, subtree: true, characterData: true});
}

function entryElement(entry) {
  const element = document.createElement("div");
  element.className = `entry ${entry.role}`;
  if (entry.stopped) element.classList.add("stopped");
  element.textContent = entry.summary ? `Summary of earlier turns: ${entry.text}` : entry.text;
  return element;
}

// Reply text, for any session: kept per run, shown when it is the shown session's.
function takeDelta(p) {
  let reply = state.replies.get(p.runId);
  if (!reply) state.replies.set(p.runId, reply = newReply());
  const added = takePiece(reply, p.offset ?? reply.end, p.text);
  if (p.session !== state.session) return;
  if (hasGap(reply)) readTranscriptAgain();  // text before this is missing: the history has it
  const element = state.streaming.get(p.runId);
  if (!element) showReply(p.runId);
  else if (added) element.append(added);
}

// The bubble of a reply being written, with all its text so far.
function showReply(runId) {
  const reply = state.replies.get(runId);
  if (!reply.text) return;  // nothing said yet: "reply in progress…" says so
  $("transcript").querySelector(".reply-pending")?.remove();
  const element = entryElement({role: "assistant", text: reply.text.replace(/^\n+/, "")});
  element.classList.add("streaming");
  element.dataset.run = runId;
  element.dataset.testid = "streaming";
  state.streaming.set(runId, element);
  $("transcript").append(element);
}

// Shown while a reply is being written and none of its text is here yet.
function replyPending() {
  const element = entryElement({role: "note", text: "reply in progress…"});
  element.classList.add("reply-pending");
  element.dataset.testid = "reply-pending";
  return element;
}

// The session's status, and beside it why its last run did not end done (failed, timed
// out, stopped), from the run's end or, after a reload, from the stored run.
function setStatus(status, error) {
  const badge = $("session-status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
  state.status = status;
  showStoppable();
  $("run-error").textContent = ACTIVE.has(status) || status === "done" ? "" : error || "";
}

// Stop is there while the shown session has a reply under way, or a /compact sent from here.
function showStoppable() {
  const compacting = state.compacting.has(state.session);
  $("compacting").hidden = !compacting;
  $("stop").disabled = !ACTIVE.has(state.status) && !compacting;
}

// A /compact may take as long as a model call: while it is under way the page says so.
function compacting(key, by) {
  const count = (state.compacting.get(key) || 0) + by;
  if (count > 0) state.compacting.set(key, count); else state.compacting.delete(key);
  showStoppable();
}

function isCompact(text) { return text.trim().toLowerCase() === "/compact"; }

// The session's model and queue mode (the ones in force), in the header; none before the
// session has a row.
function showSettings(row) {
  $("session-model").textContent = row.modelProvider ? `${row.modelProvider}/${row.model}` : "";
  const queue = row.queue;
  $("session-queue").textContent = queue ? `queue: ${queue.mode}` : "";
  $("session-queue").title = queue ? `what becomes of a message sent during a reply: ` +
    `${queue.mode}; debounce ${queue.debounceMs} ms, cap ${queue.cap}, drop ${queue.drop}` : "";
}

// The messages and their fates, and the header's settings, read again (soon).
function scheduleQueueRefresh() {
  clearTimeout(state.queueTimer);
  state.queueTimer = setTimeout(() => refreshQueue().catch(report), 100);
}

async function refreshQueue() {
  const key = state.session;
  let got = {inbound: [], runs: []};
  try {
    got = await request("sessions.get", {session: key, limit: 20});
  } catch (error) {
    if (error.code !== "unknown_session") throw error;
  }
  if (key !== state.session) return;
  if (got.key) showSettings(got);  // changed by a command, or elsewhere
  const ended = new Map(got.runs.map((run) => [run.id, run.status]));
  $("queue-list").replaceChildren(...got.inbound.slice().reverse().map((m) => {
    const item = document.createElement("li");
    const fate = document.createElement("span");
    fate.className = `fate ${m.fate}`;
    fate.textContent = fateText(m, ended.get(m.runId));
    const text = document.createElement("span");
    text.textContent = m.text;
    item.append(fate, text);
    return item;
  }));
}

// A message's fate in words, as `clawgate sessions show` says it: "answered" says a run took
// the message up, and how that run ended when it did not end with a reply.
function fateText(message, runStatus) {
  if (message.fate === "dropped") return `dropped: ${droppedText(message)}`;
  if (!runStatus || runStatus === "done" || ACTIVE.has(runStatus)) return message.fate;
  return `${message.fate} (run ${runStatus})`;
}

function bindControls() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send().catch(report); });
  $("message").addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey || composing(e)) return;
    e.preventDefault();
    send().catch(report);
  });
  $("stop").addEventListener("click", () => stop().catch(report));
  $("show-more").addEventListener("click", () => showMoreSessions().catch(report));
  $("sessions-toggle").addEventListener("click", () => showSessionPanel(
    !$("app").classList.contains("sessions-open")));
  $("new-session").addEventListener("submit", (e) => {
    e.preventDefault();
    openNamed().catch(report);
  });
}

// Enter that picks a word in an input method (Japanese, Chinese, ...) is not a send; Safari
// marks the keydown that ends a composition only by its keyCode.
function composing(e) { return e.isComposing || e.keyCode === 229; }

async function openNamed() {
  const input = $("new-session-key");
  const key = input.value.trim();
  input.value = key;
  if (!key) return;
  if (!input.checkValidity()) {  // the pattern attribute: the gateway's rule for a key
    notice(`"${key}" is not a session name: ${KEY_RULE}`);
    return;
  }
  await choose(key);
  if (state.session === key) input.value = "";
}

// The session the user picked (in the list, or by name) is shown; on a phone the session
// panel then folds away, back to the chat.
async function choose(key) {
  await openSession(key);
  if (state.session === key) showSessionPanel(false);
}

// The text stays in the box until the gateway acknowledged it. The message keeps its
// idempotency key until then, so sending it again (a second press, or after a reconnect)
// is never a second message.
async function send() {
  const text = typed();
  if (!text.trim()) return;
  if (!state.session) { notice("not connected: the message is kept; send it once connected"); return; }
  if (STOP_TYPED.has(text.trim().toLowerCase())) {
    await stop();
    if (typed() === text) $("message").value = "";
    return;
  }
  const last = state.outgoing;
  const same = last && last.session === state.session && last.text === text;
  state.outgoing = same ? last : {session: state.session, text, idempotencyKey: newKey()};
  await deliver(state.outgoing);
}

// The message as typed: a first line's indentation (code) is kept; trailing blanks are not.
function typed() { return $("message").value.trimEnd(); }

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

async function resendOutgoing() {
  const outgoing = state.outgoing;
  if (!outgoing?.resend) return;
  if (typed() !== outgoing.text) {
    state.outgoing = null;
    notice("not sent: the message was changed while offline; press Send to send it");
    return;
  }
  await deliver(outgoing);
}

async function deliver(outgoing) {
  outgoing.resend = false;
  const params = {session: outgoing.session, text: outgoing.text,
                  idempotencyKey: outgoing.idempotencyKey, channel: "webchat"};
  const since = state.dropsSeen;
  let ack;
  const compaction = isCompact(outgoing.text);
  if (compaction) compacting(outgoing.session, 1);
  try {
    ack = await request("chat.send", params);
  } catch (error) {
    if (!RESEND.has(error.code)) throw error;  // refused: the error shows, the text stays
    outgoing.resend = true;
    notice("not connected: the message is kept and will be sent when the gateway is back");
    return;
  } finally {
    if (compaction) compacting(outgoing.session, -1);
  }
  if (state.outgoing === outgoing) state.outgoing = null;
  // A message the full queue refused at once stays in the box, to be sent again later.
  if (typed() === outgoing.text && ack.fate !== "dropped") $("message").value = "";
  await acknowledged(ack, outgoing.session, since);
}

// What the gateway said of what was sent, with the messages it dropped meanwhile (`since`).
async function acknowledged(ack, key, since) {
  if (ack.command && key !== state.session) {  // a /compact that ended after a switch
    notice(`session "${key}": ${ack.reply}`);
    return;
  }
  state.stick = true;  // what you just sent, and its reply, come into view
  if (ack.command) {
    notice(ack.reply, {since});
    await openSession(state.session);
    return;
  }
  sayFate(ack, since);
  if (!rowOf(state.session)) await refreshSessions();  // the message made the session
  scheduleQueueRefresh();
}

// What became of a message just sent, as its acknowledgement says: dropped at once, or
// waiting behind the current reply, and which waiting messages the queue pushed out for it.
function sayFate(ack, since) {
  const pushedOut = (ack.dropped || []).map(
    (m) => ({id: m.id, line: dropLine(m.text, whyDropped(m.reason))}));
  const named = pushedOut.map((d) => d.id);
  if (ack.fate === "dropped") {
    notice(`dropped: ${whyDropped(ack.reason)}; this message will not be answered ` +
      "(it is back in the box to send again later)",
    {since, named: [...named, ack.messageId], drops: pushedOut});
    return;
  }
  const queued = ack.queuedBehind ? QUEUED[ack.queueMode] || "queued behind the current reply" : "";
  notice(queued, {since, named, drops: pushedOut, waiting: queued ? ack.messageId : null});
}

// A message of the shown session was dropped (by anyone): the notice names it, unless it
// does already; one it says is queued is no longer, so that is no longer said.
function droppedHere(p) {
  const said = state.said;
  if (said.named.has(p.messageId) || said.drops.some((d) => d.id === p.messageId)) return;
  if (said.waiting === p.messageId) Object.assign(said, {text: "", waiting: null});
  addDrops(said, [{id: p.messageId, line: dropLine(p.preview, whyDropped(p.reason))}]);
  showNotice();
}

// `"<its start>" dropped: <why>`, as the terminal says it.
function dropLine(text, why) {
  const flat = (text || "").split(/\s+/).filter(Boolean).join(" ");
  const letters = [...flat];
  const start = letters.length > PREVIEW ? letters.slice(0, PREVIEW - 1).join("") + "…" : flat;
  return `${start ? `"${start}"` : "a message"} dropped: ${why}`;
}

function addDrops(said, drops) {
  for (const drop of drops) said.drops.push({...drop, n: state.dropsSeen++});
  const over = said.drops.length - DROPS_SHOWN;
  if (over > 0) { said.drops.splice(0, over); said.cut += over; }
}

// Why a stored message was dropped; for a summarized one, what became of its summary.
function droppedText(message) {
  if (message.reason !== "queue_full_summarized") return whyDropped(message.reason);
  if (message.summaryCleared) return SUMMARY_CLEARED[message.summaryCleared];
  if (message.runId) return "the queue was full (dropped; a later reply was told what it said)";
  return whyDropped(message.reason);
}

function whyDropped(reason) { return DROPPED[reason] || reason || "no reason recorded"; }

async function stop() {
  const since = state.dropsSeen;
  const result = await request("chat.abort", {session: state.session});
  notice(result.text, {since});  // with the waiting messages it dropped, named
}

// Say `text`, and name `drops`; of the messages named since, those dropped from drop line
// `since` on are still named (they were dropped while what `text` answers was under way).
function notice(text, {since = Infinity, named = [], drops = [], waiting = null} = {}) {
  const taken = new Set(named);
  const kept = state.said.drops.filter((d) => d.n >= since && !taken.has(d.id));
  state.said = {text, waiting, named: taken, drops: kept, cut: 0};
  addDrops(state.said, drops);
  showNotice();
}

function showNotice() {
  const {text, drops, cut} = state.said;
  const more = cut ? [`(and ${cut} more dropped: see Messages)`] : [];
  const lines = [text, ...more, ...drops.map((d) => d.line)].filter(Boolean);
  $("notice").textContent = lines.join("\n");
  $("notice").classList.toggle("lines", text.includes("\n"));  // /help, /status: a table
}
function report(error) { notice(`error: ${error.message}`); }

start();
