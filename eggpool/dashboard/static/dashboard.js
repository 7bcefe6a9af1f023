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
  const refreshSeconds = Math.max(5, Number(body.dataset.refresh || "60"));

  function setState(text, state) {
    const stateLabel = document.querySelector("[data-live-state]");
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
        const label = document.querySelector("[data-live-state]");
        current.replaceWith(fresh);
        const newLabel = fresh.querySelector("[data-live-state]");
        if (newLabel && label) {
          newLabel.textContent = label.textContent;
          newLabel.dataset.state = label.dataset.state || "";
        }
      }
    } catch (error) {
      setState("stale (refresh failed)", "stale");
    }
  }
  window.setInterval(refresh, refreshSeconds * 1000);

  // Live counters: each finished request adds to the figures marked data-live.
  function number(text) {
    return Number(String(text).replace(/[^0-9.]/g, "")) || 0;
  }
  function money(value) {
    return "$" + value.toLocaleString("en-US", {
      minimumFractionDigits: value >= 1 ? 2 : 4,
      maximumFractionDigits: value >= 1 ? 2 : 4,
    });
  }
  function add(name, amount, format) {
    const element = document.querySelector('[data-live="' + name + '"]');
    if (element && amount) {
      element.textContent = format(number(element.textContent) + amount);
    }
  }
  function count(value) {
    return Math.round(value).toLocaleString("en-US");
  }
  // Charts and tables follow a few seconds after the counters: one refresh of the
  // content for a burst of updates, not one per request.
  let pending = 0;
  function soon() {
    if (!pending) {
      pending = window.setTimeout(function () {
        pending = 0;
        refresh();
      }, 3000);
    }
  }

  function apply(update) {
    if (update.topic !== "request") {
      return;
    }
    soon();
    add("requests", 1, count);
    add("errors", update.outcome === "completed" ? 0 : 1, count);
    add("cost", (update.cost_microdollars || 0) / 1e6, money);
    add("tokens", update.tokens || 0, count);
  }

  let delay = 1000;
  function connect() {
    if (!("WebSocket" in window)) {
      setState("refreshing every " + refreshSeconds + " s", "polling");
      return;
    }
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + "/api/live");
    socket.addEventListener("open", function () {
      delay = 1000;
      setState("live", "live");
    });
    socket.addEventListener("message", function (event) {
      try {
        apply(JSON.parse(event.data));
      } catch (error) {
        // a message we do not understand: ignore it
      }
    });
    socket.addEventListener("close", function () {
      setState("refreshing every " + refreshSeconds + " s", "polling");
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 60000);
    });
  }
  connect();
})();
