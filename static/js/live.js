// Live cards between pushes: how old each card's data is, and whether the WebSocket is up.
//
// A card with data-t (the data's Unix time) and data-rendered (the server's Unix time when it
// rendered the card) shows "No data for N s" once its data is older than STALE_AFTER_S.
// The age is rendered-minus-data at render time plus the time since this browser first saw
// the card, so a browser clock that is off does not matter. Every push replaces the card
// element, which restarts its count. Mirrors dashboard.cards.STALE_AFTER_S and the
// `duration` template filter.
(function () {
  "use strict";
  var STALE_AFTER_S = 10;

  function duration(seconds) {
    var s = Math.max(Math.floor(seconds), 0);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.floor(s / 60) + " min";
    if (s < 172800) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-t][data-rendered]").forEach(function (card) {
      if (card.seenAt === undefined) card.seenAt = now;
      var age = parseFloat(card.dataset.rendered) - parseFloat(card.dataset.t) + (now - card.seenAt);
      var stale = age > STALE_AFTER_S;
      card.classList.toggle("is-stale", stale);
      var label = card.querySelector("[data-age]");
      var text = stale ? "No data for " + duration(age) : "";
      if (label && label.textContent !== text) label.textContent = text;
    });
  }

  function showStatus(text, state) {
    document.querySelectorAll("[data-ws-status]").forEach(function (el) {
      el.hidden = false;
      el.textContent = text;
      el.dataset.state = state;
    });
  }

  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
  // Events of the htmx ws extension; it reconnects by itself after an abnormal close.
  document.addEventListener("htmx:wsConnecting", function () { showStatus("Connecting…", "connecting"); });
  document.addEventListener("htmx:wsOpen", function () { showStatus("Live", "open"); });
  // Closes that end the page's live updates (dashboard.access, docs/security.md): the extension
  // reconnects only after an abnormal close (1006, 1011-1013), so these stay closed.
  var ENDED = {
    4401: ["Signed out", "sign in again", "loginUrl"],
    4403: ["Access ended", "your locations", "homeUrl"],
    4404: ["No live updates here", null, null],
  };
  document.addEventListener("htmx:wsClose", function (event) {
    var close = event.detail && event.detail.event;
    var ended = close && ENDED[close.code];
    if (!ended) {
      showStatus("Reconnecting…", "closed");
      return;
    }
    showStatus(ended[0], "ended");
    document.querySelectorAll("[data-ws-status]").forEach(function (el) {
      var url = ended[2] && el.dataset[ended[2]];
      if (!url) return;
      var link = document.createElement("a");
      link.href = ended[2] === "loginUrl" ? url + "?next=" + encodeURIComponent(location.pathname) : url;
      link.textContent = ended[1];
      el.append(" — ", link);
    });
  });
  document.addEventListener("htmx:wsAfterMessage", tick);

  // Buttons inside a pushed card (the installer's fix buttons, in [data-hold-pushes]): a push
  // must neither swallow a click (the button replaced between press and release) nor drop the
  // keyboard focus. While a pointer is pressed there, pushes are skipped (the next one, a second
  // later, brings the news); a focused button is focused again after a push (same id).
  var pressing = false;
  var focusedId = null;
  document.addEventListener("pointerdown", function (event) {
    if (event.target.closest && event.target.closest("[data-hold-pushes]")) pressing = true;
  });
  function release() { setTimeout(function () { pressing = false; }, 400); }
  document.addEventListener("pointerup", release);
  document.addEventListener("pointercancel", release);
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    if (pressing) {
      event.preventDefault();
      return;
    }
    var active = document.activeElement;
    focusedId = active && active.id && active.closest("[data-hold-pushes]") ? active.id : null;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (!focusedId) return;
    var again = document.getElementById(focusedId);
    if (again && again !== document.activeElement) again.focus();
    focusedId = null;
  });
})();
