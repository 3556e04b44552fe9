// Tasks: every image and video task with its progress, status, price and results.

import { tasks } from "../api.js";
import { field, h, replace, select } from "../dom.js";
import { formatDate, t } from "../i18n.js";
import { emptyState, errorBox, loading, notice, pageHeader } from "../ui.js";
import { follow, taskCard } from "./studio.js";

export default async function render({ main, params }) {
  main.append(pageHeader(t("tasks.title"), t("tasks.intro")));
  const stops = [];
  const note = notice();
  const kind = select([["", t("tasks.all_kinds")], ["image", t("kind.image")], ["video", t("kind.video")]], { name: "kind" });
  const status = select([["", t("tasks.all_statuses")], ...["queued", "running", "succeeded", "failed", "canceled"].map((s) => [s, t(`status.${s}`)])], { name: "status" });
  const list = h("div", { class: "grid", id: "task-list" }, loading());
  const more = h("button", { type: "button", class: "secondary", hidden: true }, t("common.more"));
  let cursor = null;
  const onCancel = async (task) => {
    try {
      await tasks.cancel(task.id);
    } catch (error) {
      note.error(error);
    }
  };
  const add = (task) => {
    const card = taskCard(task, { onCancel });
    card.append(h("p", { class: "hint" }, formatDate(task.created_at)));
    list.append(card);
    stops.push(follow(task, (current) => card.update(current)));
  };
  const load = async (reset) => {
    if (reset) {
      stops.splice(0).forEach((stop) => stop());
      cursor = null;
      replace(list, loading());
    }
    try {
      if (params.task && reset) {
        replace(list);
        add(await tasks.get(params.task));
        return;
      }
      const page = await tasks.list({ kind: kind.value || undefined, status: status.value || undefined, cursor: cursor || undefined });
      if (reset) replace(list);
      if (reset && !page.items.length) list.append(emptyState(t("tasks.empty")));
      page.items.forEach(add);
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  kind.addEventListener("change", () => load(true));
  status.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  main.append(h("div", { class: "actions" }, field(t("tasks.kind"), kind), field(t("tasks.status"), status)), note.el, list, more);
  await load(true);
  return () => stops.forEach((stop) => stop());
}
