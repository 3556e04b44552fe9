// Register, verify (the link in the email lands here), sign in, and password reset.

import { auth, session } from "../api.js";
import { field, h } from "../dom.js";
import { t } from "../i18n.js";
import { busy, notice, pageHeader, submitForm } from "../ui.js";

const MIN_PASSWORD = 8;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function emailInput(autocomplete = "email") {
  return h("input", { type: "email", name: "email", required: true, autocomplete, maxlength: "254", inputmode: "email" });
}

function passwordInput(autocomplete) {
  return h("input", { type: "password", name: "password", required: true, autocomplete, maxlength: "1024" });
}

/** Client-side checks before any request; marks fields invalid and says why. */
function validate(note, checks) {
  for (const [input, ok, message] of checks) {
    input.setAttribute("aria-invalid", String(!ok));
    if (!ok) {
      note.error(message);
      input.focus();
      return false;
    }
  }
  return true;
}

function login({ main, query, navigate }) {
  const note = notice();
  const email = emailInput("username");
  const password = passwordInput("current-password");
  const submit = h("button", { type: "submit" }, t("auth.login.submit"));
  const form = submitForm(
    { class: "narrow", "aria-labelledby": "login-title" },
    async () => {
      const ok = validate(note, [
        [email, EMAIL.test(email.value.trim()), t("auth.error.email")],
        [password, password.value.length > 0, t("auth.error.password_required")],
      ]);
      if (!ok) return;
      await busy(submit, note, async () => {
        note.clear();
        await auth.login(email.value.trim(), password.value);
        // Only a path on this site (never "//host" or "/\\host", which browsers read as another origin).
        const next = /^\/(?![/\\])[^\\]*$/.test(query.next || "") ? query.next : "/image";
        navigate(next, { replace: true });
      });
    },
    field(t("auth.email"), email),
    field(t("auth.password"), password),
    note.el,
    h("div", { class: "actions" }, submit, h("a", { href: "/forgot-password" }, t("auth.forgot.link"))),
    h("p", {}, t("auth.login.no_account"), " ", h("a", { href: "/register" }, t("nav.register"))),
  );
  const header = pageHeader(t("auth.login.title"));
  header.querySelector("h1").id = "login-title";
  main.append(header, form);
}

/** A new password and its confirmation, with the checks both must pass. */
function newPasswordInputs() {
  const password = passwordInput("new-password");
  const confirm = passwordInput("new-password");
  const checks = () => [
    [password, password.value.length >= MIN_PASSWORD, t("auth.error.password_short", { n: MIN_PASSWORD })],
    [confirm, confirm.value === password.value, t("auth.error.password_mismatch")],
  ];
  return { password, confirm, checks };
}

function register({ main }) {
  const note = notice();
  const email = emailInput();
  const { password, confirm, checks } = newPasswordInputs();
  password.minLength = MIN_PASSWORD;
  const submit = h("button", { type: "submit" }, t("auth.register.submit"));
  const form = submitForm(
    { class: "narrow" },
    async () => {
      const ok = validate(note, [
        [email, EMAIL.test(email.value.trim()), t("auth.error.email")],
        ...checks(),
      ]);
      if (!ok) return;
      await busy(submit, note, async () => {
        await auth.register(email.value.trim(), password.value);
        form.replaceWith(
          h("div", { class: "card narrow", role: "status" }, h("h2", {}, t("auth.register.done_title")), h("p", {}, t("auth.register.done", { email: email.value.trim() }))),
        );
      });
    },
    field(t("auth.email"), email),
    field(t("auth.password"), password, t("auth.password_hint", { n: MIN_PASSWORD })),
    field(t("auth.password_confirm"), confirm),
    note.el,
    h("div", { class: "actions" }, submit),
    h("p", {}, t("auth.register.have_account"), " ", h("a", { href: "/login" }, t("nav.login"))),
  );
  main.append(pageHeader(t("auth.register.title"), t("auth.register.intro")), form);
}

/** A form asking only for an email address: `action(email)` runs, then `doneText` is announced. */
function emailForm(submit, action, doneText) {
  const note = notice();
  const email = emailInput();
  return submitForm(
    { class: "narrow" },
    async () => {
      if (!validate(note, [[email, EMAIL.test(email.value.trim()), t("auth.error.email")]])) return;
      await busy(submit, note, async () => {
        await action(email.value.trim());
        note.success(doneText);
      });
    },
    field(t("auth.email"), email),
    note.el,
    h("div", { class: "actions" }, submit),
  );
}

function resendForm() {
  const submit = h("button", { type: "submit", class: "secondary" }, t("auth.verify.resend"));
  return emailForm(submit, (email) => auth.resendVerification(email), t("auth.verify.resent"));
}

// The outcome of this page load's verification, so a re-render (e.g. a language switch) shows it again
// after the single-use token has left the address bar.
let verifiedEmail = null;

function verifiedView(main, note) {
  note.success(t("auth.verify.done", { email: verifiedEmail }));
  const next = session() ? ["/billing", t("nav.billing")] : ["/login", t("nav.login")];
  main.append(h("p", {}, h("a", { href: next[0], class: "button" }, next[1])));
}

async function verify({ main, params }) {
  main.append(pageHeader(t("auth.verify.title")));
  const token = params.token;
  if (!token && verifiedEmail !== null) {
    const note = notice();
    main.append(note.el);
    verifiedView(main, note);
    return;
  }
  if (!token) {
    main.append(h("p", {}, t("auth.verify.check_inbox")), resendForm());
    return;
  }
  // Keep the single-use token out of the address bar (and history) once read.
  history.replaceState(null, "", "/verify-email");
  const note = notice();
  main.append(note.el);
  note.info(t("auth.verify.working"));
  try {
    const user = await auth.verifyEmail(token);
    verifiedEmail = user?.email ?? "";
    verifiedView(main, note);
    if (session()) await auth.me().catch(() => {});
  } catch (error) {
    note.error(error);
    main.append(h("h2", {}, t("auth.verify.again")), resendForm());
  }
}

function forgot({ main }) {
  const submit = h("button", { type: "submit" }, t("auth.forgot.submit"));
  const form = emailForm(submit, (email) => auth.requestPasswordReset(email), t("auth.forgot.sent"));
  main.append(pageHeader(t("auth.forgot.title"), t("auth.forgot.intro")), form);
}

function reset({ main, params }) {
  const token = params.token;
  const note = notice();
  const { password, confirm, checks } = newPasswordInputs();
  const submit = h("button", { type: "submit" }, t("auth.reset.submit"));
  const form = submitForm(
    { class: "narrow" },
    async () => {
      if (!validate(note, checks())) return;
      await busy(submit, note, async () => {
        await auth.confirmPasswordReset(token, password.value);
        await auth.logout();
        form.replaceWith(h("div", { class: "card narrow", role: "status" }, h("p", {}, t("auth.reset.done")), h("a", { href: "/login", class: "button" }, t("nav.login"))));
      });
    },
    field(t("auth.new_password"), password, t("auth.password_hint", { n: MIN_PASSWORD })),
    field(t("auth.password_confirm"), confirm),
    note.el,
    h("div", { class: "actions" }, submit),
  );
  main.append(pageHeader(t("auth.reset.title")), form);
}

const VIEWS = { login, register, verify, forgot, reset };

export default function render(ctx) {
  return VIEWS[ctx.view](ctx);
}
