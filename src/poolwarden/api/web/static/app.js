// poolwarden dashboard: live regions and small conveniences. Every page works without
// this script (forms post and redirect, filters are GET forms); it only adds:
//  - live updates: an element with data-live="URL" data-every="SECONDS" has its content
//    replaced by a GET of URL every SECONDS (paused while the tab is hidden). The server
//    renders the fragment (auto-escaped), so nothing here builds HTML.
//  - filter forms marked data-autosubmit submit when a <select> changes.
// No eval, no inline handlers: it runs under a script-src 'self' policy.
(function () {
  "use strict";

  function live(el) {
    var every = Math.max(2, Number(el.getAttribute("data-every")) || 5) * 1000;
    var timer = null;
    var busy = false;

    function say(text, failed) {
      var status = el.querySelector(".live-status");
      if (status) {
        status.textContent = text;
        status.classList.toggle("failed", !!failed);
      }
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(tick, every);
    }

    function tick() {
      if (document.hidden || busy) { schedule(); return; }
      busy = true;
      fetch(el.getAttribute("data-live"), {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Requested-With": "poolwarden" }
      }).then(function (response) {
        if (response.status === 401) {  // the session ended: back to the login form
          var login = response.headers.get("X-Login") || "/ui/login";
          window.location.assign(login + "?next=" +
            encodeURIComponent(window.location.pathname + window.location.search));
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      }).then(function (html) {
        if (html !== null) {
          el.innerHTML = html;
          el.setAttribute("data-updated", new Date().toISOString());
        }
      }).catch(function () {
        say("live updates failing, retrying…", true);
      }).then(function () {
        busy = false;
        schedule();
      });
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { tick(); }
    });
    schedule();
  }

  function autosubmit(form) {
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.requestSubmit(); });
    });
  }

  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("form[data-autosubmit]").forEach(autosubmit);
}());
