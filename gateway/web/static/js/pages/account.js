// Account: who is signed in, email verification state, and API keys (the full key is shown once).

import { auth } from "../api.js";
import { field, h } from "../dom.js";
import { formatDate, t } from "../i18n.js";
import { busy, emptyState, errorBox, loadInto, loading, notice, pageHeader, submitForm, table } from "../ui.js";

export default async function render({ main }) {
  main.append(pageHeader(t("account.title")));
  const { holder, ok, value: me } = await loadInto(main, () => auth.me());
  if (!ok) return;
  const profile = h(
    "section",
    { class: "card" },
    h("dl", { class: "specs" }, h("dt", {}, t("auth.email")), h("dd", {}, me.email), h("dt", {}, t("account.status")), h("dd", {}, t(`account.status.${me.status}`)), h("dt", {}, t("account.role")), h("dd", {}, me.role)),
    me.status === "unverified" ? h("p", {}, h("a", { href: "/verify-email" }, t("account.verify_now"))) : null,
  );
  const keysBox = h("div", {}, loading());
  const note = notice();
  const name = h("input", { type: "text", name: "name", maxlength: "100", required: true });
  const create = h("button", { type: "submit" }, t("account.create_key"));
  const drawKeys = async () => {
    try {
      const page = await auth.apiKeys();
      keysBox.replaceChildren(
        page.items.length
          ? table(t("account.keys"), [
              [t("account.key_name"), (k) => k.name],
              [t("account.key_prefix"), (k) => h("code", {}, k.prefix)],
              [t("account.key_created"), (k) => formatDate(k.created_at)],
              [t("account.key_last_used"), (k) => formatDate(k.last_used_at)],
              [
                "",
                (k) =>
                  h("button", { type: "button", class: "secondary small", "aria-label": t("account.revoke_named", { name: k.name }), onclick: async (event) => {
                    await busy(event.currentTarget, note, async () => {
                      await auth.revokeApiKey(k.id);
                      await drawKeys();
                    });
                  } }, t("account.revoke")),
              ],
            ], page.items)
          : emptyState(t("account.no_keys")),
      );
    } catch (error) {
      keysBox.replaceChildren(errorBox(error));
    }
  };
  const form = submitForm(
    { class: "narrow" },
    async () => {
      if (!name.value.trim()) return note.error(t("account.key_name_required"));
      return busy(create, note, async () => {
        const created = await auth.createApiKey(name.value.trim());
        name.value = "";
        note.success(t("account.key_created_once", { key: created.key }));
        await drawKeys();
      });
    },
    field(t("account.key_name"), name),
    note.el,
    h("div", { class: "actions" }, create),
  );
  holder.replaceChildren(profile, h("section", {}, h("h2", {}, t("account.keys")), keysBox, form));
  drawKeys();
}
