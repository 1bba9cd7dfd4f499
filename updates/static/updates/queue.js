// Approval queue: the "select every update on this page" checkbox. No inline script anywhere.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const all = document.getElementById("queue-select-all");
  if (!all) {
    return;
  }
  const boxes = function () {
    return document.querySelectorAll("input.queue-select");
  };
  all.addEventListener("change", function () {
    boxes().forEach(function (box) { box.checked = all.checked; });
  });
  boxes().forEach(function (box) {
    box.addEventListener("change", function () {
      const list = Array.from(boxes());
      all.checked = list.length > 0 && list.every(function (b) { return b.checked; });
    });
  });
});
