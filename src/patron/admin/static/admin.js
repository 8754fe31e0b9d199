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
      return;
    }
    // A page without the search box (the member's page) goes to the search, which takes the focus.
    var go = document.querySelector('a[data-shortcut-go="/"]');
    if (go) {
      event.preventDefault();
      window.location.assign(go.href);
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

  // The sections line scrolls sideways on a narrow screen: start it at the current section.
  var current = document.querySelector('.sections a[aria-current="page"]');
  if (current) {
    var strip = current.closest(".sections");
    if (strip && strip.scrollWidth > strip.clientWidth) {
      var box = current.getBoundingClientRect();
      var left = box.left - strip.getBoundingClientRect().left;
      strip.scrollLeft += left - (strip.clientWidth - box.width) / 2;
    }
  }

  // The sticky header's height, for scroll-margin-top in admin.css (it wraps on narrow screens).
  var topbar = document.querySelector(".topbar");
  function measureTopbar() {
    if (topbar) {
      document.documentElement.style.setProperty("--topbar-h", topbar.offsetHeight + "px");
    }
  }
  measureTopbar();
  window.addEventListener("resize", measureTopbar);

  // After a form was sent the page comes back at its card (#fragment) with the outcome inside it
  // ([data-done], role=status): focus the outcome and make sure the card's title is not under
  // the sticky header (scroll-margin-top covers the browser's own scroll; this covers the rest).
  var done = document.querySelector("[data-done]");
  if (done && !document.querySelector('[aria-invalid="true"]')) {
    var placedAt = 0;
    var place = function () {
      var bar = document.querySelector(".topbar");
      var top = bar ? bar.getBoundingClientRect().bottom : 0;
      var card = done.closest("section") || done;
      var box = card.getBoundingClientRect();
      var notice = done.getBoundingClientRect();
      var gap = 12;
      if (box.top < top + gap || notice.bottom > window.innerHeight) {
        // The card's top just below the header (its title and the notice in view).
        window.scrollBy(0, box.top - top - gap);
      }
    };
    window.addEventListener("load", function () {
      window.setTimeout(function () {
        done.focus({ preventScroll: true });
        place();
        placedAt = Date.now();
      }, 0);
    });
    // Cards loaded by htmx above this one (privacy, moves) push it down as they arrive: keep it
    // in place for those first moments, not once the person has started to scroll.
    var userScrolled = false;
    ["wheel", "touchstart", "keydown"].forEach(function (name) {
      window.addEventListener(name, function () { userScrolled = true; }, { passive: true });
    });
    document.addEventListener("htmx:afterSettle", function () {
      if (!userScrolled && placedAt && Date.now() - placedAt < 3000) place();
    });
  }

  // The card field of the enrollment form: a scanner's Enter must not send a half-filled form,
  // and typing (or scanning) a number chooses "a card from the counter".
  document.querySelectorAll("input[data-scan-into]").forEach(function (input) {
    var choice = document.getElementById(input.getAttribute("data-scan-into"));
    input.addEventListener("input", function () {
      if (choice && input.value.trim()) choice.checked = true;
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();
    });
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
