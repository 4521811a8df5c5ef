// The console's only script of its own: a live SMS length count on "send a text" forms.
// GSM-7 texts carry 160 characters in one segment (153 each when split); any other character
// makes the text UCS-2: 70 in one segment, 67 each when split.
(function () {
  "use strict";
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENDED = "^{}\\[~]|€\f";

  function count(text) {
    var gsm = true, units = 0, i, c;
    for (i = 0; i < text.length; i++) {
      c = text.charAt(i);
      if (BASIC.indexOf(c) >= 0) { units += 1; }
      else if (EXTENDED.indexOf(c) >= 0) { units += 2; }
      else { gsm = false; break; }
    }
    if (!gsm) {
      units = Array.from(text).reduce(function (n, ch) { return n + (ch.length > 1 ? 2 : 1); }, 0);
      return { encoding: "UCS-2", length: Array.from(text).length, segments: units <= 70 ? 1 : Math.ceil(units / 67) };
    }
    return { encoding: "GSM-7", length: text.length, segments: units <= 160 ? 1 : Math.ceil(units / 153) };
  }

  function bind(area) {
    var out = document.getElementById(area.getAttribute("data-count-into"));
    function update() {
      var r = count(area.value);
      out.textContent = r.length + " of " + area.maxLength + " characters · " + r.encoding + " · " +
        (area.value ? r.segments : 0) + " segment" + (area.value && r.segments === 1 ? "" : "s");
    }
    area.addEventListener("input", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-count-into]").forEach(bind);
  });
})();
