// Point RequireJS at the widget manager vendored next to this file, so that the fonts and
// modules it loads come from the book itself and the page works offline.
(function () {
  var vendor = document.currentScript.src.replace(/[^/]*$/, "") + "vendor";
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": vendor } });
})();
