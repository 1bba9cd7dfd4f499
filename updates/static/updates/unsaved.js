// Update page: say so as soon as a field is changed, next to the workflow buttons (the server
// decides what happens: Submit and Re-queue save first, decisions refuse). No dialog.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("profileupdate_form");
  const note = document.getElementById("po-unsaved-note");
  if (!form || !note) {
    return;
  }
  const mark = function () { note.hidden = false; };
  form.addEventListener("input", mark);
  form.addEventListener("change", mark);
});
