// lexigram-tasks dashboard: refreshes the live parts of a page, and asks before
// destructive actions. No library: fetch, DOMParser-free innerHTML swaps of
// server-rendered fragments (the server escapes every value).
(function () {
  "use strict";

  var body = document.body;
  var interval = parseInt(body.getAttribute("data-poll-ms"), 10) || 1500;

  function refresh(element) {
    if (element.getAttribute("data-busy") === "1") {
      return;
    }
    element.setAttribute("data-busy", "1");
    fetch(element.getAttribute("data-poll"), {
      credentials: "same-origin",
      headers: { "Accept": "text/html", "X-Requested-With": "fetch" },
      cache: "no-store"
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        element.innerHTML = html;
        element.removeAttribute("data-stale");
      })
      .catch(function () {
        // Keep the last good content, and show that it is not current.
        element.setAttribute("data-stale", "1");
      })
      .then(function () {
        element.removeAttribute("data-busy");
      });
  }

  function pollAll() {
    if (document.hidden) {
      return;
    }
    var parts = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < parts.length; i++) {
      refresh(parts[i]);
    }
  }

  if (document.querySelector("[data-poll]")) {
    window.setInterval(pollAll, interval);
  }

  // Buttons that destroy or touch many jobs ask first.
  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-confirm]");
    if (target && !window.confirm(target.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  // A header checkbox ticks or clears every checkbox of its form with that name.
  document.addEventListener("change", function (event) {
    var box = event.target;
    var name = box.getAttribute && box.getAttribute("data-select-all");
    if (!name || !box.form) {
      return;
    }
    var boxes = box.form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    for (var i = 0; i < boxes.length; i++) {
      boxes[i].checked = box.checked;
    }
  });
})();
