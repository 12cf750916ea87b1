// multipool: refresh the page's content in place every data-refresh seconds, so the
// reader keeps their scroll position (a full reload would jump), and add a copy button
// to stratum URLs and addresses. Pages work fully without this script.
"use strict";
(function () {
  var seconds = parseInt(document.body.getAttribute("data-refresh"), 10);

  function addCopyButtons(root) {
    if (!navigator.clipboard) { return; }
    root.querySelectorAll("code.copy").forEach(function (code) {
      if (code.nextElementSibling && code.nextElementSibling.classList.contains("copy-button")) {
        return;
      }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-button";
      button.textContent = "copy";
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(code.textContent).then(function () {
          button.textContent = "copied";
          setTimeout(function () { button.textContent = "copy"; }, 1500);
        });
      });
      code.insertAdjacentElement("afterend", button);
    });
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var main = document.getElementById("content");
    var freshMain = fresh.getElementById("content");
    if (!main || !freshMain) { return; }
    var x = window.scrollX, y = window.scrollY;
    // Keep open <details> open across the swap.
    var open = Array.prototype.map.call(main.querySelectorAll("details[open]"),
                                        function (d) { return d.parentElement.id; });
    main.replaceWith(freshMain);
    open.forEach(function (id) {
      var section = id && document.getElementById(id);
      var details = section && section.querySelector("details");
      if (details) { details.open = true; }
    });
    var asOf = document.getElementById("as-of"), freshAsOf = fresh.getElementById("as-of");
    if (asOf && freshAsOf) { asOf.textContent = freshAsOf.textContent; }
    addCopyButtons(document);
    window.scrollTo(x, y);
  }

  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, {credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html) { swap(html); } })
      .catch(function () { /* offline for a moment: try again next time */ });
  }

  addCopyButtons(document);
  if (seconds > 0) { setInterval(refresh, seconds * 1000); }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && seconds > 0) { refresh(); }
  });
}());
