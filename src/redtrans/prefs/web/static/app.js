// Keyboard shortcuts and the rewrite rule of the item page. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  var form = document.getElementById("judge");
  if (!form) return;
  var tau = parseFloat(form.dataset.tau || "3");
  var task = form.dataset.task;
  var active = 1;
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text"));
  }
  function score(n) {
    var checked = form.querySelector("input[name=s" + n + "]:checked");
    return checked ? parseInt(checked.value, 10) : null;
  }
  function setActive(n) {
    active = n;
    document.querySelectorAll(".candidate").forEach(function (el) {
      el.classList.toggle("active", el.dataset.n === String(n));
    });
  }
  var rewriteBox = document.getElementById("rewrite-box");
  var rewrite = document.getElementById("rewrite");
  var edited = rewrite ? rewrite.dataset.edited === "1" : false;
  if (rewrite) rewrite.addEventListener("input", function () { edited = true; });
  function update() {
    if (task !== "prefs" || !rewriteBox) return;
    var a = score(1), b = score(2);
    var need = a !== null && b !== null && a < tau && b < tau;
    rewriteBox.classList.toggle("hidden", !need);
    rewrite.required = need;
    if (need && !edited) {
      // pre-filled with the better candidate (candidate 1 on a tie)
      var better = b > a ? 2 : 1;
      rewrite.value = document.querySelector(".candidate[data-n='" + better + "'] .text").textContent;
    }
  }
  form.addEventListener("change", update);
  document.querySelectorAll(".candidate").forEach(function (el) {
    el.addEventListener("click", function () { setActive(parseInt(el.dataset.n, 10)); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (form.reportValidity()) form.requestSubmit();
      return;
    }
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (task === "prefs") {
      if (/^[1-5]$/.test(e.key)) {
        var input = form.querySelector("input[name=s" + active + "][value='" + e.key + "']");
        if (input) { input.checked = true; update(); }
        if (active === 1) setActive(2);
        e.preventDefault();
      } else if (e.key === "ArrowLeft" || e.key === "ArrowRight" || e.key === "Tab") {
        if (e.key === "Tab") e.preventDefault();
        setActive(active === 1 ? 2 : 1);
      } else if (e.key === "w" && rewrite && !rewriteBox.classList.contains("hidden")) {
        e.preventDefault();
        rewrite.focus();
      }
    } else if (task === "eval" && /^[1-3]$/.test(e.key)) {
      var v = {"1": "left", "2": "same", "3": "right"}[e.key];
      var r = form.querySelector("input[name=verdict][value=" + v + "]");
      if (r) r.checked = true;
      e.preventDefault();
    }
  });
  setActive(1);
  update();
})();
