// Tier editor: add and remove tier rows in the page. Without this file the same buttons submit
// the form and the server adds or removes the row (see views/tiers.py, tiers_edit).
(function () {
  "use strict";

  var rows = document.querySelector("[data-tier-rows]");
  var template = document.getElementById("tier-row-template");
  if (!rows || !template) return;
  var pattern = rows.getAttribute("data-heading") || "{n}";

  function allRows() {
    return Array.prototype.slice.call(rows.querySelectorAll("[data-tier-row]"));
  }

  // Headings say "Tier 1", "Tier 2", … in the order shown.
  function renumber() {
    allRows().forEach(function (row, position) {
      row.querySelectorAll("[data-tier-heading]").forEach(function (el) {
        var text = pattern.replace("{n}", String(position + 1));
        el.textContent = el.tagName === "LEGEND" ? text : " " + text;
      });
    });
  }

  function nextIndex() {
    var top = -1;
    allRows().forEach(function (row) {
      top = Math.max(top, parseInt(row.getAttribute("data-index"), 10) || 0);
    });
    return top + 1;
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var add = target.closest("[data-add-tier]");
    if (add) {
      event.preventDefault();
      var index = String(nextIndex());
      rows.insertAdjacentHTML("beforeend", template.innerHTML.split("__i__").join(index));
      renumber();
      var added = rows.lastElementChild;
      var first = added && added.querySelector("input");
      if (first) first.focus();
      return;
    }
    var remove = target.closest("[data-remove-tier]");
    if (remove) {
      event.preventDefault();
      var row = remove.closest("[data-tier-row]");
      if (!row) return;
      var neighbour = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      // Keep the keyboard in the list: the next row's first field, else the add button.
      var focusable = neighbour && neighbour.querySelector("input");
      (focusable || document.querySelector("[data-add-tier]")).focus();
    }
  });
})();
