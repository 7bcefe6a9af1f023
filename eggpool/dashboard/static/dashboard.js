// EggPool dashboard: the pages work without this. It makes them live: counters
// update from the server's /api/live socket as requests finish, and the page
// content is refreshed in place every data-refresh seconds (or when the
// socket cannot be opened). No third-party code; nothing is evaluated.
"use strict";

(function () {
  const body = document.body;
  if (!body || !body.dataset.page) {
    return;
  }
  const stateLabel = document.querySelector("[data-live-state]");
  const refreshSeconds = Math.max(5, Number(body.dataset.refresh || "60"));

  function setState(text, state) {
    if (stateLabel) {
      stateLabel.textContent = text;
      stateLabel.dataset.state = state;
    }
  }

  // The theme selector applies itself when changed.
  const themeSelect = document.querySelector(".themes select");
  if (themeSelect && themeSelect.form) {
    themeSelect.addEventListener("change", function () {
      themeSelect.form.submit();
    });
  }

  // Refresh: fetch the same page and swap the main content in place.
  async function refresh() {
    try {
      const response = await fetch(window.location.href, {
        headers: { "x-dashboard-refresh": "1" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        throw new Error(String(response.status));
      }
      const text = await response.text();
      const fresh = new DOMParser().parseFromString(text, "text/html").getElementById("content");
      const current = document.getElementById("content");
      if (fresh && current) {
        const label = stateLabel ? stateLabel.textContent : "";
        current.replaceWith(fresh);
        const newLabel = fresh.querySelector("[data-live-state]");
        if (newLabel && label) {
          newLabel.textContent = label;
        }
      }
    } catch (error) {
      setState("stale (refresh failed)", "stale");
    }
  }
  window.setInterval(refresh, refreshSeconds * 1000);
})();
