// Herald's dashboard: the few parts of a page that change while it is open. Every page works
// without this script; it only keeps counters live and checks a draft as it is written.
"use strict";

function poll(url, every, apply) {
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) stopped = apply(await response.json()) === false;
    } catch (_) {
      // A missed tick is retried at the next one.
    }
    if (!stopped) setTimeout(tick, every);
  }
  setTimeout(tick, every);
}

function liveCampaign(section) {
  const field = (name) => document.querySelectorAll(`[data-live="${name}"]`);
  poll(section.dataset.liveUrl, 1000, (stats) => {
    for (const name of ["total", "pending", "sent", "delivered", "read", "failed", "skipped",
                        "delivery_rate", "read_rate", "status"]) {
      field(name).forEach((element) => { element.textContent = stats[name]; });
    }
    field("status").forEach((element) => { element.className = `status status-${stats.status}`; });
    field("progress").forEach((bar) => { bar.max = stats.total; bar.value = stats.done; });
    document.querySelectorAll("form[data-action]").forEach((form) => {
      form.hidden = !stats.actions.includes(form.dataset.action);
    });
    return !["completed", "canceled"].includes(stats.status);
  });
}

function liveImport(section) {
  const field = (name) => section.querySelector(`[data-import="${name}"]`);
  poll(section.dataset.importUrl, 500, (progress) => {
    for (const name of ["status", "total", "created", "updated", "failed"]) {
      field(name).textContent = progress[name];
    }
    const errors = field("errors");
    errors.replaceChildren(...progress.errors.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    if (progress.finished) {
      field("bar").max = 1;
      field("bar").value = 1;
    }
    return !progress.finished;
  });
}

function checkedDraft(form) {
  let timer = null;
  async function check() {
    const data = new URLSearchParams(new FormData(form));
    data.delete("csrf");
    try {
      const response = await fetch(`${form.dataset.checkUrl}?${data}`, {
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return;
      const checked = await response.json();
      for (const name of ["preview", "recipients", "estimate"]) {
        form.querySelectorAll(`[data-check="${name}"]`).forEach((output) => {
          output.textContent = checked[name];
        });
      }
      form.querySelectorAll('[data-check="preview"]').forEach((output) => {
        output.classList.toggle("problem", !checked.preview_ok);
      });
    } catch (_) {
      // Checked again at the next change.
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  check();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-url]").forEach(liveCampaign);
  document.querySelectorAll("[data-import-url]").forEach(liveImport);
  document.querySelectorAll("form[data-check-url]").forEach(checkedDraft);
});
