// tomare's only script: live countdowns to the end of a hold or an
// approval, and times in the browser's own time zone. Pages work without it.
(function () {
  "use strict";
  var lang = document.documentElement.lang === "ja" ? "ja" : "en";
  function left(ms) {
    if (ms <= 0) return lang === "ja" ? "まもなく" : "any moment";
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600),
        m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    var clock = (h > 0 || d > 0 ? two(h) + ":" : "") + two(m) + ":" + two(r);
    if (d > 0) clock = (lang === "ja" ? d + "日 " : d + "d ") + clock;
    return lang === "ja" ? "あと " + clock : clock + " left";
  }
  function local(ms) {
    return new Date(ms).toLocaleString(lang === "ja" ? "ja-JP" : "en-GB");
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown[data-until]").forEach(function (t) {
      var until = Number(t.getAttribute("data-until"));
      t.textContent = left(until - now);
      t.title = local(until);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time.local[data-at]").forEach(function (t) {
      t.textContent = local(Number(t.getAttribute("data-at")));
    });
    tick();
    setInterval(tick, 1000);
  });
})();
