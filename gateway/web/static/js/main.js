// The console's shell: routes, the header (navigation, language switch, live balance), page loading.

import { auth, onSessionChange, session } from "./api.js";
import { balance, onBalance, startLive, stopLiveUpdates } from "./balance.js";
import { h, replace } from "./dom.js";
import { currentLang, loadStrings, onLangChange, setLang, t } from "./i18n.js";

// path pattern → page module, title key, who may see it
const ROUTES = [
  { path: "/login", page: "auth", view: "login", title: "nav.login" },
  { path: "/register", page: "auth", view: "register", title: "nav.register" },
  { path: "/verify-email", page: "auth", view: "verify", title: "auth.verify.title" },
  { path: "/verify-email/:token", page: "auth", view: "verify", title: "auth.verify.title" },
  { path: "/forgot-password", page: "auth", view: "forgot", title: "auth.forgot.title" },
  { path: "/reset-password/:token", page: "auth", view: "reset", title: "auth.reset.title" },
  { path: "/pricing", page: "pricing", title: "nav.pricing" },
  { path: "/guide", page: "guide", title: "nav.docs" },
  { path: "/guide/:page", page: "guide", title: "nav.docs" },
  { path: "/billing", page: "billing", title: "nav.billing", signedIn: true },
  { path: "/copy", page: "copy", title: "nav.copy", signedIn: true },
  { path: "/copy/:conversation", page: "copy", title: "nav.copy", signedIn: true },
  { path: "/image", page: "studio", view: "image", title: "nav.image", signedIn: true },
  { path: "/video", page: "studio", view: "video", title: "nav.video", signedIn: true },
  { path: "/workflow", page: "workflow", title: "nav.workflow", signedIn: true },
  { path: "/tasks", page: "tasks", title: "nav.tasks", signedIn: true },
  { path: "/tasks/:task", page: "tasks", title: "nav.tasks", signedIn: true },
  { path: "/usage", page: "usage", title: "nav.usage", signedIn: true },
  { path: "/account", page: "account", title: "nav.account", signedIn: true },
  { path: "/admin", page: "admin", title: "nav.admin", admin: true },
  { path: "/admin/:section", page: "admin", title: "nav.admin", admin: true },
];
const NAV = [
  ["/pricing", "nav.pricing"],
  ["/billing", "nav.billing"],
  ["/copy", "nav.copy"],
  ["/image", "nav.image"],
  ["/video", "nav.video"],
  ["/workflow", "nav.workflow"],
  ["/tasks", "nav.tasks"],
  ["/usage", "nav.usage"],
  ["/guide", "nav.docs"],
];

const header = document.getElementById("site-header");
const main = document.getElementById("main");
let cleanup = null;
let renderCount = 0;

function match(pathname) {
  const parts = pathname.replace(/\/+$/, "").split("/").filter(Boolean);
  for (const route of ROUTES) {
    const pattern = route.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params = {};
    if (
      pattern.every((segment, i) => {
        if (segment.startsWith(":")) {
          params[segment.slice(1)] = decodeURIComponent(parts[i]);
          return true;
        }
        return segment === parts[i];
      })
    ) {
      return { route, params };
    }
  }
  return null;
}

export function navigate(to, { replace: replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  return render().then(focusHeading);
}

function isAdmin() {
  return session()?.user?.role === "admin";
}

function languageSwitch() {
  const make = (code, label) =>
    h(
      "button",
      {
        type: "button",
        class: "lang-option",
        lang: code === "zh" ? "zh-CN" : "en",
        "aria-pressed": String(currentLang() === code),
        onclick: () => setLang(code),
      },
      label,
    );
  return h("div", { class: "lang-switch", role: "group", "aria-label": t("nav.language") }, make("en", "EN"), make("zh", "中文"));
}

function balanceView() {
  const value = balance();
  return h(
    "a",
    { href: "/billing", class: "balance", id: "balance-link" },
    h("span", { class: "balance-label" }, t("balance.label")),
    " ",
    h(
      "output",
      { id: "balance", "aria-live": "polite", "aria-atomic": "true", "data-version": value ? String(value.version) : "" },
      value ? value.available : "…",
    ),
  );
}

function renderHeader() {
  const signedIn = Boolean(session());
  const navList = h(
    "ul",
    { class: "nav-list", id: "nav-list" },
    NAV.map(([href, key]) => {
      const current = location.pathname === href || location.pathname.startsWith(`${href}/`);
      return h("li", {}, h("a", { href, "aria-current": current ? "page" : false }, t(key)));
    }),
    isAdmin()
      ? h("li", {}, h("a", { href: "/admin", "aria-current": location.pathname.startsWith("/admin") ? "page" : false }, t("nav.admin")))
      : null,
  );
  const toggle = h(
    "button",
    {
      type: "button",
      class: "nav-toggle",
      "aria-expanded": "false",
      "aria-controls": "nav-list",
      onclick: () => {
        const open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", String(open));
        navList.classList.toggle("open", open);
      },
    },
    t("nav.menu"),
  );
  const account = signedIn
    ? [
        balanceView(),
        h("a", { href: "/account", class: "account-link" }, session()?.user?.email || t("nav.account")),
        h(
          "button",
          {
            type: "button",
            class: "button secondary small",
            onclick: async () => {
              await auth.logout();
              navigate("/login");
            },
          },
          t("nav.logout"),
        ),
      ]
    : [h("a", { href: "/login", class: "button secondary small" }, t("nav.login")), h("a", { href: "/register", class: "button small" }, t("nav.register"))];
  replace(
    header,
    h(
      "div",
      { class: "header-inner" },
      h("a", { href: "/", class: "brand" }, "Atelier"),
      h("nav", { "aria-label": t("nav.main") }, toggle, navList),
      h("div", { class: "header-tools" }, languageSwitch(), account),
    ),
  );
}

async function render() {
  const mine = ++renderCount;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's cleanup never blocks the next page */
    }
    cleanup = null;
  }
  if (location.pathname === "/" || location.pathname === "") {
    history.replaceState(null, "", session() ? "/image" : "/pricing");
  }
  const found = match(location.pathname);
  renderHeader();
  if (!found) {
    document.title = `${t("notfound.title")} · Atelier`;
    replace(main, h("h1", { tabindex: "-1" }, t("notfound.title")), h("p", {}, h("a", { href: "/" }, t("notfound.home"))));
    return;
  }
  const { route, params } = found;
  if ((route.signedIn || route.admin) && !session()) {
    const next = location.pathname + location.search;
    history.replaceState(null, "", `/login?next=${encodeURIComponent(next)}`);
    return render();
  }
  document.title = `${t(route.title)} · Atelier`;
  if (route.admin && !isAdmin()) {
    replace(main, h("h1", { tabindex: "-1" }, t("nav.admin")), h("p", { role: "alert" }, t("admin.forbidden")));
    return;
  }
  replace(main, h("p", { class: "loading", role: "status" }, t("common.loading")));
  const module = await import(`./pages/${route.page}.js`);
  if (mine !== renderCount) return;
  replace(main);
  const query = Object.fromEntries(new URLSearchParams(location.search));
  const result = await module.default({ main, params, query, view: route.view, navigate });
  if (mine !== renderCount) {
    if (typeof result === "function") result();
    return;
  }
  cleanup = typeof result === "function" ? result : null;
  main.dataset.page = route.view || route.page;
  main.dataset.ready = "true";
}

function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: false });
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const target = new URL(link.href, location.href);
  if (target.origin !== location.origin || !match(target.pathname) && target.pathname !== "/") return;
  event.preventDefault();
  if (target.pathname + target.search === location.pathname + location.search) return;
  history.pushState(null, "", target.pathname + target.search + target.hash);
  main.dataset.ready = "false";
  render().then(focusHeading);
});

window.addEventListener("popstate", () => render());

async function boot() {
  await loadStrings();
  onLangChange(() => render());
  onBalance(() => {
    const output = document.getElementById("balance");
    const value = balance();
    if (output) {
      output.textContent = value ? value.available : "…";
      output.dataset.version = value ? String(value.version) : "";
    }
  });
  let signedIn = Boolean(session());
  onSessionChange((value) => {
    if (Boolean(value) !== signedIn) {
      signedIn = Boolean(value);
      if (signedIn) startLive();
      else stopLiveUpdates();
      render();
    }
  });
  if (signedIn) startLive();
  await render();
}

boot();
