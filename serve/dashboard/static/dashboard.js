// funnelcast dashboard: a picker shows its choice as soon as it changes (the forms work without
// this script too, with their Show button).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    form.addEventListener("change", function () {
      form.requestSubmit();
    });
  });
});
