// Tessera console: small conveniences only. Every form works without this
// script; it adds a working copy button and a "select all" checkbox.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var field = document.getElementById(b.getAttribute("data-copy"));
      if (!field) { return; }
      var done = function () {
        var status = document.getElementById(b.getAttribute("data-copy") + "-status");
        if (status) { status.textContent = "Copied to the clipboard."; }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select();
        });
      } else {
        field.select();
      }
    });
  });
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.hidden = false;
    var label = document.querySelector("label[for='" + all.id + "']");
    if (label) { label.hidden = false; }
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name='" + all.getAttribute("data-select-all") + "']")
        .forEach(function (c) { c.checked = all.checked; });
    });
  });
});
