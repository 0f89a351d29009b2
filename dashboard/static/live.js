// Live updates: one server-sent event stream per page. Each "fragments" event maps
// fragment names to fresh HTML, swapped in whole; "ended" means the session is over
// and the sign-in page says why. No library, no polling.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-events");
  if (!url || !window.EventSource) return;
  var badge = document.getElementById("live");
  var source = new EventSource(url);
  source.addEventListener("fragments", function (event) {
    var fragments = JSON.parse(event.data);
    Object.keys(fragments).forEach(function (name) {
      var node = document.querySelector('[data-fragment="' + name + '"]');
      if (node) node.innerHTML = fragments[name];
    });
    if (badge) { badge.className = "live on"; }
    document.body.setAttribute("data-updated", String(Date.now()));
  });
  source.addEventListener("ended", function (event) {
    source.close();
    window.location.assign(event.data || "/signin");
  });
  source.onerror = function () { if (badge) badge.className = "live off"; };
  source.onopen = function () { if (badge) badge.className = "live on"; };
})();
