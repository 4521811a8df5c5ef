// The tablet check-in: one statement per screen with back and next; a submit that does not get through (a flaky
// ward connection) is sent again until it does, with the same check-in id, so it is saved once; after
// KIOSK_IDLE_SECONDS without a touch the unfinished check-in is discarded and the tablet locks (the server forgets
// the sheet; a staff member signs in again), so the next person never sees the previous patient's sheet.
(function () {
  "use strict";
  var form = document.getElementById("kiosk-form");
  if (!form) { return; }
  var steps = Array.prototype.slice.call(form.querySelectorAll("fieldset.statement"));
  var status = document.getElementById("kiosk-status");
  var idleMs = parseInt(form.getAttribute("data-idle"), 10) * 1000;
  var timer = null, sending = false;

  function show(n) {
    steps.forEach(function (fs) { fs.hidden = fs.getAttribute("data-step") !== String(n); });
    var first = steps[n - 1].querySelector("input:checked") || steps[n - 1].querySelector("input");
    if (first) { first.focus(); }
  }
  function answered(fs) { return fs.querySelector("input:checked") !== null; }
  function lock() {
    if (sending) { return; }  // the patient has finished: the submit under way is retried until it is saved
    form.reset();
    form.hidden = true;
    document.getElementById("kiosk-lock").submit();
  }
  function touched() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(lock, idleMs);
  }
  ["pointerdown", "keydown", "touchstart", "change"].forEach(function (ev) {
    document.addEventListener(ev, touched, { passive: true });
  });
  form.addEventListener("click", function (e) {
    var go = e.target.closest("button[data-go]");
    if (!go) { return; }
    var here = e.target.closest("fieldset.statement");
    var to = parseInt(go.getAttribute("data-go"), 10);
    if (go.classList.contains("next") && !answered(here)) { here.querySelector("input").focus(); return; }
    show(to);
  });
  form.addEventListener("change", function (e) {  // an answer moves on to the next statement
    var here = e.target.closest("fieldset.statement");
    var n = parseInt(here.getAttribute("data-step"), 10);
    if (n < steps.length) { setTimeout(function () { show(n + 1); }, 150); }
  });
  function send(attempt) {
    fetch(form.action, { method: "POST", body: new FormData(form), headers: { "X-Kiosk-Submit": "1" },
                         credentials: "same-origin" })
      .then(function (r) {
        if (r.ok) { return r.json(); }
        if (r.status >= 500) { throw new Error("server"); }
        sending = false;
        form.submit();  // refused (an old sheet, a stay ended): the server's page says why
        return null;
      })
      .then(function (body) {
        if (!body) { return; }
        sending = false;
        if (timer) { clearTimeout(timer); }
        form.hidden = true;
        document.getElementById("kiosk-thanks").hidden = false;
      })
      .catch(function () {
        status.textContent = form.getAttribute("data-retrying");
        setTimeout(function () { send(attempt + 1); }, Math.min(8000, 1000 * Math.pow(2, attempt)));
      });
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var missing = steps.filter(function (fs) { return !answered(fs); })[0];
    if (missing) { show(parseInt(missing.getAttribute("data-step"), 10)); return; }
    if (sending) { return; }
    sending = true;
    send(0);
  });
  window.addEventListener("pageshow", function (e) {  // Back to a page kept in memory: ask the server again
    if (e.persisted) { window.location.reload(); }
  });
  show(1);
  touched();
}());
