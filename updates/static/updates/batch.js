// The batch page: follows a whole-batch read while it runs; and once the live diff (live_diff.js) has read every sampled update, ask the
// server for each row's verdict and the estimate for the whole batch (updates/batch_reads.py).
// Everything shown comes from the server as text: textContent only.
"use strict";
// A job running in the background — a whole-batch read (batch_reads.py) or a batch decision
// (batch_decisions.py): its progress every two seconds, then the page again (with what it found,
// or each chunk's outcome) once it has ended.
function followProgress(id, totalKey, doneKey) {
  const running = document.getElementById(id);
  if (!running) {
    return;
  }
  const bar = document.getElementById(id.replace("-running", "-progress"));
  const text = document.getElementById(id.replace("-running", "-progress-text"));
  const poll = function () {
    fetch(running.dataset.statusUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      })
      .then(function (data) {
        bar.max = data[totalKey];
        bar.value = data[doneKey];
        text.textContent = data.text;
        if (data.status === "done" || data.status === "failed") {
          window.location.reload();
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () {
        setTimeout(poll, 5000);
      });
  };
  setTimeout(poll, 2000);
}

document.addEventListener("DOMContentLoaded", function () {
  followProgress("batch-read-running", "total", "done");
  followProgress("batch-decision-running", "chunks", "chunks_done");
});

document.addEventListener("DOMContentLoaded", function () {
  const section = document.getElementById("batch-estimate");
  const sample = document.getElementById("batch-sample");
  if (!section || !sample) {
    return;
  }
  const VERDICTS = ["changes", "unchanged", "no_profile", "not_read"];
  const boxes = sample.querySelectorAll("[data-live-diff-url]");
  let answered = 0;

  function show(data) {
    Object.keys(data.rows).forEach(function (id) {
      const cell = document.getElementById("verdict-" + id);
      const row = data.rows[id];
      if (cell && VERDICTS.indexOf(row.verdict) >= 0) {
        cell.textContent = row.label;
        cell.className = "po-verdict po-verdict-" + row.verdict;
      }
    });
    const list = document.getElementById("batch-estimate-shares");
    list.textContent = "";
    data.estimate.shares.forEach(function (share) {
      const item = document.createElement("li");
      item.textContent = share.text;
      list.appendChild(item);
    });
    const e = data.estimate;
    document.getElementById("batch-estimate-status").textContent = e.complete ?
      "From the " + e.read + " sampled update(s), each read from Target in the last few minutes." :
      e.read + " of " + e.sampled + " sampled update(s) could be read; the estimate counts those only.";
  }

  function ask() {
    fetch(section.dataset.estimateUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      })
      .then(show)
      .catch(function () {
        document.getElementById("batch-estimate-status").textContent =
          "The estimate could not be worked out; reload the page to try again.";
      });
  }

  if (boxes.length === 0) {
    return;
  }
  sample.addEventListener("po-live-diff-done", function () {
    answered += 1;
    if (answered === boxes.length) {
      ask();
    }
  });
});
