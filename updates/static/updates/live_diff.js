// The live diff: what Target holds now for each attribute, filled in after the page is shown
// (the page never waits for Target). Values are customer data from outside: textContent only.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const boxes = Array.from(document.querySelectorAll("[data-live-diff-url]"));
  const MAX_TRIES = 5;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function shown(value) {
    return value === "" ? "(empty)" : value;
  }

  function render(box, data) {
    box.textContent = "";
    if (data.message) {
      box.appendChild(element("p", data.message,
        data.state === "not_found" ? "po-diff-missing" : "po-muted"));
    }
    if (!data.rows || data.rows.length === 0) {
      return;
    }
    if (box.dataset.compact) {
      renderCompact(box, data);
      return;
    }
    const table = element("table", null, "po-attributes po-diff");
    const head = table.createTHead().insertRow();
    ["Attribute", "At Target now", "Will be sent", "Changes?"].forEach(function (label) {
      const th = element("th", label);
      th.scope = "col";
      head.appendChild(th);
    });
    const body = table.createTBody();
    data.rows.forEach(function (row) {
      const tr = body.insertRow();
      tr.className = row.changes ? "po-diff-changes" : "po-diff-same";
      tr.insertCell().appendChild(element("code", "profile." + row.name));
      const current = tr.insertCell();
      if (row.current === null) {
        current.appendChild(element("em", "(not set)"));
      } else {
        current.appendChild(element("span", shown(row.current), "po-value"));
        if (row.current_escaped) {
          current.appendChild(element("div", "shown escaped: Target's value holds a NUL or a lone surrogate", "po-muted"));
        }
        if (row.current_modified_at) {
          current.appendChild(element("div", "modified " + row.current_modified_at, "po-muted"));
        }
      }
      tr.insertCell().appendChild(element("span", shown(row.new), "po-value"));
      tr.insertCell().textContent = row.changes ? "yes" : "no — already holds it";
    });
    box.appendChild(table);
    const when = data.read_at ? "Read from Target at " + data.read_at.replace("T", " ").slice(0, 19) + " UTC. " : "";
    box.appendChild(element("p", when + (data.changes === 0 ?
      "This update changes nothing at Target." :
      data.changes + " of " + data.rows.length + " attribute(s) change."), "po-muted"));
  }

  // The queue: one line per attribute under "what will be sent" (the page must stay narrow).
  function renderCompact(box, data) {
    const list = element("ul", null, "po-diff-compact");
    data.rows.forEach(function (row) {
      const item = element("li", null, row.changes ? "po-diff-changes" : "po-diff-same");
      item.appendChild(element("code", "profile." + row.name));
      item.appendChild(document.createTextNode(" at Target now: "));
      if (row.current === null) {
        item.appendChild(element("em", "(not set)"));
      } else {
        item.appendChild(element("span", shown(row.current), "po-value"));
      }
      item.appendChild(document.createTextNode(row.changes ? " — changes" : " — already holds it"));
      list.appendChild(item);
    });
    box.appendChild(list);
    const when = data.read_at ? "read " + data.read_at.replace("T", " ").slice(0, 19) + " UTC. " : "";
    box.appendChild(element("div", when + (data.changes === 0 ?
      "This update changes nothing at Target." :
      data.changes + " of " + data.rows.length + " attribute(s) change."), "po-muted"));
  }

  // Tells the page (the batch page's estimate, batch.js) that a box has its answer.
  function done(box) {
    box.dispatchEvent(new CustomEvent("po-live-diff-done", {bubbles: true}));
  }

  function chain(list, index, tries) {
    if (index >= list.length) {
      return;
    }
    const box = list[index];
    fetch(box.dataset.liveDiffUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      })
      .then(function (data) {
        if (data.state === "throttled" && tries < MAX_TRIES) {
          setTimeout(function () { chain(list, index, tries + 1); }, 1000);
          return;
        }
        render(box, data);
        done(box);
        chain(list, index + 1, 0);
      })
      .catch(function () {
        box.textContent = "Target's profile could not be read.";
        done(box);
        chain(list, index + 1, 0);
      });
  }

  // Two reads at a time: the queue fills in quickly without bursting past the read rate limit.
  const half = Math.ceil(boxes.length / 2);
  chain(boxes.slice(0, half), 0, 0);
  chain(boxes.slice(half), 0, 0);
});
