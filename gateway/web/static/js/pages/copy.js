// Copy Studio: conversations with a text model, answers streamed as they are written, and history.

import { catalog, copy, newIdempotencyKey } from "../api.js";
import { refreshBalance } from "../balance.js";
import { field, h, select } from "../dom.js";
import { credits, formatDate, t } from "../i18n.js";
import { busy, emptyState, errorBox, loadInto, notice, pageHeader, submitForm } from "../ui.js";

function bubble(message) {
  const text = h("span", { class: "text" }, message.content || "");
  const meta = h("span", { class: "meta" }, message.charge && message.role === "assistant" ? credits(message.charge) : "");
  const el = h("div", { class: `message ${message.role}`, "data-role": message.role }, text, meta);
  el.text = text;
  el.meta = meta;
  return el;
}

export default async function render({ main, params }) {
  main.append(pageHeader(t("copy.title"), t("copy.intro")));
  const { holder, ok, value } = await loadInto(main, () => Promise.all([catalog.models("text").then((r) => r.models || []), copy.conversations()]));
  if (!ok) return;
  const [models, conversations] = value;
  if (!models.length) {
    holder.replaceChildren(emptyState(t("pricing.empty")));
    return;
  }
  const currentId = params.conversation || null;
  const historyNav = h(
    "nav",
    { "aria-label": t("copy.history") },
    h("h2", {}, t("copy.history")),
    h("p", {}, h("a", { href: "/copy", class: "button secondary small" }, t("copy.new"))),
    conversations.length
      ? h(
          "ul",
          { class: "chat-list" },
          conversations.map((c) =>
            h("li", {}, h("a", { href: `/copy/${encodeURIComponent(c.id)}`, "aria-current": c.id === currentId ? "page" : false, title: formatDate(c.updated_at) }, c.title || t("copy.untitled"))),
          ),
        )
      : h("p", { class: "hint" }, t("copy.no_history")),
  );
  const log = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": t("copy.messages") });
  let conversation = null;
  if (currentId) {
    try {
      conversation = await copy.conversation(currentId);
      for (const message of conversation.messages) if (message.role !== "system") log.append(bubble(message));
    } catch (error) {
      log.append(errorBox(error));
    }
  }
  if (!log.childElementCount) log.append(h("p", { class: "hint empty-chat" }, t("copy.start")));
  const note = notice();
  const modelSelect = select(models.map((m) => [m.code, m.name]), { name: "model", value: conversation?.model_code || models[0].code });
  const input = h("textarea", { name: "content", rows: "3", required: true, maxlength: "8000" });
  const submit = h("button", { type: "submit" }, t("copy.send"));
  let key = newIdempotencyKey();
  const form = submitForm(
    {},
    async () => {
      const content = input.value.trim();
      if (!content) {
        input.setAttribute("aria-invalid", "true");
        note.error(t("copy.empty"));
        input.focus();
        return;
      }
      input.setAttribute("aria-invalid", "false");
      await busy(submit, note, async () => {
        note.clear();
        if (!conversation) {
          conversation = await copy.create(modelSelect.value, newIdempotencyKey());
          window.history.replaceState(null, "", `/copy/${encodeURIComponent(conversation.id)}`);
        }
        log.querySelector(".empty-chat")?.remove();
        log.append(bubble({ role: "user", content }));
        const answer = bubble({ role: "assistant", content: "" });
        answer.setAttribute("aria-busy", "true");
        log.append(answer);
        input.value = "";
        try {
          const final = await copy.send(conversation.id, content, modelSelect.value, key, (delta) => {
            answer.text.textContent += delta;
            log.scrollTop = log.scrollHeight;
          });
          key = newIdempotencyKey();
          if (final) {
            if (final.content) answer.text.textContent = final.content;
            if (final.charge) answer.meta.textContent = credits(final.charge);
            if (final.status === "failed") note.error(final.error?.message || t("status.failed"));
          }
        } finally {
          answer.removeAttribute("aria-busy");
          refreshBalance();
        }
      });
    },
    field(t("copy.model"), modelSelect),
    field(t("copy.prompt"), input),
    note.el,
    h("div", { class: "actions" }, submit),
  );
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  holder.replaceChildren(h("div", { class: "chat" }, historyNav, h("div", {}, log, form)));
}
