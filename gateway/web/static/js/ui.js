// Shared pieces of the pages: notices, error messages, tables, busy buttons, pagination.

import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

/** A human message for an ApiError: the translated stable code when we have one, else the detail. */
export function errorText(error) {
  const code = error?.code;
  const known = code ? t(`error.${code}`) : null;
  if (known && known !== `error.${code}`) return known;
  if (error?.status === 0) return t("error.network_error");
  return error?.message || t("error.unknown");
}

/** An error shown in place of content that failed to load (role=alert). */
export function errorBox(error) {
  return h("p", { class: "notice error", role: "alert" }, errorText(error));
}

/**
 * Appends a loading placeholder to `main` and awaits `load()`. Resolves to {holder, ok, value}: the
 * placeholder (for the page to fill), and on failure ok=false with the error already shown in it.
 */
export async function loadInto(main, load) {
  const holder = h("div", {}, loading());
  main.append(holder);
  try {
    return { holder, ok: true, value: await load() };
  } catch (error) {
    holder.replaceChildren(errorBox(error));
    return { holder, ok: false, value: undefined };
  }
}

/** A form the browser never submits or validates itself: `onSubmit(event)` runs instead. */
export function submitForm(attrs, onSubmit, ...children) {
  const onsubmit = (event) => {
    event.preventDefault();
    return onSubmit(event);
  };
  return h("form", { ...attrs, novalidate: true, onsubmit }, children);
}

/** A live region for the outcome of an action (role=status, or role=alert for errors). */
export function notice() {
  const el = h("div", { class: "notice", role: "status", "aria-live": "polite" });
  return {
    el,
    info(text) {
      el.className = "notice info";
      el.setAttribute("role", "status");
      replace(el, text);
    },
    success(text) {
      el.className = "notice success";
      el.setAttribute("role", "status");
      replace(el, text);
    },
    error(errorOrText) {
      el.className = "notice error";
      el.setAttribute("role", "alert");
      replace(el, typeof errorOrText === "string" ? errorOrText : errorText(errorOrText));
    },
    clear() {
      el.className = "notice";
      replace(el);
    },
  };
}

/** Runs `action` with the button disabled and marked busy; errors go to `note`. */
export async function busy(button, note, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    if (note) note.error(error);
    else throw error;
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function pageHeader(title, intro) {
  return h("header", { class: "page-header" }, h("h1", { tabindex: "-1" }, title), intro ? h("p", { class: "lead" }, intro) : null);
}

export function emptyState(text, ...extra) {
  return h("div", { class: "empty", role: "status" }, h("p", {}, text), extra);
}

export function loading() {
  return h("p", { class: "loading", role: "status" }, t("common.loading"));
}

/** A table with a caption; columns: [[header, (row) => cell]]. */
export function table(caption, columns, rows) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([header]) => h("th", { scope: "col" }, header)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))),
    ),
  );
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, t(`status.${status}`));
}

export function progressBar(value, label) {
  const pct = Math.max(0, Math.min(100, Number(value) || 0));
  return h("progress", { max: "100", value: String(pct), "aria-label": label }, `${pct}%`);
}

/** Media for a task output: an image, a playable video, or text, with a download link. */
export function outputView(output, altText) {
  const mime = output.mime_type || "";
  const parts = [];
  if (mime.startsWith("image/") && output.url) {
    parts.push(h("img", { src: output.url, alt: altText, loading: "lazy", width: output.width || undefined, height: output.height || undefined }));
  } else if (mime.startsWith("video/") && output.url) {
    parts.push(h("video", { src: output.url, controls: true, preload: "metadata", "aria-label": altText }));
  } else if (output.text) {
    parts.push(h("pre", { class: "output-text" }, output.text));
  }
  if (output.url) {
    parts.push(h("a", { href: output.url, download: "", class: "button secondary small" }, t("common.download")));
  }
  return h("figure", { class: "output" }, parts);
}
