// The demo client. One WebSocket (graphql-transport-ws, docs/protocols.md) carries the chatEvents subscription
// and every query and mutation the page makes. A plain ES module: no build step, no dependencies.

const TYPING_REFRESH_MS = 3000; // re-announce typing while keys keep coming (the server forgets it after TYPING_TTL)
const TYPING_IDLE_MS = 4000; // stop typing this long after the last keystroke
const RECONNECT_MAX_MS = 10000;
const NOTIFICATION_MS = 8000;
const MAX_NOTIFICATIONS = 3; // toasts shown at once: a burst pushes out the oldest
const QUICK_REACTIONS = ["👍", "❤️", "😂"];
const PAGE = 50; // messages per history request: the newest page on opening a chat, then older pages on scrolling up
const NEAR_TOP_PX = 200; // scrolled this close to the top of the history, the next older page is read
const AT_BOTTOM_PX = 48; // this close to the bottom counts as at the bottom: new messages keep the reader there
const WIDE = matchMedia("(min-width: 48rem)"); // two panes (app.css); narrower, a phone: one pane at a time

const MESSAGE = `fragment Msg on Message {
  id chatId seq content createdAt editedAt deletedAt sender { id email } reactions { emoji count reactedByMe }
}`;
const EVENTS = `subscription Events($after: String) {
  chatEvents(after: $after) {
    __typename
    ... on NewMessage { cursor message { ...Msg } }
    ... on MessagesRead { cursor chatId userId lastReadSeq }
    ... on UserTyping { chatId userId }
    ... on UserStoppedTyping { chatId userId }
    ... on UserOnline { userId }
    ... on UserOffline { userId }
    ... on ChatCreated { cursor }
    ... on ChatMemberAdded { cursor }
    ... on ChatMemberRemoved { cursor }
    ... on UserJoined { cursor }
    ... on UserLeft { cursor }
    ... on GlobalNotification { cursor payload }
    ... on MessageEdited { cursor chatId messageId content editedAt }
    ... on MessageDeleted { cursor chatId messageId deletedAt }
    ... on ReactionChanged { cursor chatId messageId userId emoji added counts { emoji count } }
    ... on ResyncRequired { reason }
  }
} ${MESSAGE}`;
const CURSOR = "query Cursor { eventCursor }";
const SNAPSHOT = `query Snapshot {
  me { id email }
  myChats { id name isGroup unreadCount participants { id email } lastMessage { ...Msg } readMarkers { userId lastReadSeq } }
  chatStatus { chats { chatId typingUserIds onlineUserIds } }
} ${MESSAGE}`;
const HISTORY = `query History($chatId: ID!, $before: Int, $limit: Int!) {
  messages(chatId: $chatId, before: $before, limit: $limit) { ...Msg }
} ${MESSAGE}`;
const SEND = `mutation Send($chatId: ID!, $content: String!, $clientId: String) {
  sendMessage(chatId: $chatId, content: $content, clientId: $clientId) { ...Msg }
} ${MESSAGE}`;
const MARK_READ = "mutation Read($chatId: ID!) { markRead(chatId: $chatId) { lastReadSeq } }";
const EDIT = `mutation Edit($id: ID!, $content: String!, $clientId: String) {
  editMessage(id: $id, content: $content, clientId: $clientId) { id }
}`;
const DELETE = "mutation Delete($id: ID!) { deleteMessage(id: $id) { id } }";
const ADD_REACTION = "mutation React($id: ID!, $emoji: String!) { addReaction(messageId: $id, emoji: $emoji) { id } }";
const REMOVE_REACTION = "mutation Unreact($id: ID!, $emoji: String!) { removeReaction(messageId: $id, emoji: $emoji) { id } }";
const SET_TYPING = "mutation Typing($chatId: ID!, $isTyping: Boolean!) { setTyping(chatId: $chatId, isTyping: $isTyping) }";

class GraphQLFailure extends Error {
  constructor(errors) {
    const first = errors?.[0] ?? {};
    super(first.message ?? "request failed");
    this.code = first.extensions?.code ?? "INTERNAL";
  }
}

/** A minimal graphql-transport-ws client: operations over one socket, reconnecting with backoff. */
class GraphQLSocket {
  constructor(url, token, { open, offline, refused }) {
    Object.assign(this, { url, token, onOpen: open, onOffline: offline, onRefused: refused });
    this.nextId = 1;
    this.operations = new Map(); // id -> {next, fail, done}
    this.attempt = 0;
    this.stopped = false;
  }

  connect() {
    const ws = new WebSocket(this.url, "graphql-transport-ws");
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { token: this.token } }));
    ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    ws.onclose = (e) => this.closed(e);
  }

  stop() {
    this.stopped = true;
    this.ws?.close(1000);
  }

  /** Close and reconnect (with backoff): the way back to a consistent state after a failure. */
  restart() {
    this.ws?.close(1000);
  }

  receive(msg) {
    const op = this.operations.get(msg.id);
    switch (msg.type) {
      case "connection_ack":
        this.attempt = 0;
        this.onOpen();
        break;
      case "ping":
        this.ws.send(JSON.stringify({ type: "pong" }));
        break;
      case "next":
        op?.next(msg.payload);
        break;
      case "error":
        this.operations.delete(msg.id);
        op?.fail(msg.payload);
        break;
      case "complete":
        this.operations.delete(msg.id);
        op?.done();
        break;
    }
  }

  closed(event) {
    const lost = [...this.operations.values()];
    this.operations.clear();
    for (const op of lost) op.fail([{ message: "connection lost", extensions: { code: "UNAVAILABLE" } }]);
    if (this.stopped) return;
    if (event.code === 4401 || event.code === 4403) {
      this.onRefused(event.reason || "the server refused this token");
      return;
    }
    this.onOffline();
    const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    setTimeout(() => this.connect(), delay);
  }

  start(query, variables, op) {
    if (this.ws?.readyState !== WebSocket.OPEN) {
      op.fail([{ message: "not connected", extensions: { code: "UNAVAILABLE" } }]);
      return;
    }
    const id = String(this.nextId++);
    this.operations.set(id, op);
    this.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }));
  }

  /** A query or mutation: resolves with its data, rejects with a GraphQLFailure carrying the error code. */
  request(query, variables = {}) {
    return new Promise((resolve, reject) => {
      let result = null;
      this.start(query, variables, {
        next: (payload) => (result = payload),
        fail: (errors) => reject(new GraphQLFailure(errors)),
        done: () => (result?.errors ? reject(new GraphQLFailure(result.errors)) : resolve(result?.data)),
      });
    });
  }

  subscribe(query, variables, onData, onError) {
    this.start(query, variables, {
      next: (payload) => (payload.errors ? onError(new GraphQLFailure(payload.errors)) : onData(payload.data)),
      fail: (errors) => onError(new GraphQLFailure(errors)),
      done: () => onError(new GraphQLFailure([{ message: "the stream ended", extensions: { code: "UNAVAILABLE" } }])),
    });
  }
}

// ---- state -------------------------------------------------------------------------------------------------

const state = {
  socket: null,
  me: null,
  chats: new Map(), // id -> {id, name, isGroup, unread, participants, lastMessage}
  active: null, // the open chat's id
  messages: new Map(), // chat id -> messages ascending by seq (loaded chats only)
  typing: new Map(), // chat id -> Set of user ids typing now
  online: new Set(), // ids of the users of my chats who are online now (the snapshot, then UserOnline / UserOffline)
  readBy: new Map(), // chat id -> Map user id -> last read seq of the others (read receipts)
  myRead: new Map(), // chat id -> my own read marker: where "New messages" begins when the chat is opened
  complete: new Set(), // ids of the chats whose first message is loaded: there is nothing older to read
  older: null, // the id of the chat whose older page is being read (one request at a time)
  divider: null, // {chatId, afterSeq}: the open chat's first message from the others after afterSeq was unread
  pinned: true, // the reader is at the bottom of the open chat's history: new messages keep them there
  cursor: null, // the last durable event applied (at first, eventCursor): a reconnect resumes after it
  loading: false, // a snapshot is being read: events are held until it is taken
  stale: false, // another snapshot is wanted (a chat was created, or joined)
  held: [],
  unsent: null, // {chatId, content, clientId} of a send that failed, for its retry
  editing: null, // {id, draft, focus} of my message being edited in the open chat
  // chat id -> the lists of edits, deletions and reactions that arrived while a history request of the chat was
  // out: its answer may predate them, so each is applied again on top of it (each sets a state: applying it twice
  // is the same as once).
  changesDuringHistory: new Map(),
};
const typingOut = { chatId: null, sentAt: 0, idle: null }; // this page's own typing announcement

const $ = (selector) => document.querySelector(selector);

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const displayName = (user) => user.email.split("@")[0];

function chatTitle(chat) {
  if (chat.name) return chat.name;
  const others = chat.participants.filter((p) => p.id !== state.me.id);
  return others.map(displayName).join(", ") || "just me";
}

function userName(chatId, userId) {
  const user = state.chats.get(chatId)?.participants.find((p) => p.id === userId);
  return user ? displayName(user) : "someone";
}

// ---- events from the server -------------------------------------------------------------------------------

function onEvent({ chatEvents: event }) {
  if (state.loading) state.held.push(event); // applied on top of the snapshot being read
  else apply(event);
}

function apply(event) {
  if (event.cursor) state.cursor = event.cursor;
  switch (event.__typename) {
    case "NewMessage":
      receiveMessage(event.message);
      break;
    case "MessagesRead":
      receiveRead(event);
      break;
    case "UserTyping":
    case "UserStoppedTyping":
      setTyping(event.chatId, event.userId, event.__typename === "UserTyping");
      break;
    case "UserOnline":
    case "UserOffline":
      setOnline(event.userId, event.__typename === "UserOnline");
      break;
    case "MessageEdited":
      changeMessage(event.chatId, event.messageId, (m) => Object.assign(m, { content: event.content, editedAt: event.editedAt }));
      break;
    case "MessageDeleted":
      if (state.editing?.id === event.messageId) state.editing = null;
      changeMessage(event.chatId, event.messageId, (m) => Object.assign(m, { content: "", deletedAt: event.deletedAt, reactions: [] }));
      break;
    case "ReactionChanged":
      changeMessage(event.chatId, event.messageId, (m) => (m.reactions = reactionsAfter(m.reactions ?? [], event)));
      break;
    case "GlobalNotification":
      showNotification(event.payload);
      break;
    case "ChatCreated":
    case "ChatMemberAdded":
    case "ChatMemberRemoved":
    case "ResyncRequired":
      reload();
      break;
  }
}

function receiveMessage(message) {
  const chat = state.chats.get(message.chatId);
  if (!chat) {
    reload(); // a chat this page has not seen yet
    return;
  }
  const mine = message.sender.id === state.me.id;
  const list = state.messages.get(chat.id);
  const added = list !== undefined && !list.some((m) => m.id === message.id);
  if (added) {
    list.push(message);
    list.sort((a, b) => a.seq - b.seq);
  }
  // Not newer than the chat's last message: already counted (a replay, or the send's own answer).
  const fresh = !chat.lastMessage || chat.lastMessage.seq < message.seq;
  if (fresh) chat.lastMessage = message;
  if (fresh && !mine) {
    state.typing.get(chat.id)?.delete(message.sender.id);
    if (isReading(chat.id)) markRead(chat.id);
    else chat.unread += 1;
  }
  renderChats();
  if (chat.id !== state.active) return;
  if (added && mine) state.pinned = true; // what I just sent comes into view wherever I was reading
  if (fresh && !mine) announce(`${displayName(message.sender)}: ${message.content}`);
  renderConversation();
}

/** An edit, deletion or reaction: applied to the message where this page has it (loaded, or the chat's preview). */
function changeMessage(chatId, messageId, change) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  for (const pending of state.changesDuringHistory.get(chatId) ?? []) pending.push({ messageId, change });
  const targets = new Set((state.messages.get(chatId) ?? []).filter((m) => m.id === messageId));
  const isLast = chat.lastMessage?.id === messageId;
  if (isLast) targets.add(chat.lastMessage);
  for (const message of targets) change(message);
  if (isLast) renderChats();
  if (chatId === state.active && targets.size > 0) renderConversation();
}

/** The event's counts are the same for everyone; "did I react" is this page's bookkeeping: my own changes
 * (from any of my devices) say it for their emoji, the others' keep what it was. */
function reactionsAfter(reactions, { userId, emoji, added, counts }) {
  const mine = new Map(reactions.map((r) => [r.emoji, r.reactedByMe]));
  if (userId === state.me.id) mine.set(emoji, added);
  return counts.map((c) => ({ emoji: c.emoji, count: c.count, reactedByMe: mine.get(c.emoji) ?? false }));
}

function receiveRead({ chatId, userId, lastReadSeq }) {
  if (userId === state.me.id) {
    // Read on one of my devices (this one or another): what is up to the marker is no longer unread here either.
    state.myRead.set(chatId, Math.max(state.myRead.get(chatId) ?? 0, lastReadSeq));
    const chat = state.chats.get(chatId);
    if (chat && lastReadSeq >= (chat.lastMessage?.seq ?? 0) && chat.unread > 0) {
      chat.unread = 0;
      renderChats();
    }
    return;
  }
  // The others' markers are read receipts.
  const readers = state.readBy.get(chatId) ?? new Map();
  readers.set(userId, Math.max(readers.get(userId) ?? 0, lastReadSeq));
  state.readBy.set(chatId, readers);
  if (chatId === state.active) renderConversation();
}

function setOnline(userId, online) {
  if (online === state.online.has(userId)) return; // one event per shared chat: the first one says it all
  if (online) state.online.add(userId);
  else state.online.delete(userId);
  renderChats();
  const chat = state.chats.get(state.active);
  if (chat) renderChatHeader(chat);
}

function setTyping(chatId, userId, typing) {
  if (userId === state.me.id) return;
  const users = state.typing.get(chatId) ?? new Set();
  if (typing) users.add(userId);
  else users.delete(userId);
  state.typing.set(chatId, users);
  if (chatId === state.active) renderTyping();
}

// ---- what this page does ----------------------------------------------------------------------------------

/** On every (re)connect: the events after the last position this page has seen (at first, the stream's
 * position read before anything else), then the snapshot, with what the stream brings meanwhile held and
 * applied on top of it. Durable events would be replayed from the cursor anyway; typing is not replayed, so
 * the stream is opened first: a typing stop that comes while the snapshot is read is applied, not lost. */
async function synchronize() {
  if (state.cursor === null) state.cursor = (await state.socket.request(CURSOR)).eventCursor;
  state.loading = true; // hold the stream's events until the snapshot is taken
  state.socket.subscribe(EVENTS, { after: state.cursor }, onEvent, (error) => {
    showError(error);
    state.socket.restart(); // a stream that failed or ended: reconnect (with backoff) and synchronize again
  });
  state.stale = true;
  await loadChats();
}

const isReading = (chatId) => chatId === state.active && document.visibilityState === "visible";

function reload() {
  state.stale = true;
  if (!state.loading) loadChats().catch(showError);
}

/** Read snapshots until none is stale; events that arrive meanwhile are held, then applied on top. */
async function loadChats() {
  state.loading = true;
  try {
    while (state.stale) {
      state.stale = false;
      takeSnapshot(await state.socket.request(SNAPSHOT));
    }
  } finally {
    state.loading = false;
    for (const event of state.held.splice(0)) apply(event);
  }
  renderChats();
  if (state.active) await openChat(state.active);
  else renderConversation();
}

function takeSnapshot(data) {
  state.me = data.me;
  $("#whoami").textContent = state.me.email;
  state.chats = new Map(
    data.myChats.map((c) => [
      c.id,
      { id: c.id, name: c.name, isGroup: c.isGroup, unread: c.unreadCount, participants: c.participants, lastMessage: c.lastMessage },
    ]),
  );
  for (const chat of data.myChats) {
    const readers = state.readBy.get(chat.id) ?? new Map();
    for (const { userId, lastReadSeq } of chat.readMarkers) {
      if (userId === state.me.id) state.myRead.set(chat.id, lastReadSeq);
      else readers.set(userId, Math.max(readers.get(userId) ?? 0, lastReadSeq));
    }
    state.readBy.set(chat.id, readers);
  }
  // Neither typing nor presence is replayed: who types and who is online now is what the server says now.
  state.online = new Set(data.chatStatus.chats.flatMap((c) => c.onlineUserIds));
  state.typing = new Map(
    data.chatStatus.chats.map((c) => [c.chatId, new Set(c.typingUserIds.filter((id) => id !== state.me.id))]),
  );
  if (state.active && !state.chats.has(state.active)) {
    Object.assign(state, { active: null, editing: null, divider: null }); // removed from it
    clearTimeout(typingOut.idle);
    Object.assign(typingOut, { chatId: null, sentAt: 0 });
  }
}

/** Open a chat (again, after a new snapshot): its newest page of history, read at the bottom. Opened with unread
 * messages, the first of them gets the "New messages" divider, placed from my read marker before it moves. */
async function openChat(chatId) {
  if (chatId !== state.active) {
    stopTyping();
    const unread = state.chats.get(chatId)?.unread > 0;
    const divider = unread ? { chatId, afterSeq: state.myRead.get(chatId) ?? 0 } : null;
    Object.assign(state, { editing: null, divider, pinned: true });
  }
  state.active = chatId;
  if (!state.messages.has(chatId)) state.messages.set(chatId, []); // live messages land here while history loads
  renderChats();
  renderConversation();
  const history = await historyOf(chatId);
  state.messages.set(chatId, history);
  if (state.active !== chatId) return;
  if (state.chats.get(chatId)?.unread > 0 && isReading(chatId)) markRead(chatId);
  renderConversation();
  fillPane(chatId);
}

/** Scrolled near the top: the page just before the oldest message loaded, one request at a time. The re-render
 * keeps the message the reader was looking at in its place (renderConversation). */
async function loadOlder() {
  const chatId = state.active;
  const oldest = state.messages.get(chatId)?.[0];
  if (!oldest || state.older !== null || state.complete.has(chatId)) return;
  state.older = chatId;
  try {
    state.messages.set(chatId, await historyOf(chatId, oldest.seq));
  } finally {
    state.older = null;
  }
  if (state.active !== chatId) return;
  renderConversation();
  fillPane(chatId);
}

/** A history shorter than its pane cannot be scrolled up: older pages are read until it is taller, or complete. */
function fillPane(chatId) {
  const pane = $("#messages");
  const short = pane.clientHeight > 0 && pane.scrollHeight <= pane.clientHeight;
  if (state.active === chatId && short) loadOlder().catch(showError);
}

/** A page of the chat's history (the newest, or the one before the seq `before`), merged with the messages this
 * page has (loaded before, or arrived live while it loaded), and with the changes (edits, deletions, reactions)
 * that arrived meanwhile applied on top: the answer may have been read before them. */
async function historyOf(chatId, before = null) {
  const pending = [];
  const waits = state.changesDuringHistory.get(chatId) ?? new Set();
  state.changesDuringHistory.set(chatId, waits.add(pending));
  let history;
  try {
    history = (await state.socket.request(HISTORY, { chatId, before, limit: PAGE })).messages;
  } finally {
    waits.delete(pending);
    if (waits.size === 0) state.changesDuringHistory.delete(chatId);
  }
  if (history.length < PAGE) state.complete.add(chatId); // a short page reached the chat's first message
  const byId = new Map([...history, ...(state.messages.get(chatId) ?? [])].map((m) => [m.id, m]));
  for (const { messageId, change } of pending) {
    const message = byId.get(messageId);
    if (message) change(message);
  }
  return [...byId.values()].sort((a, b) => a.seq - b.seq);
}

/** A chat picked in the list. A phone shows it in place of the list, so it gets an entry in the browser's history:
 * the system's back gesture returns to the list as the back button does. */
function selectChat(chatId) {
  if (window.history.state?.chatId) window.history.replaceState({ chatId }, "");
  else window.history.pushState({ chatId }, "");
  openChat(chatId)
    .then(() => focusConversation(chatId))
    .catch(showError);
}

/** Where the keyboard goes once a picked chat is shown: the message box beside the list; on a phone the chat's
 * title, so a screen reader says which chat opened (the on-screen keyboard stays down until the box is tapped). */
function focusConversation(chatId) {
  if (state.active !== chatId) return;
  if (WIDE.matches) $("#message-input").focus();
  else $("#chat-title").focus();
}

/** The back button (and Escape on a phone): the way the chat was entered, so the browser's history stays in step. */
function goBack() {
  if (window.history.state?.chatId) window.history.back();
  else leaveChat();
}

/** Back to the chat list, with the focus on the chat just left; the chat is no longer being read. */
function leaveChat() {
  const left = state.active;
  if (left === null) return;
  stopTyping();
  Object.assign(state, { active: null, editing: null, divider: null });
  renderChats();
  renderConversation();
  $(`#chats button[data-chat-id="${left}"]`)?.focus();
}

function markRead(chatId) {
  const chat = state.chats.get(chatId);
  if (chat) chat.unread = 0;
  renderChats();
  state.socket.request(MARK_READ, { chatId }).catch(showError);
}

async function send(content) {
  const chatId = state.active;
  stopTyping();
  // A retry of a send that failed keeps its client id: if the first attempt did reach the server, the server
  // answers with that message instead of storing a second one.
  const retry = state.unsent?.chatId === chatId && state.unsent.content === content;
  const clientId = retry ? state.unsent.clientId : newClientId();
  state.unsent = { chatId, content, clientId };
  const data = await state.socket.request(SEND, { chatId, content, clientId });
  state.unsent = null;
  receiveMessage(data.sendMessage); // the subscription brings it too; it is kept once
}

const newClientId = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
const findMessage = (chatId, id) => state.messages.get(chatId)?.find((m) => m.id === id);

// Edits, deletions and reactions change the page when their events come back (to every device of mine too).

function startEditing(message) {
  state.editing = { id: message.id, draft: message.content, focus: true };
  renderConversation();
}

function cancelEditing() {
  state.editing = null;
  renderConversation();
}

function saveEdit(chatId) {
  const { id, draft } = state.editing;
  const content = draft.trim();
  if (!content) return; // an empty message is no message: Delete is for that
  state.editing = null;
  renderConversation();
  if (content === findMessage(chatId, id)?.content) return;
  state.socket.request(EDIT, { id, content, clientId: newClientId() }).catch(showError);
}

function deleteMessage(message) {
  state.socket.request(DELETE, { id: message.id }).catch(showError);
}

function toggleReaction(chatId, id, emoji) {
  const reacted = findMessage(chatId, id)?.reactions?.some((r) => r.emoji === emoji && r.reactedByMe);
  state.socket.request(reacted ? REMOVE_REACTION : ADD_REACTION, { id, emoji }).catch(showError);
}

function typed() {
  const chatId = state.active;
  if (!chatId) return;
  const now = Date.now();
  if (typingOut.chatId !== chatId || now - typingOut.sentAt > TYPING_REFRESH_MS) {
    Object.assign(typingOut, { chatId, sentAt: now });
    state.socket.request(SET_TYPING, { chatId, isTyping: true }).catch(showError);
  }
  clearTimeout(typingOut.idle);
  typingOut.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(typingOut.idle);
  if (typingOut.chatId === null) return;
  const chatId = typingOut.chatId;
  Object.assign(typingOut, { chatId: null, sentAt: 0 });
  state.socket.request(SET_TYPING, { chatId, isTyping: false }).catch(showError);
}

// ---- rendering --------------------------------------------------------------------------------------------

const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const WEEKDAY = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const SHORT_DATE = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const LONG_DATE = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric" });
const FULL_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

/** Whole calendar days from `date` to today, in the reader's time zone (a day is not always 24 hours). */
function daysAgo(date) {
  const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  return Math.round((midnight(new Date()) - midnight(date)) / 86_400_000);
}

/** A day as the history labels it: Today, Yesterday, a weekday and date this year, a full date before. */
function dayName(date) {
  const days = daysAgo(date);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return date.getFullYear() === new Date().getFullYear() ? WEEKDAY.format(date) : LONG_DATE.format(date);
}

/** When a chat's last message was sent, short enough for the chat list. */
function shortWhen(date) {
  const days = daysAgo(date);
  if (days === 0) return CLOCK.format(date);
  return days === 1 ? "Yesterday" : SHORT_DATE.format(date);
}

function timeElement(iso, text) {
  const date = new Date(iso);
  return element("time", { className: "time", dateTime: iso, textContent: text(date), title: FULL_TIME.format(date) });
}

/** A person's or a group's colour, the same on every page: a hue from its id. */
function hueOf(id) {
  let hue = 0;
  for (const char of id) hue = (hue * 31 + char.charCodeAt(0)) % 360;
  return hue;
}

function initials(name) {
  const words = name.split(/[\s._-]+/).filter(Boolean);
  const first = (word) => [...word][0] ?? "";
  return (words.length > 1 ? first(words[0]) + first(words[1]) : first(words[0] ?? "?")).toUpperCase();
}

/** An initials avatar of `face` ({id, name}); decoration only, the name is always written beside it. */
function avatar(face, className = "avatar") {
  return paintAvatar(element("span", { className }), face);
}

function paintAvatar(node, face) {
  node.textContent = initials(face.name);
  node.style.setProperty("--hue", String(hueOf(face.id)));
  node.setAttribute("aria-hidden", "true");
  return node;
}

const othersIn = (chat) => chat.participants.filter((p) => p.id !== state.me.id);

/** Whose face a chat shows: the other person of a 1:1 chat, else the chat itself. */
function chatFace(chat) {
  const others = othersIn(chat);
  if (chat.isGroup || others.length !== 1) return { id: chat.id, name: chatTitle(chat) };
  return { id: others[0].id, name: displayName(others[0]) };
}

const anyoneOnline = (chat) => othersIn(chat).some((p) => state.online.has(p.id));

function renderChats() {
  const chats = [...state.chats.values()].sort(
    (a, b) => (b.lastMessage?.createdAt ?? "").localeCompare(a.lastMessage?.createdAt ?? ""),
  );
  $("#chats").replaceChildren(...chats.map((chat) => element("li", {}, chatButton(chat))));
  $("#no-chats").hidden = chats.length > 0;
}

function chatButton(chat) {
  const last = chat.lastMessage;
  const text = last ? (last.deletedAt ? "message deleted" : last.content) : "No messages yet";
  const online = anyoneOnline(chat); // the dot: somebody else in the chat is online now
  const dot = element("span", { className: "presence", title: online ? "online" : "offline" });
  dot.dataset.online = String(online);
  const badge = element("span", { className: "badge", textContent: String(chat.unread) });
  badge.hidden = chat.unread === 0;
  const button = element(
    "button",
    { type: "button" },
    element("span", { className: "portrait" }, avatar(chatFace(chat)), dot),
    element("span", { className: "title", textContent: chatTitle(chat) }),
    last ? timeElement(last.createdAt, shortWhen) : element("span", { className: "time" }),
    element("span", { className: "preview", textContent: text }),
    badge,
  );
  const unread = chat.unread > 0 ? `, ${chat.unread} unread` : "";
  button.setAttribute("aria-label", `${chatTitle(chat)}${online ? ", online" : ""}${unread}: ${text}`);
  button.dataset.chatId = chat.id;
  button.setAttribute("aria-current", String(chat.id === state.active));
  button.addEventListener("click", () => selectChat(chat.id));
  return button;
}

function receipt(chat, message) {
  const readers = [...(state.readBy.get(chat.id) ?? new Map())]
    .filter(([, seq]) => seq >= message.seq)
    .map(([userId]) => userName(chat.id, userId));
  if (readers.length === 0) return "✓ Sent";
  return chat.isGroup ? `✓✓ Read by ${readers.join(", ")}` : "✓✓ Read";
}

/** The open chat (or the empty state); the history keeps the reader's place across the re-render. */
function renderConversation() {
  const chat = state.chats.get(state.active);
  $("#app").dataset.view = chat ? "conversation" : "list";
  $("#empty-state").hidden = Boolean(chat);
  $("#conversation").setAttribute("aria-labelledby", chat ? "chat-title" : "empty-title");
  for (const part of ["#chat-header", "#messages", "#composer"]) $(part).hidden = !chat;
  if (chat) renderChatHeader(chat);
  const messages = chat ? (state.messages.get(chat.id) ?? []) : [];
  // A re-render keeps the edit in progress: its draft, and the focus and caret if it had them.
  const editing = document.activeElement?.classList.contains("edit-input") ? document.activeElement : null;
  const caret = editing ? [editing.selectionStart, editing.selectionEnd] : null;
  const place = readingPlace();
  $("#messages").replaceChildren(...(chat ? historyRows(chat, messages) : []));
  returnTo(place);
  const input = $("#messages .edit-input");
  if (input && (caret || state.editing.focus)) {
    input.focus();
    if (caret) input.setSelectionRange(...caret);
    state.editing.focus = false;
  }
  renderTyping();
}

function renderChatHeader(chat) {
  paintAvatar($("#chat-avatar"), chatFace(chat));
  $("#chat-title").textContent = chatTitle(chat);
  $("#chat-subtitle").textContent = chatStatus(chat);
}

function chatStatus(chat) {
  const online = othersIn(chat).filter((p) => state.online.has(p.id)).length;
  if (!chat.isGroup) return online > 0 ? "online" : "offline";
  return `${chat.participants.length} members, ${online + 1} online`; // and me: this page is connected
}

/** Where the reader is in the history: null at the bottom (they stay there, so what arrives comes into view),
 * else the first message in view and its distance from the pane's top (older messages loaded above it, or any
 * other change, do not move it on the screen). */
function readingPlace() {
  if (state.pinned) return null;
  const pane = $("#messages");
  const top = pane.getBoundingClientRect().top;
  const first = [...pane.querySelectorAll(".message")].find((m) => m.getBoundingClientRect().bottom > top);
  return first ? { id: first.dataset.messageId, offset: first.getBoundingClientRect().top - top } : null;
}

function returnTo(place) {
  const pane = $("#messages");
  const anchor = place && pane.querySelector(`.message[data-message-id="${place.id}"]`);
  if (anchor) pane.scrollTop += anchor.getBoundingClientRect().top - pane.getBoundingClientRect().top - place.offset;
  else pane.scrollTop = pane.scrollHeight;
}

/** The reader scrolled: are they at the bottom still, and do they need the older page? */
function scrolled() {
  const pane = $("#messages");
  state.pinned = pane.scrollHeight - pane.scrollTop - pane.clientHeight <= AT_BOTTOM_PX;
  if (pane.scrollTop <= NEAR_TOP_PX) loadOlder().catch(showError);
}

/** The history's rows: its top edge, a label before each day's first message, the unread divider, the messages
 * (a run of one person's messages shows their name and avatar once). */
function historyRows(chat, messages) {
  const rows = [historyEdge(chat, messages)];
  const unreadId = firstUnreadId(chat, messages);
  let day = null;
  let previous = null;
  for (const m of messages) {
    const date = new Date(m.createdAt);
    const newDay = date.toDateString() !== day;
    if (newDay) rows.push(element("li", { className: "day", textContent: dayName(date) }));
    day = date.toDateString();
    if (m.id === unreadId) rows.push(element("li", { className: "unread-divider", textContent: "New messages" }));
    const first = newDay || m.id === unreadId || previous?.sender.id !== m.sender.id;
    rows.push(renderMessage(chat, m, first));
    previous = m;
  }
  return rows;
}

function historyEdge(chat, messages) {
  let text = "Loading earlier messages…";
  if (state.complete.has(chat.id)) text = messages.length ? "The start of the conversation" : "No messages yet. Say hello!";
  return element("li", { className: "history-edge", textContent: text });
}

function firstUnreadId(chat, messages) {
  const divider = state.divider;
  if (divider?.chatId !== chat.id) return null;
  return messages.find((m) => m.seq > divider.afterSeq && m.sender.id !== state.me.id)?.id ?? null;
}

/** A button whose label says what it does (read by screen readers and shown as a tooltip). */
function button(className, text, label, onClick) {
  const node = element("button", { type: "button", className, textContent: text, title: label });
  node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function renderMessage(chat, m, first) {
  const mine = m.sender.id === state.me.id;
  const item = element("li", { className: ["message", mine && "mine", first && "first"].filter(Boolean).join(" ") });
  item.dataset.seq = String(m.seq);
  item.dataset.messageId = m.id;
  if (!mine) item.append(first ? avatar({ id: m.sender.id, name: displayName(m.sender) }, "avatar small") : element("span", { className: "avatar-space" }));
  // A tap focuses the bubble, which shows its actions on a touch screen (app.css).
  const bubble = element("div", { className: "bubble", tabIndex: -1 }, sender(chat, m, mine, first));
  const editing = !m.deletedAt && state.editing?.id === m.id;
  if (m.deletedAt) bubble.append(element("span", { className: "content deleted", textContent: "message deleted" }));
  else if (editing) bubble.append(editor(chat.id));
  else bubble.append(element("span", { className: "content", textContent: m.content }));
  bubble.append(meta(chat, m, mine));
  if (!m.deletedAt) bubble.append(...reactions(chat, m), actions(chat, m, mine && !editing));
  item.append(bubble);
  return item;
}

/** Who wrote it: shown on the first of a run of the others' messages in a group, for screen readers on every one. */
function sender(chat, m, mine, first) {
  const node = element("span", { className: "sender", textContent: mine ? "You" : displayName(m.sender) });
  node.style.setProperty("--hue", String(hueOf(m.sender.id)));
  if (mine || !first || !chat.isGroup) node.classList.add("visually-hidden");
  return node;
}

function meta(chat, m, mine) {
  const line = element("div", { className: "meta" });
  if (m.editedAt && !m.deletedAt) {
    line.append(element("span", { className: "edited", textContent: "(edited)", title: `edited ${FULL_TIME.format(new Date(m.editedAt))}` }));
  }
  line.append(timeElement(m.createdAt, (date) => CLOCK.format(date)));
  if (mine) line.append(element("span", { className: "receipt", textContent: receipt(chat, m) }));
  return line;
}

function reactions(chat, m) {
  const chips = (m.reactions ?? []).filter((r) => r.count > 0);
  if (chips.length === 0) return [];
  const label = (r) => `${r.emoji} ${r.count}: ${r.reactedByMe ? "take back" : "react with"} ${r.emoji}`;
  const list = chips.map((r) => button("reaction", `${r.emoji} ${r.count}`, label(r), () => toggleReaction(chat.id, m.id, r.emoji)));
  for (const [i, r] of chips.entries()) list[i].setAttribute("aria-pressed", String(r.reactedByMe));
  return [element("div", { className: "reactions" }, ...list)];
}

function actions(chat, m, editable) {
  const bar = element(
    "div",
    { className: "actions" },
    ...QUICK_REACTIONS.map((emoji) => button("react", emoji, `React with ${emoji}`, () => toggleReaction(chat.id, m.id, emoji))),
  );
  if (editable) {
    bar.append(button("edit", "Edit", "Edit this message", () => startEditing(m)));
    bar.append(button("delete", "Delete", "Delete this message", () => deleteMessage(m)));
  }
  return bar;
}

/** The edit box: Enter saves, Escape cancels. */
function editor(chatId) {
  const input = element("input", { className: "edit-input", value: state.editing.draft, maxLength: 10000, autocomplete: "off" });
  input.setAttribute("aria-label", "Edit message");
  input.addEventListener("input", () => (state.editing.draft = input.value));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      saveEdit(chatId);
    } else if (e.key === "Escape") {
      e.preventDefault();
      cancelEditing();
    }
  });
  return input;
}

function renderTyping() {
  const users = [...(state.typing.get(state.active) ?? [])].map((id) => userName(state.active, id));
  $("#typing").textContent =
    users.length === 0 ? "" : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
}

/** Screen readers hear a message that arrives in the open chat (the history itself is re-rendered, not live). */
function announce(text) {
  $("#announcer").textContent = text;
}

function setConnection(text) {
  $("#connection").textContent = text;
  $("#connection").dataset.state = text;
}

/** A toast at the top of the page, away from the composer; it goes by itself, or with its close button. */
function showNotification(payload) {
  const text = payload?.title || payload?.body ? [payload.title, payload.body].filter(Boolean).join(": ") : JSON.stringify(payload);
  const item = element("li", { className: "notification" }, element("span", { className: "text", textContent: text }));
  item.append(button("dismiss", "×", "Dismiss notification", () => item.remove()));
  const list = $("#notifications");
  list.append(item);
  while (list.children.length > MAX_NOTIFICATIONS) list.firstElementChild.remove();
  setTimeout(() => item.remove(), NOTIFICATION_MS);
}

function showError(error) {
  if (error.code === "UNAVAILABLE") return; // the connection indicator says it
  showNotification({ title: error.code ?? "error", body: error.message });
}

// ---- start ------------------------------------------------------------------------------------------------

function connect(token) {
  sessionStorage.setItem("tailtrail-token", token);
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#switch-user").hidden = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new GraphQLSocket(`${scheme}://${location.host}/graphql`, token, {
    open() {
      setConnection("online");
      synchronize().catch((error) => {
        showError(error);
        socket.restart();
      });
    },
    offline: () => setConnection("reconnecting"),
    refused(reason) {
      sessionStorage.removeItem("tailtrail-token");
      socket.stop();
      showLogin(`Not connected: ${reason}`);
    },
  });
  state.socket = socket;
  setConnection("connecting");
  socket.connect();
}

async function showLogin(error = "") {
  $("#app").hidden = true;
  $("#switch-user").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = error;
  const response = await fetch("/demo/users");
  if (!response.ok) {
    $("#login-hint").textContent = "Demo users are offered in development mode only (SECRET_KEY unset).";
    return;
  }
  const { users } = await response.json();
  if (users.length === 0) {
    $("#login-hint").textContent = "This server has no demo users yet: run python cli.py seed-demo (or serve --demo).";
  }
  $("#demo-users").replaceChildren(
    ...users.map((user) => {
      const face = avatar({ id: user.id, name: displayName(user) });
      const button = element("button", { type: "button" }, face, user.email);
      button.addEventListener("click", () => connect(user.token));
      return button;
    }),
  );
}

$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("#token-input").value.trim();
  if (token) connect(token);
});
$("#composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("#message-input");
  const content = input.value.trim();
  if (!content || !state.active) return;
  input.value = "";
  send(content).catch((error) => {
    input.value = content; // not sent: give it back
    showError(error);
  });
});
$("#message-input").addEventListener("input", typed);
$("#messages").addEventListener("scroll", scrolled, { passive: true });
// The pane changes size (a phone's keyboard opens, the window is resized, the pane is shown): the reader who was at
// the bottom stays there.
new ResizeObserver(() => {
  if (state.pinned) returnTo(null);
}).observe($("#messages"));
$("#back").addEventListener("click", goBack);
window.addEventListener("popstate", (e) => {
  const chatId = e.state?.chatId;
  if (chatId && state.chats.has(chatId)) openChat(chatId).catch(showError);
  else leaveChat();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !e.defaultPrevented && state.active && !WIDE.matches) goBack();
});
$("#switch-user").addEventListener("click", () => {
  sessionStorage.removeItem("tailtrail-token");
  location.reload();
});
document.addEventListener("visibilitychange", () => {
  if (isReading(state.active) && state.chats.get(state.active)?.unread > 0) markRead(state.active);
});

if (window.history.state?.chatId) window.history.replaceState(null, ""); // a reload opens no chat: its entry leads nowhere
const saved = sessionStorage.getItem("tailtrail-token");
if (saved) connect(saved);
else showLogin().catch(showError);
