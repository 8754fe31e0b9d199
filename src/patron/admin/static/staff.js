// Staff and API keys: copy a secret shown once (a new API key, a generated password).
// Without this file the secret is still there to select and copy by hand.
(function () {
  "use strict";

  function selectAll(input) {
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
  }

  // The old way, for pages not served over HTTPS or localhost (no navigator.clipboard there).
  function copyBySelection(input) {
    selectAll(input);
    try {
      return document.execCommand("copy");
    } catch (err) {
      return false;
    }
  }

  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () {
      input.select();
    });
  });

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.querySelector(".copy-status");
    if (!input) return;
    button.hidden = false;

    function done(ok) {
      if (status) {
        status.textContent = button.getAttribute(ok ? "data-copied" : "data-copy-failed");
      }
      if (!ok) selectAll(input);
    }

    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(
          function () {
            done(true);
          },
          function () {
            done(copyBySelection(input));
          }
        );
      } else {
        done(copyBySelection(input));
      }
    });
  });
})();
