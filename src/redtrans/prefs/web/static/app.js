// Keyboard path, suggestions, drafts and the rewrite rule of the item page. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  var form = document.getElementById("judge");
  if (!form) return;
  var tau = parseFloat(form.dataset.tau || "3");
  var task = form.dataset.task;
  var draftKey = "redtrans-draft:" + (form.dataset.draft || "");
  var active = 1;
  var dirty = false;
  var submitting = false;
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
  function setBy(n, who) {
    var field = form.querySelector("input[name=p" + n + "]");
    if (field) field.value = who;
  }
  var rewriteBox = document.getElementById("rewrite-box");
  var rewrite = document.getElementById("rewrite");
  var rewriteFrom = document.getElementById("rewrite-from");
  var comment = document.getElementById("comment");
  var edited = rewrite ? rewrite.dataset.edited === "1" : false;
  function saveDraft() {
    try {
      localStorage.setItem(draftKey, JSON.stringify({rewrite: rewrite ? rewrite.value : "", comment: comment ? comment.value : ""}));
    } catch (err) { /* storage full or off: the warning on leaving still protects the text */ }
  }
  if (rewrite) rewrite.addEventListener("input", function () { edited = true; dirty = true; saveDraft(); });
  if (comment) comment.addEventListener("input", function () { dirty = true; saveDraft(); });
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
      if (rewriteFrom) rewriteFrom.value = String(better);
    }
  }
  // A score the expert picks is hers; one taken with "accept" is recorded as the suggestion's.
  form.querySelectorAll("input[type=radio][name^=s]").forEach(function (radio) {
    radio.addEventListener("change", function () { setBy(radio.name.slice(1), "expert"); dirty = true; });
  });
  form.addEventListener("change", function () { dirty = true; update(); });
  function acceptSuggestions() {
    [1, 2].forEach(function (n) {
      var hint = document.getElementById("suggestion" + n);
      if (!hint) return;
      var input = form.querySelector("input[name=s" + n + "][value='" + hint.dataset.score + "']");
      if (input) { input.checked = true; setBy(n, "suggestion"); }
    });
    dirty = true;
    update();
  }
  var acceptButton = document.getElementById("accept-suggestions");
  if (acceptButton) acceptButton.addEventListener("click", acceptSuggestions);
  document.querySelectorAll(".candidate").forEach(function (el) {
    el.addEventListener("click", function () { setActive(parseInt(el.dataset.n, 10)); });
  });
  // Restore a draft the server does not have (the page was left, or a submission failed on the way).
  try {
    var saved = JSON.parse(localStorage.getItem(draftKey) || "null");
    if (saved && rewrite && saved.rewrite && saved.rewrite !== rewrite.value && rewrite.dataset.edited !== "1") {
      rewrite.value = saved.rewrite;
      edited = true;
      var note = document.getElementById("draft-note");
      if (note) note.hidden = false;
    }
    if (saved && comment && saved.comment && !comment.value) comment.value = saved.comment;
  } catch (err) { /* no storage */ }
  form.addEventListener("submit", function () {
    submitting = true;
    try { localStorage.removeItem(draftKey); } catch (err) { /* no storage */ }
  });
  var skipForm = document.getElementById("skip");
  if (skipForm) {
    skipForm.addEventListener("submit", function () {
      submitting = true;
      var note = document.getElementById("skip-comment");
      if (note && comment) note.value = comment.value;
      var flag = document.getElementById("flag"), skipFlag = document.getElementById("skip-flag");
      if (flag && skipFlag && flag.checked) skipFlag.checked = true;
      try { localStorage.removeItem(draftKey); } catch (err) { /* no storage */ }
    });
  }
  window.addEventListener("beforeunload", function (e) {
    if (dirty && !submitting) { e.preventDefault(); e.returnValue = ""; }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (form.reportValidity()) form.requestSubmit();
      return;
    }
    if (e.key === "Enter" && e.target && e.target.tagName === "INPUT" && e.target.type === "text") {
      e.preventDefault();  // Enter in the note does not submit the item
      return;
    }
    if (e.key === "Escape" && typing(e)) { e.target.blur(); return; }
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key.toLowerCase();
    if (key === "g") {
      var rubric = document.getElementById("rubric");
      if (rubric) { rubric.open = !rubric.open; e.preventDefault(); }
      return;
    }
    if (key === "b") {
      var previous = document.getElementById("previous");
      if (previous) { e.preventDefault(); previous.click(); }
      return;
    }
    if (key === "f") { var flag = document.getElementById("flag"); if (flag) { flag.checked = !flag.checked; dirty = true; } e.preventDefault(); return; }
    if (key === "n") { if (comment) { e.preventDefault(); comment.focus(); } return; }
    if (key === "s") {
      if (skipForm) { e.preventDefault(); skipForm.requestSubmit(); }
      return;
    }
    if (task === "prefs") {
      if (/^[1-5]$/.test(e.key)) {
        var input = form.querySelector("input[name=s" + active + "][value='" + e.key + "']");
        if (input) { input.checked = true; setBy(active, "expert"); dirty = true; update(); }
        if (active === 1) setActive(2);
        e.preventDefault();
      } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        if (!(e.target && e.target.type === "radio")) { e.preventDefault(); setActive(active === 1 ? 2 : 1); }
      } else if (key === "a" && acceptButton) {
        e.preventDefault();
        acceptSuggestions();
      } else if (key === "w" && rewrite && !rewriteBox.classList.contains("hidden")) {
        e.preventDefault();
        rewrite.focus();
      }
    } else if (task === "eval" && /^[1-3]$/.test(e.key)) {
      var v = {"1": "left", "2": "same", "3": "right"}[e.key];
      var r = form.querySelector("input[name=verdict][value=" + v + "]");
      if (r) { r.checked = true; dirty = true; }
      e.preventDefault();
    }
  });
  setActive(1);
  update();
})();
