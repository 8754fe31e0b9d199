// Patron admin: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // A <select data-autosubmit> submits its form on change; its button is then not needed.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.requestSubmit();
    });
  });
  document.querySelectorAll(".js-hide").forEach(function (el) {
    el.hidden = true;
  });

  // [data-print] buttons open the browser's print dialog (no inline script: the CSP forbids it).
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () {
      window.print();
    });
  });

  // Keyboard: "/" jumps to the field marked data-shortcut="/" (the member search), unless typing.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var active = document.activeElement;
    if (active && (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName))) {
      return;
    }
    var target = document.querySelector('[data-shortcut="/"]');
    if (target) {
      event.preventDefault();
      target.focus();
      if (target.select) target.select();
    }
  });

  // In the search results, ArrowDown/ArrowUp move between members; Escape returns to the box.
  document.addEventListener("keydown", function (event) {
    var box = document.querySelector('[data-shortcut="/"]');
    var results = document.getElementById("results");
    if (!box || !results) return;
    var links = Array.prototype.slice.call(results.querySelectorAll("a.hit"));
    if (!links.length) return;
    var index = links.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && (document.activeElement === box || index >= 0)) {
      event.preventDefault();
      links[Math.min(index + 1, links.length - 1)].focus();
    } else if (event.key === "ArrowUp" && index >= 0) {
      event.preventDefault();
      if (index === 0) box.focus();
      else links[index - 1].focus();
    } else if (event.key === "Escape" && index >= 0) {
      box.focus();
    }
  });

  // A form field with an error gets the focus, so a keyboard user lands where the fix is.
  // After "load": the browser's own scroll to the address's #fragment would take it away.
  var invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) {
    window.addEventListener("load", function () {
      window.setTimeout(function () {
        invalid.focus();
      }, 0);
    });
  }
})();
