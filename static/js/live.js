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
  document.addEventListener("htmx:wsClose", function () { showStatus("Reconnecting…", "closed"); });
  document.addEventListener("htmx:wsAfterMessage", tick);
})();
