// The live balance: one store fed by GET /v1/billing/balance and by `balance` events on /v1/events.
// Updates carry the ledger's version; an update older than the one shown is dropped.

import { billing, liveEvents } from "./api.js";

let state = null;
const listeners = new Set();
const liveListeners = { task: new Set(), run: new Set(), recharge: new Set(), balance: new Set() };
let stopLive = null;

export function balance() {
  return state;
}

export function onBalance(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function applyBalance(next) {
  if (!next || next.available === undefined) return;
  const version = Number(next.version ?? 0);
  if (state && version && state.version && version <= state.version) return;
  state = { available: String(next.available), held: String(next.held ?? "0"), version };
  for (const listener of listeners) listener(state);
}

export async function refreshBalance() {
  try {
    applyBalance(await billing.balance());
  } catch {
    /* shown as unknown until the next update */
  }
}

/** Live events for pages: onLive("task", fn) → unsubscribe. */
export function onLive(name, listener) {
  liveListeners[name].add(listener);
  return () => liveListeners[name].delete(listener);
}

function dispatch(name) {
  return (data) => {
    for (const listener of liveListeners[name]) listener(data);
  };
}

export function startLive() {
  stopLiveUpdates();
  refreshBalance();
  stopLive = liveEvents({
    balance: (data) => {
      applyBalance(data);
      dispatch("balance")(data);
    },
    task: dispatch("task"),
    run: dispatch("run"),
    recharge: (data) => {
      dispatch("recharge")(data);
      refreshBalance();
    },
    open: refreshBalance, // catch up on anything missed while disconnected
    down: refreshBalance,
  });
}

export function stopLiveUpdates() {
  if (stopLive) stopLive();
  stopLive = null;
  state = null;
  for (const listener of listeners) listener(null);
}
